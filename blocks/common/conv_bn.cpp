#include "blocks/common/conv_bn.h"

namespace blocklab {

PointwiseConvBNImpl::PointwiseConvBNImpl(std::int64_t in, std::int64_t out, double bn_weight) {
  conv = register_module("conv", torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm1d(out));
  torch::NoGradGuard no_grad;
  bn->weight.fill_(bn_weight);
}

torch::Tensor PointwiseConvBNImpl::forward(const torch::Tensor& x) {
  return bn->forward(conv->forward(x).transpose(1, 2)).transpose(1, 2);
}

DepthwiseConvBNImpl::DepthwiseConvBNImpl(std::int64_t channels, std::int64_t kernel, double bn_weight) {
  conv = register_module(
      "conv",
      torch::nn::Conv2d(
          torch::nn::Conv2dOptions(channels, channels, kernel).padding(kernel / 2).groups(channels).bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(channels));
  torch::NoGradGuard no_grad;
  bn->weight.fill_(bn_weight);
}

torch::Tensor DepthwiseConvBNImpl::forward(const torch::Tensor& x) { return bn->forward(conv->forward(x)); }

}  // namespace blocklab
