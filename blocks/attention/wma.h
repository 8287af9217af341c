// attention/wma: weighted multiplicative attention (WMA), FlexiBERT's second similarity: a
// learned d x d matrix W between the query and the key of scaled dot-product attention.
//
// Paper: "FlexiBERT: Are Current Transformer Architectures too Homogeneous and Rigid?", Tuli,
// Dedhia, Tuli & Jha, 2023 (JAIR), arXiv:2205.11656 (catalog_003_004.md C20); read against
// jha-lab/txf_design-space, transformers/.../bert/modeling_modular_bert.py.
//   S = q W k^T / sqrt(d)  per head (SDP is W = I),  A = softmax(S),  out = Concat_h(A v) W_O
//
// Decisions:
// - shared (default true): the official homogeneous layer (BertSelfAttentionModular, FlexiBERT's
//   search space with one operation per layer) holds ONE d x d matrix per layer, used by all its
//   heads; its heterogeneous layer (BertHeteroAttentionModular, FlexiBERT 2.0) holds one per WMA
//   head. shared: false gives that per-head form, W [h, d, d].
// - init (default identity): W = I, so a fresh WMA equals attention/softmax with the same Q, K, V,
//   O (the catalog's test); `uniform` is the official code's U(-0.1, 0.1). W has no bias.
// - W acts on the queries as the scores see them (after qk_norm and rotary, when set): the
//   scores are (q W) k^T / sqrt(d), so the dense core's fused kernel (fused: true) and its
//   reference path both take q W in the place of q; causal and key-padding masks, the `mask`
//   component and the probe (it records A [B, h, N, N]; rows sum to 1) come from the dense core.
//
// Shapes: x [B, N, C] -> [B, N, C]; heads divides C. Parameters: the MHSA's + d^2 (shared) or
// + h d^2. Honours ctx.causal and ctx.lengths.
#pragma once

#include <string>
#include <utility>

#include "blocks/common/multi_head.h"

namespace blocklab {

struct WmaAttentionOptions : MultiHeadOptions<WmaAttentionOptions> {
  TORCH_ARG(bool, shared) = true;             // one W for all heads (default true); false: one per head
  TORCH_ARG(std::string, init) = "identity";  // W init: identity (default) or uniform U(-0.1, 0.1)
  TORCH_ARG(bool, fused) = true;              // fused softmax kernel on (q W, k) (default true)
};

class WmaAttentionImpl : public MultiHeadAttentionImpl {
 public:
  static constexpr const char* kKey = "attention/wma";
  explicit WmaAttentionImpl(std::int64_t dim, const WmaAttentionOptions& options = {});
  WmaAttentionImpl(std::int64_t dim, const WmaAttentionOptions& options, const MultiHeadConfig& config);
  const WmaAttentionOptions& options() const { return options_; }

  torch::Tensor similarity;  // W: [d, d] (shared) or [h, d, d]

 protected:
  bool fused_path(const MixerContext&) const override { return options_.fused(); }
  // (q W, k): the projection's norm and rotation, then W on the queries.
  std::pair<torch::Tensor, torch::Tensor> queries_keys(const torch::Tensor& q, const torch::Tensor& k,
                                                       const MixerContext& ctx) override;

 private:
  WmaAttentionOptions options_;
};
TORCH_MODULE(WmaAttention);

const OptionsSchema<WmaAttentionOptions>& wma_attention_schema();

}  // namespace blocklab
