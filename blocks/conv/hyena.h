// conv/hyena: the Hyena operator, a gated implicit long convolution.
//
// Paper: "Hyena Hierarchy: Towards Larger Convolutional Language Models", Poli et al., 2023,
// arXiv:2302.10866, Algorithms 1-3 (Section 3); the computation of the official code
// (HazyResearch/safari src/models/sequence/hyena.py HyenaOperator, also HyenaDNA's):
//   z = ShortConv_causal,3(x W_in + b_in)          W_in: C -> (N+1) C      (Algorithm 2)
//   x_0, ..., x_{N-1}, v = split(z)
//   for j = 0 .. N-2:  v <- v ⊙ x_{N-1-j};  v <- h_j * v + beta_j ⊙ v    (causal long conv)
//   y = (v ⊙ x_0) W_out + b_out
// with the N - 1 filters h_j [L, C] from one implicit filter of (N-1) C channels
// (blocks/conv/hyena_filter.h; channel c of h_j is filter channel c (N-1) + j, as the code's
// '(v o)' layout) and skips beta [(N-1) C] (randn). Order N = 2 is the paper's default: one long
// convolution between two gates. The convolution runs by FFT or by direct summation (conv:
// direct, the reference). Causal only (ignores ctx.causal = false): every operation is causal.
// Not recurrent (a long convolution has no constant-size state). Lengths: the filter is the
// first N rows of one built for max_tokens, so any N <= max_tokens works; right padding is zeroed
// before the in-projection, so it never reaches a valid token.
//
// Shape contract: x [B, N, C] -> [B, N, C]; N <= max_tokens.
#pragma once

#include "blocks/common/init.h"
#include "blocks/common/ssm_parts.h"
#include "blocks/conv/hyena_filter.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct HyenaOptions {
  TORCH_ARG(std::int64_t, order) = 2;       // N: N + 1 projections, N - 1 long convolutions
  TORCH_ARG(std::int64_t, short_taps) = 3;  // taps of the causal short depthwise convolution
  TORCH_ARG(std::string, conv) = "fft";     // fft | direct (the O(N^2) reference)
  TORCH_ARG(std::int64_t, filter_width) = 64;
  TORCH_ARG(std::int64_t, emb_dim) = 3;
  TORCH_ARG(std::int64_t, filter_layers) = 2;
  TORCH_ARG(double, frequency) = 1.0;
  TORCH_ARG(double, fast_decay) = 0.3;
  TORCH_ARG(double, slow_decay) = 1.5;
  TORCH_ARG(double, decay_target) = 1e-2;
  TORCH_ARG(double, window_shift) = 0.0;
};

class HyenaImpl : public TokenMixerImpl, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "conv/hyena";
  HyenaImpl(std::int64_t dim, std::int64_t max_tokens, const HyenaOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  // The long filters of n tokens: [N - 1, n, C] (h_j for step j).
  torch::Tensor filters(std::int64_t n);
  // The data-controlled operator of eq. (3), H(u) = D_{x_0} S_{N-2} D_{x_1} ... S_0 D_{x_{N-1}} with
  // S_j = Toeplitz(h_j) + diag(beta_j), per channel: [B, C, n, n], y = out_proj(H(u) v) (short n only).
  torch::Tensor mixing_matrix(const torch::Tensor& x);

  torch::nn::Linear in_proj{nullptr}, out_proj{nullptr};
  ShortConv short_conv{nullptr};
  HyenaFilter filter{nullptr};
  torch::Tensor skip;  // beta [(N-1) C]

 private:
  std::int64_t dim_, order_;
  bool direct_;
};
TORCH_MODULE(Hyena);

const OptionsSchema<HyenaOptions>& hyena_schema();

}  // namespace blocklab
