// attention/relative: multi-head attention with learned relative-position logits, computed
// with the memory-efficient "skewing" of the Music Transformer.
//
// Paper: "Music Transformer", Huang et al., 2018, arXiv:1809.04281, §3 (relative attention of
// Shaw et al. 2018, arXiv:1803.02155, without relative values; the skewing of Fig. 1).
//   RelativeAttention = softmax((Q K^T + S_rel) / sqrt(d)) V,  S_rel[i, j] = q_i . E_{j - i}
// with learned embeddings E_r per head (or shared by heads), one per relative offset. Q E^T is a
// [L, offsets] matrix; the skew (pad, reshape, slice: blocks/common/relative_positions.h) moves
// it to query-by-key layout. As in tensor2tensor, q is scaled by d^-1/2 before both products.
//
// Directions. The paper's decoder is causal and needs offsets -(L-1)..0 (the causal skew). An
// encoder needs both directions, 2L-1 offsets, and the unmasked skew (catalog B 0-28): the block
// keeps one table of 2M-1 offsets, -(M-1)..(M-1), M = max_relative_position, and picks the
// skew by ctx.causal (a causal run uses only the M non-positive offsets). Sequences longer than
// M give offsets beyond +-(M-1) a zero embedding (tensor2tensor's zero padding).
// Image tokens are taken as the 1-D sequence they are fed in (prefix tokens, then the grid in
// row-major order), as the paper's 1-D sequences.
//
// Shapes: x [B, N, C] -> [B, N, C]; C % heads == 0; E_r [h or 1, 2M-1, d].
// Parameters: the MHSA's plus h (2M-1) d (or (2M-1) d shared). Honours ctx.causal.
#pragma once

#include "blocks/common/multi_head.h"
#include "blocks/common/weight_decay.h"

namespace blocklab {

struct RelativeAttentionOptions : MultiHeadOptions<RelativeAttentionOptions> {
  TORCH_ARG(std::int64_t, max_relative_position) = 0;  // M: offsets |j - i| < M are learned (default 0 = the
                                                       // longest sequence, max_tokens)
  TORCH_ARG(bool, shared_heads) = false;               // one E_r for all heads (default false: per head)
};

class RelativeAttentionImpl : public MultiHeadAttentionImpl, public DeclaresNoWeightDecay {
 public:
  // The relative embeddings E_r are position parameters: no decay.
  std::vector<std::string> no_weight_decay() const override { return {"rel_embeddings"}; }
  static constexpr const char* kKey = "attention/relative";
  // options.max_relative_position() must be >= 1 here (the registry resolves 0 to max_tokens).
  explicit RelativeAttentionImpl(std::int64_t dim, const RelativeAttentionOptions& options = {});
  RelativeAttentionImpl(std::int64_t dim, const RelativeAttentionOptions& options, const MultiHeadConfig& config);
  const RelativeAttentionOptions& options() const { return options_; }

  // S_rel [B, h, L, L] for queries q [B, h, L, d] (already scaled as wanted): q_i . E_{j-i} via
  // the skew; with causal, only j <= i is meaningful (the rest is masked by the attention).
  torch::Tensor relative_logits(const torch::Tensor& q, bool causal) const;

  torch::Tensor rel_embeddings;  // E_r [h or 1, 2M-1, d]; row r <-> offset r - (M-1)

 protected:
  torch::Tensor scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx) override;

 private:
  RelativeAttentionOptions options_;
};
TORCH_MODULE(RelativeAttention);

const OptionsSchema<RelativeAttentionOptions>& relative_attention_schema();

}  // namespace blocklab
