// attention/softmax: multi-head scaled dot-product self-attention.
//
// Paper: "Attention Is All You Need", Vaswani et al., 2017, arXiv:1706.03762 (§3.2).
//   Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V,  Q, K, V = X W_Q, X W_K, X W_V per head,
//   output = Concat(heads) W_O.
//
// Shape contract: x [B, N, C] -> [B, N, C]; C % heads == 0.
// Honours ctx.causal (token i attends to j <= i, §3.2.3). By default forward uses a fused
// kernel (on CPU for up to 200 tokens our small_attention, else at::scaled_dot_product_attention);
// with fused=false, or whenever ctx.probe captures,
// it computes softmax(q k^T / sqrt(d)) v explicitly and the probe records [B, h, N, N].
#pragma once

#include "blocks/common/multi_head.h"

namespace blocklab {

struct SoftmaxAttentionOptions : MultiHeadOptions<SoftmaxAttentionOptions> {
  TORCH_ARG(bool, fused) = true;  // fused kernel (default true); false: explicit path
};

class SoftmaxAttentionImpl : public MultiHeadAttentionImpl {
 public:
  static constexpr const char* kKey = "attention/softmax";
  explicit SoftmaxAttentionImpl(std::int64_t dim, const SoftmaxAttentionOptions& options = {});
  // With a mask and the other registry-level settings (see multi_head_config).
  SoftmaxAttentionImpl(std::int64_t dim, const SoftmaxAttentionOptions& options, const MultiHeadConfig& config);
  const SoftmaxAttentionOptions& options() const { return options_; }

 protected:
  bool fused_path(const MixerContext&) const override { return options_.fused(); }

 private:
  SoftmaxAttentionOptions options_;
};
TORCH_MODULE(SoftmaxAttention);

// The schema of SoftmaxAttentionOptions (registry, describe, binding).
const OptionsSchema<SoftmaxAttentionOptions>& softmax_attention_schema();

}  // namespace blocklab
