// channel/ulsam: ultra-lightweight subspace attention, one spatial attention map per group of
// channels (subspace), learned with a few hundred weights.
//
// Paper: "ULSAM: Ultra-Lightweight Subspace Attention Module for Compact Convolutional Neural
// Networks", Saini et al., WACV 2020, arXiv:2006.15102, §3 (eq. 1-3); read against
// Nandan91/ULSAM ulsam.py (SubSpace, ULSAM). For each of g subspaces X_i [B, C/g, H, W]:
//   a = ReLU(BN(DWConv1x1(X_i)))          (depth-wise 1 x 1 with bias: a per-channel affine)
//   a = MaxPool3x3(a)                      (stride 1, padding 1)
//   a = ReLU(BN(Conv1x1_{C/g -> 1}(a)))    [B, 1, H, W]
//   A_i = softmax over the H W positions of a;   out_i = X_i ⊙ A_i + X_i
// out = [out_1 .. out_g]. The g subspaces run as one grouped computation (the per-channel ops
// over all C channels, the C/g -> 1 projections as a grouped 1 x 1 convolution); parameters
// 5C + 3g. BatchNorm momentum 0.9 in PyTorch's convention, as the official code.
#pragma once

#include "blocks/channel_attention/channel_attention.h"
#include "registry/options_schema.h"

namespace blocklab {

struct UlsamOptions {
  TORCH_ARG(std::int64_t, groups) = 4;  // subspaces g, dividing C (paper: 1..16; default 4)
};

class UlsamImpl : public ChannelAttentionImpl {
 public:
  static constexpr const char* kKey = "channel/ulsam";
  UlsamImpl(std::int64_t channels, const UlsamOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x) override;
  torch::Tensor maps(const torch::Tensor& x);  // A [B, g, H, W], each summing to 1 over H W

  torch::nn::Conv2d depthwise{nullptr}, pointwise{nullptr};
  torch::nn::BatchNorm2d depthwise_norm{nullptr}, pointwise_norm{nullptr};

 private:
  std::int64_t groups_;
};
TORCH_MODULE(Ulsam);

}  // namespace blocklab
