// channel/hat-cab: HAT's channel attention block (CAB), the convolution branch that HAT adds to
// every window-attention block: two 3 x 3 convolutions through a narrow middle, then RCAN's
// channel attention (a squeeze-excitation with biases).
//
// Paper: "Activating More Pixels in Image Super-Resolution Transformer", Chen et al., CVPR 2023,
// arXiv:2205.04437, §3.2.2 (eq. 2); read against XPixelGroup/HAT hat/archs/hat_arch.py (CAB,
// ChannelAttention):
//   z = Conv3x3_{C/r_c -> C}(GELU(Conv3x3_{C -> C/r_c}(x)))          (convolutions with bias)
//   out = z ⊙ sigmoid(W_2 ReLU(W_1 GAP(z))),  W_1: C -> C / r_s       (RCAN's channel attention)
// r_c = 3 (compress_ratio) and r_s = 30 (squeeze_factor) in HAT; widths are C // r, at least 1.
// In HAT the block output is added to the attention branch scaled by 0.01 (conv_scale); here it
// is the module's output, placed by the block that uses it.
#pragma once

#include "blocks/channel_attention/squeeze_excitation.h"

namespace blocklab {

struct HatCabOptions {
  TORCH_ARG(std::int64_t, compress) = 3;  // r_c: middle width C // r_c (HAT: 3)
  TORCH_ARG(std::int64_t, squeeze) = 30;  // r_s: channel attention width C // r_s (HAT: 30)
};

class HatCabImpl : public ChannelAttentionImpl {
 public:
  static constexpr const char* kKey = "channel/hat-cab";
  HatCabImpl(std::int64_t channels, const HatCabOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x) override;

  torch::nn::Conv2d compress{nullptr}, expand{nullptr};
  SqueezeExcitation attention{nullptr};
};
TORCH_MODULE(HatCab);

}  // namespace blocklab
