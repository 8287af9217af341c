// mixer/ponet: PoNet's pooling network token mixer, three poolings at three granularities in
// linear time: global attention pooling, segment max pooling and local max pooling.
//
// Paper: "PoNet: Pooling Network for Efficient Token Mixing in Long Sequences", Tan et al., ICLR
// 2022, arXiv:2110.02442, §3 (eq. 1-6); read against lxchtan/PoNet
// examples/LRA/code/attention_ponet.py (PoNetAttention). Per head (width d = C / h), from the
// projections q, k, o (per head) and l, s (full width) of x, all Linear with bias:
//   global:  q_bar = mean_i q_i;  a = softmax_i(q_bar . k_i / sqrt(d));  g = sum_i a_i k_i   (keys are the values)
//   segment: s'_i = max_{j in segment(i)} s_j   (S segments of floor(N / S) + 1 tokens, elementwise)
//   local:   l'_i = max_{|j - i| <= 1} l_j      (max pooling of 3)
//   o'_i = (g + s'_i) ⊙ o_i + l'_i,   out = [o'_heads] W_out + b_out
// Padding (ctx.lengths) is left out of the mean and the softmax, filled with -1e4 before the max
// poolings (as the official code) and zeroed in the output. Not causal (the global pooling and
// the segment maxima read later tokens).
//
// Shape contract: x [B, N, C] -> [B, N, C], heads divides C.
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct PoNetOptions {
  TORCH_ARG(std::int64_t, heads) = 4;     // h (global pooling per head)
  TORCH_ARG(std::int64_t, segments) = 4;  // S (LRA: 1 to 2048 by task)
};

class PoNetMixerImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "mixer/ponet";
  PoNetMixerImpl(std::int64_t dim, const PoNetOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;

  // The global pooling's weights a [B, h, N] of x (what the paper plots as token importance).
  torch::Tensor global_weights(const torch::Tensor& x, const MixerContext& ctx);

  torch::nn::Linear in_proj{nullptr};  // C -> 5C: q | k | o | l | s
  torch::nn::Linear out_proj{nullptr};

 private:
  struct Parts {
    torch::Tensor q, k, o, local, segment, padded;  // q, k, o [B, h, N, d]; local, segment [B, N, C]; padded [B, N]
  };
  Parts project(const torch::Tensor& x, const MixerContext& ctx);
  torch::Tensor global_weights(const Parts& p) const;
  torch::Tensor segment_max(const torch::Tensor& s) const;  // [B, N, C] -> [B, N, C]
  torch::Tensor split_heads(const torch::Tensor& t) const;  // [B, N, C] -> [B, h, N, d]
  std::int64_t heads_, segments_;
};
TORCH_MODULE(PoNetMixer);

}  // namespace blocklab
