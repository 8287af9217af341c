// attention/softplus: length-scaled softplus attention (LSSA) with optional re-weighting
// (LSSAR).
//
// Paper: "Softplus Attention with Re-weighting Boosts Length Extrapolation in Large Language
// Models", Gao & Spratling, 2025, arXiv:2501.13428. The official code (iminfine/freeatten) was
// not available; the formulas follow the block catalog (catalog_002.md B-38), whose constants
// are marked [verify] there: the base of the length scale and the power p are options.
// The softmax is split into a positive map and an l1 normalisation; the map becomes a softplus
// of length-scaled logits (entropy invariance: the scale grows like ln n):
//   LSSA:  A_ij = softplus(k_i s_ij) / sum_j' softplus(k_i s_ij'),  s = q k^T / sqrt(d),
//          k_i = ln n_i / ln base,  n_i = number of keys row i sees (causal: i + 1)
//   LSSAR: A^_ij = ReLU(n_i A_ij - 1)^p / sum_j' ReLU(n_i A_ij' - 1)^p  (weights below the
//          uniform 1/n_i are dropped, the rest sharpened; a row with nothing above uniform, i.e.
//          a uniform row, keeps A)
// Keys with a -inf logit (causal mask, masks) are not visible: weight 0, and not counted in n_i.
// length_base: 512 by default (the constant of the entropy-invariance scale log_512 n); 0 uses
// max_tokens, the training length, so that k = 1 there.
//
// Shapes: x [B, N, C] -> [B, N, C]; C % heads == 0. No parameters beyond the MHSA's.
// Honours ctx.causal. Rows of the weights sum to 1 (LSSA and LSSAR).
#pragma once

#include "blocks/common/multi_head.h"

namespace blocklab {

struct SoftplusAttentionOptions : MultiHeadOptions<SoftplusAttentionOptions> {
  TORCH_ARG(double, length_base) = 512.0;  // base of k_i = ln n_i / ln base, > 1 (default 512; 0 = max_tokens)
  TORCH_ARG(bool, reweight) = false;       // LSSAR re-weighting (default false: LSSA)
  TORCH_ARG(double, power) = 3.0;          // p of the re-weighting, >= 1 (default 3)
};

class SoftplusAttentionImpl : public MultiHeadAttentionImpl {
 public:
  static constexpr const char* kKey = "attention/softplus";
  // options.length_base() must be > 1 here (the registry resolves 0 to max_tokens).
  explicit SoftplusAttentionImpl(std::int64_t dim, const SoftplusAttentionOptions& options = {});
  SoftplusAttentionImpl(std::int64_t dim, const SoftplusAttentionOptions& options, const MultiHeadConfig& config);
  const SoftplusAttentionOptions& options() const { return options_; }

  // The LSSA(R) normaliser on logits s [..., N] (-inf = not visible), exposed for tests.
  torch::Tensor normalise_logits(const torch::Tensor& s) const;

 protected:
  torch::Tensor normalise(const torch::Tensor& s, const MixerContext& ctx) override;

 private:
  SoftplusAttentionOptions options_;
};
TORCH_MODULE(SoftplusAttention);

const OptionsSchema<SoftplusAttentionOptions>& softplus_attention_schema();

}  // namespace blocklab
