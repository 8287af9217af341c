// local/axial: axial attention, self-attention along the rows and along the columns of the grid,
// each axis with its own projections; summed (the default) or one after the other.
//
// Paper: "Axial Attention in Multidimensional Transformers", Ho et al. 2019, arXiv:1912.12180
// (§3); the module of lucidrains/axial-attention (catalog_000_001 1-17):
//   Attn_a(x) = softmax(q k^T / sqrt(d)) v along axis a (the other axis folded into the batch),
//   q, k, v without bias, W_O with bias;  out = Attn_rows(x) + Attn_columns(x)   (sum: true)
//                                          out = Attn_columns(Attn_rows(x))      (sum: false)
// One layer of the sum reaches the token's row and column; two hops (or the sequential form)
// reach the whole grid.
//
// Shape contract: x [B, N, C] -> [B, N, C]; N = prefix + grid tokens (prefix tokens are global
// tokens of each axis attention: local_core.h, with_prefix). Not causal.
#pragma once

#include "blocks/local/local_attention.h"

namespace blocklab {

struct AxialAttentionOptions : MultiHeadOptions<AxialAttentionOptions> {
  AxialAttentionOptions() { qkv_bias(false); }  // lucidrains: to_q, to_kv without bias
  TORCH_ARG(bool, sum) = true;                  // sum the two axes (false: rows, then columns)
};

// Attention along one axis of the grid (0: columns, 1: rows), a part of local/axial.
class AxisAttentionImpl : public LocalAttentionImpl {
 public:
  AxisAttentionImpl(std::int64_t dim, const MultiHeadConfig& config, int axis);

 protected:
  LocalPattern body_pattern(std::int64_t height, std::int64_t width, bool causal) const override;

 private:
  int axis_;
};
TORCH_MODULE(AxisAttention);

class AxialAttentionImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "local/axial";
  AxialAttentionImpl(std::int64_t dim, const AxialAttentionOptions& options, const MultiHeadConfig& config);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override { return rows->capabilities(); }

  AxisAttention rows{nullptr}, columns{nullptr};

 private:
  bool sum_;
};
TORCH_MODULE(AxialAttention);

const OptionsSchema<AxialAttentionOptions>& axial_attention_schema();

}  // namespace blocklab
