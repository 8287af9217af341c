// mixer/monarch: Monarch Mixer's (M2) sequence mixer.
//
// Paper: "Monarch Mixer: A Simple Sub-Quadratic GEMM-Based Architecture", Fu et al., 2023,
// arXiv:2310.12109, Section 3 and Appendix (M2-BERT); official code HazyResearch/m2
// (bert/src/mm/monarch_mixer_sequence_mixer.py, hyena_utils.py). The sequence mixing is a
// Monarch-computable long convolution (the DFT is a Monarch product; here by FFT), gated as
// in Hyena:
//   x1, x2, v = split(ShortConv_causal,3(u W_in + b_in))      W_in: C -> 3C
//   y = x2 ⊙ (h * (x1 ⊙ v) + beta ⊙ (x1 ⊙ v))                 (h: implicit Hyena filter)
//   y <- y + h2 * u + beta2 ⊙ u                               (residual_long_conv, on the input u)
//   out = y W_out + b_out
// bidirectional (M2-BERT): each filter has a second FFN h_rev for the future, y_t +=
// sum_{m >= 1} h_rev_{m-1} v_{t+m} (the code's kernel [h, 0] + [0, flip(h_rev)]); under
// ctx.causal (or bidirectional false, M2's causal variant) the reverse halves are dropped, so
// the mixer is causal (the short convolution is causal in both). Filters as Hyena's
// (blocks/conv/hyena_filter.h) with M2-BERT's defaults: FFN width 128, emb_dim 5, frequency 10.
// projection: the released M2-BERT uses dense W_in and W_out (default); monarch or blockdiag
// replace them with the paper's Monarch matrices (blocks/common/monarch.h, nblocks blocks).
// No residual around the mixer here (the enclosing block adds it). Lengths: padding is zeroed
// before each long convolution, so valid tokens see the unpadded sequence (any N <= max_tokens).
//
// Shape contract: x [B, N, C] -> [B, N, C]; N <= max_tokens.
#pragma once

#include "blocks/common/init.h"
#include "blocks/common/monarch.h"
#include "blocks/common/ssm_parts.h"
#include "blocks/conv/hyena_filter.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct MonarchMixerOptions {
  TORCH_ARG(bool, bidirectional) = true;         // reverse filters for the future (M2-BERT); false: causal
  TORCH_ARG(bool, residual_long_conv) = true;    // + h2 * u + beta2 ⊙ u on the un-projected input
  TORCH_ARG(std::string, projection) = "dense";  // dense (M2-BERT) | monarch | blockdiag
  TORCH_ARG(std::int64_t, nblocks) = 4;          // blocks of the monarch/blockdiag projections
  TORCH_ARG(std::int64_t, short_taps) = 3;
  TORCH_ARG(std::string, conv) = "fft";  // fft | direct
  TORCH_ARG(std::int64_t, filter_width) = 128;
  TORCH_ARG(std::int64_t, emb_dim) = 5;
  TORCH_ARG(std::int64_t, filter_layers) = 2;
  TORCH_ARG(double, frequency) = 10.0;
  TORCH_ARG(double, fast_decay) = 0.3;
  TORCH_ARG(double, slow_decay) = 1.5;
  TORCH_ARG(double, decay_target) = 1e-2;
  TORCH_ARG(double, window_shift) = 0.0;
};

class MonarchMixerImpl : public TokenMixerImpl, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "mixer/monarch";
  MonarchMixerImpl(std::int64_t dim, std::int64_t max_tokens, const MonarchMixerOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  // The long convolutions of n tokens as matrices [C, n, n] (skips on the diagonal): the gated
  // one (T: y = x2 ⊙ T (x1 ⊙ v)) and the residual one on u (undefined without residual_long_conv).
  std::pair<torch::Tensor, torch::Tensor> conv_matrices(std::int64_t n, bool causal);

  torch::nn::AnyModule in_proj, out_proj;
  ShortConv short_conv{nullptr};
  HyenaFilter filter{nullptr}, residual_filter{nullptr};
  torch::Tensor skip, residual_skip;  // beta, beta2 [C]

 private:
  // (x1 ⊙ v) or u convolved with `f` (+ skip), padding zeroed.
  torch::Tensor long_conv(const torch::Tensor& v, HyenaFilter& f, const torch::Tensor& beta, bool causal,
                          const MixerContext& ctx);
  std::int64_t dim_;
  bool bidirectional_, direct_;
};
TORCH_MODULE(MonarchMixer);

const OptionsSchema<MonarchMixerOptions>& monarch_mixer_schema();

}  // namespace blocklab
