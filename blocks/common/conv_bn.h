// A 1 x 1 convolution followed by BatchNorm, on tokens: the Conv2d_BN of the efficient vision
// models (LeViT, EfficientViT, SHViT) applied per token, x [B, N, C_in] -> [B, N, C_out], the
// batch statistics over the batch and the tokens (as BatchNorm2d over B x H x W). `bn_weight`
// is the initial BN scale (0: the branch starts as zero, the models' residual init).
// DepthwiseConvBN: the depth-wise k x k Conv2d_BN of the same models (padding k / 2, stride 1)
// on images x [B, C, H, W] -> [B, C, H, W], BatchNorm2d over B x H x W.
#pragma once

#include <torch/torch.h>

namespace blocklab {

class PointwiseConvBNImpl : public torch::nn::Module {
 public:
  PointwiseConvBNImpl(std::int64_t in, std::int64_t out, double bn_weight = 1.0);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear conv{nullptr};  // the 1 x 1 convolution, no bias
  torch::nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(PointwiseConvBN);

class DepthwiseConvBNImpl : public torch::nn::Module {
 public:
  DepthwiseConvBNImpl(std::int64_t channels, std::int64_t kernel, double bn_weight = 1.0);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};  // groups = channels, no bias
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(DepthwiseConvBN);

}  // namespace blocklab
