// channel/ela: efficient local attention, gates per channel and per row and per column from 1-D
// convolutions along the strip-pooled feature map (coordinate attention without reduction).
//
// Paper: "ELA: Efficient Local Attention for Deep Convolutional Neural Networks", Xu & Wan 2024,
// arXiv:2403.01123, §3 (eq. 3-6); no official code was found, the authors' module as copied
// consistently in public code (Conv1d without bias, GroupNorm, shared by both directions):
//   z_h = mean_W(x) [B, C, H],  z_w = mean_H(x) [B, C, W]
//   a_h = sigmoid(GN(conv1d_k(z_h))),  a_w = sigmoid(GN(conv1d_k(z_w)))   (the same conv and GN)
//   out = x ⊙ a_h[:, :, :, None] ⊙ a_w[:, :, None, :]
// The convolution slides along H (or W), per channel (groups = C) or per channel group.
// Variants: ELA-T (k 5, groups C, GN 32), ELA-B (k 7, groups C, GN 16; the default), ELA-S (k 5,
// groups C / 8, GN 16), ELA-L (k 7, groups C / 8, GN 16).
#pragma once

#include "blocks/channel_attention/channel_attention.h"
#include "registry/options_schema.h"

namespace blocklab {

struct ElaOptions {
  TORCH_ARG(std::int64_t, kernel) = 7;        // taps k, odd (ELA-B: 7)
  TORCH_ARG(std::int64_t, conv_groups) = 0;   // groups of the 1-D conv; 0 = C, depth-wise (ELA-B)
  TORCH_ARG(std::int64_t, norm_groups) = 16;  // GroupNorm groups (ELA-B: 16)
};

class ElaImpl : public ChannelAttentionImpl {
 public:
  static constexpr const char* kKey = "channel/ela";
  ElaImpl(std::int64_t channels, const ElaOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x) override;
  // a_h [B, C, H] and a_w [B, C, W].
  std::pair<torch::Tensor, torch::Tensor> gates(const torch::Tensor& x);

  torch::nn::Conv1d conv{nullptr};
  torch::nn::GroupNorm norm{nullptr};
};
TORCH_MODULE(Ela);

}  // namespace blocklab
