// attention/urpe: Universal RPE-based attention, softmax attention with a relative-position
// bias whose weights are then multiplied elementwise by a learned Toeplitz matrix.
//
// Paper: "Your Transformer May Not be as Powerful as You Expect", Luo et al., 2022,
// arXiv:2205.13401 (URPE-based attention), official code lsj2408/URPE (fairseq multihead_attention.py):
//   URPE-Attn(X) = (softmax(Q K^T / sqrt(d) + B) ⊙ C) V,  B_ij = b_{j-i},  C_ij = c_{j-i}
// per head. B is the ordinary additive RPE bias; C is Toeplitz (depends on j - i only) and is
// applied after the softmax, so rows of the weights no longer sum to 1 (the paper's point:
// RPE-based attention with row-stochastic weights is not a universal approximator).
//
// Index mode: one parameter per offset in [-(M-1), M-1], M = max_relative_position, offsets
// beyond clipped to +-(M-1) (the paper's "unique" mode; the code's T5-bucketed mode is not
// offered). The official code shares b and c across layers (tables owned by the encoder);
// here each attention owns its tables, since a mixer is built per block. Init: c = 1
// (`constant_init`, the paper's synthetic experiments) so the block starts as RPE attention,
// else N(0, 0.02) (BERT init, the code's default); b ~ N(0, 0.02).
// Image tokens are taken as the 1-D sequence they are fed in (prefix tokens, then the grid in
// row-major order). The probe records P ⊙ C (signed, rows not normalised).
//
// Shapes: x [B, N, C] -> [B, N, C]; C % heads == 0. Parameters: the MHSA's plus h (2M-1) for c
// and h (2M-1) for b (with rel_bias). Honours ctx.causal (mask before the softmax, C after).
#pragma once

#include "blocks/common/multi_head.h"
#include "blocks/common/weight_decay.h"

namespace blocklab {

struct UrpeAttentionOptions : MultiHeadOptions<UrpeAttentionOptions> {
  TORCH_ARG(std::int64_t, max_relative_position) = 0;  // M: offsets clipped to +-(M-1) (default 0 = max_tokens)
  TORCH_ARG(bool, rel_bias) = true;                    // additive RPE bias B before the softmax (default true)
  TORCH_ARG(bool, constant_init) = true;               // C = 1 at init (default true); false: N(0, 0.02)
};

class UrpeAttentionImpl : public MultiHeadAttentionImpl, public DeclaresNoWeightDecay {
 public:
  // The Toeplitz table and the relative bias table are position parameters: no decay.
  std::vector<std::string> no_weight_decay() const override;
  static constexpr const char* kKey = "attention/urpe";
  // options.max_relative_position() must be >= 1 here (the registry resolves 0 to max_tokens).
  explicit UrpeAttentionImpl(std::int64_t dim, const UrpeAttentionOptions& options = {});
  UrpeAttentionImpl(std::int64_t dim, const UrpeAttentionOptions& options, const MultiHeadConfig& config);
  const UrpeAttentionOptions& options() const { return options_; }

  // The Toeplitz multiplier C [h, n, n] and the bias B [h, n, n] (undefined without rel_bias).
  torch::Tensor multiplier(std::int64_t tokens) const;
  torch::Tensor bias(std::int64_t tokens) const;

  torch::Tensor toeplitz_table;  // c [h, 2M-1]; column r <-> offset r - (M-1)
  torch::Tensor bias_table;      // b [h, 2M-1] (rel_bias)

 protected:
  MixerCapabilities capabilities() const override;
  torch::Tensor score_bias(std::int64_t tokens, const MixerContext& ctx) override;
  torch::Tensor normalise(const torch::Tensor& s, const MixerContext& ctx) override;

 private:
  UrpeAttentionOptions options_;
};
TORCH_MODULE(UrpeAttention);

const OptionsSchema<UrpeAttentionOptions>& urpe_attention_schema();

}  // namespace blocklab
