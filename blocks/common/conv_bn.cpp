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

}  // namespace blocklab
