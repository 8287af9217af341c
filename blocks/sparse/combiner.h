// sparse/combiner: Combiner-Fixed, full attention at sqrt cost. The tokens (raster order on a
// grid) are cut into segments of s; each query attends directly to its own segment's keys and to
// every other segment through one summary key and value, in one joint softmax.
//
// Paper: "Combiner: Full Attention Transformer with Sparse Computation Cost", Ren et al. 2021,
// NeurIPS, arXiv:2107.05768, §4.1 ("Combiner-Fixed"); read against google-research combiner/tf/
// approx_attention.py (sqrt_fixed_full; catalog_000_001 1-16).
//   k^_r = pool_{j in r} k_j,  q^_r = pool_{j in r} q_j   (pool: max, mean or sum; the code's
//                                                          local_summary "identity-max")
//   v^_r = sum_{j in r} softmax_j(q^_r . k_j / sqrt(d)) v_j
//   o_i  = softmax over [k_j: j in r(i)] u [k^_r: r != r(i)] of (q_i . / sqrt(d)), applied to
//          [v_j] u [v^_r]
// Causal: j <= i inside the segment and the summaries of earlier segments only (r < r(i)), as
// the code. Not causal: the summaries of the other segments, as the paper's Omega (the code's
// non-causal branch also adds the query's own segment summary); so one segment is exactly full
// attention either way. The implied attention over the tokens, a_ir softmax_{j in r}(q^_r . k_j)
// for j in another segment, is what the probe records (rows sum to 1). A last segment shorter
// than s is its own part; segment 0 (default) is round(sqrt(N)).
//
// Shape contract: x [B, N, C] -> [B, N, C]; a sequence or prefix + grid tokens (prefix tokens are
// global). Honours ctx.causal.
#pragma once

#include <string>

#include "blocks/local/local_attention.h"

namespace blocklab {

struct CombinerOptions : MultiHeadOptions<CombinerOptions> {
  TORCH_ARG(std::int64_t, segment) = 0;     // segment length s (0: round(sqrt(N)))
  TORCH_ARG(std::string, summary) = "max";  // pooling of the summary query and key: max | mean | sum
};

class CombinerAttentionImpl : public LocalAttentionImpl {
 public:
  static constexpr const char* kKey = "sparse/combiner";
  CombinerAttentionImpl(std::int64_t dim, const CombinerOptions& options, const MultiHeadConfig& config);
  const CombinerOptions& options() const { return options_; }

  // The segment length for n body tokens.
  std::int64_t segment_length(std::int64_t tokens) const;

 protected:
  // Segments of s tokens; keys: the n tokens, then the S summaries (indices n + r).
  LocalPattern body_pattern(std::int64_t height, std::int64_t width, bool causal) const override;
  std::pair<torch::Tensor, torch::Tensor> body_keys_values(const torch::Tensor& q, const torch::Tensor& k,
                                                           const torch::Tensor& v, std::int64_t height,
                                                           std::int64_t width) override;
  torch::Tensor token_weights(const torch::Tensor& over_keys, const LocalPattern& full, std::int64_t prefix) override;
  bool supports_causal() const override { return true; }
  bool takes_sequences() const override { return true; }

 private:
  CombinerOptions options_;
  torch::Tensor span_weights_;  // [B, h, S, s] of the last forward: softmax(q^_r . k_j) inside each segment
};
TORCH_MODULE(CombinerAttention);

const OptionsSchema<CombinerOptions>& combiner_schema();

}  // namespace blocklab
