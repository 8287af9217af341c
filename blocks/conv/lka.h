// conv/lka: VAN's large kernel attention, a K x K convolution decomposed into a depth-wise
// (2d-1) x (2d-1) convolution, a depth-wise dilated ceil(K/d) x ceil(K/d) convolution (dilation
// d) and a 1 x 1 convolution, whose output multiplies the input (an attention map from
// convolutions: local, long-range and channel adaptivity, linear in the tokens).
//
// Paper: "Visual Attention Network", Guo et al., CVM 2023, arXiv:2202.09741, §3.1-3.2 (eq. 1-2);
// read against Visual-Attention-Network/VAN-Classification models/van.py (LKA, Attention):
//   LKA(u) = u ⊙ Conv1x1(DWConv_{ceil(K/d), dilation d}(DWConv_{2d-1}(u)))    (all with bias)
//   out = Conv1x1(LKA(GELU(Conv1x1(x)))) + x                    (VAN's Attention, its own shortcut)
// K = 21, d = 3 in VAN: 5 x 5, then 7 x 7 with dilation 3 (padding 9), a 23 x 23 receptive field.
// Prefix tokens are not mixed (output 0).
//
// Shape contract: x [B, P + H*W, C] on ctx's grid -> the same; not causal.
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct LargeKernelAttentionOptions {
  TORCH_ARG(std::int64_t, kernel) = 21;   // K, the kernel the decomposition stands for (VAN: 21)
  TORCH_ARG(std::int64_t, dilation) = 3;  // d (VAN: 3)
};

class LargeKernelAttentionImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "conv/lka";
  LargeKernelAttentionImpl(std::int64_t dim, const LargeKernelAttentionOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;

  // The attention map of u [B, C, H, W]: Conv1x1(DW-D(DW(u))), [B, C, H, W].
  torch::Tensor attention_map(const torch::Tensor& u);

  torch::nn::Conv2d proj_in{nullptr}, local{nullptr}, dilated{nullptr}, channel{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(LargeKernelAttention);

}  // namespace blocklab
