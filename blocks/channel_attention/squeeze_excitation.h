// channel/se: squeeze-and-excitation, the baseline of the channel attention table.
//
// Paper: "Squeeze-and-Excitation Networks", Hu, Shen, Sun, CVPR 2018, arXiv:1709.01507, §3 (eq. 2-4):
//   z = GAP(x) [B, C]                 (squeeze)
//   s = sigmoid(W_2 ReLU(W_1 z))      (excitation; W_1: C -> C / r, W_2: C / r -> C, with biases)
//   out = s ⊙ x                       (a gate per channel)
// r = 16 in the paper (the SE-ResNets); `hidden` sets C / r directly (timm's rd_channels).
#pragma once

#include "blocks/channel_attention/channel_attention.h"
#include "registry/options_schema.h"

namespace blocklab {

struct SqueezeExcitationOptions {
  TORCH_ARG(std::int64_t, reduction) = 16;  // r: hidden width = max(1, C / r) (default 16)
  TORCH_ARG(std::int64_t, hidden) = 0;      // hidden width; 0 = from reduction (default 0)
};

class SqueezeExcitationImpl : public ChannelAttentionImpl {
 public:
  static constexpr const char* kKey = "channel/se";
  SqueezeExcitationImpl(std::int64_t channels, const SqueezeExcitationOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x) override;
  torch::Tensor gates(const torch::Tensor& x);  // s [B, C]

  torch::nn::Linear reduce{nullptr}, expand{nullptr};  // W_1, W_2 (the 1x1 convolutions on z)
};
TORCH_MODULE(SqueezeExcitation);

}  // namespace blocklab
