// sparse/landmark: Landmark Attention's grouped softmax. The sequence is cut into blocks of l
// regular tokens, each followed by its landmark token; a query attends to its own block's
// regular tokens and to the landmarks of the earlier blocks in one softmax, and each earlier
// landmark's probability is spread over its block's regular tokens by a softmax inside the block.
//
// Paper: "Landmark Attention: Random-Access Infinite Context Length for Transformers",
// Mohtashami & Jaggi 2023, arXiv:2305.16300, §3.1 (eq. (1)-(2)); read against
// epfml/landmark-attention lm_benchmark/models/landmark.py (landmark_grouped_softmax,
// CausalSelfAttention.forward; catalog_002 B-12). With s_ij = q_i k_j / sqrt(d), blk(j) the
// number of landmarks strictly before j and c = blk(i):
//   main group G(i) = {regular j <= i : blk(j) = c} u {landmark L_b : b < c}
//                     (the current block's landmark is left out, also when i is that landmark)
//   p^main_ij  = softmax_{j in G(i)}(s_ij)
//   p_ij       = p^main_ij                                         regular j in block c
//              = p^main_{i, L_b} softmax_{j' regular in b}(s_ij')_j   regular j in block b < c
//              = 0                                                 landmark j
//   y_i = sum_j p_ij v_j; rows of p sum to 1.
// In this harness a mixer cannot insert tokens: the token at every position p with
// p % (l + 1) == l is the landmark (as in the paper's training data, where a landmark token follows
// every l regular tokens; the model's own tokens play its part). Computed by query blocks of
// l + 1 tokens: each block's queries see the landmark logits and the per-block softmaxes of the
// earlier blocks, memory O(N (l + 1)) per step; no N x N matrix on the training path (training
// time O(N^2), as the paper's). The probe records the implied p (the identity's values).
// Causal only (the grouped softmax is defined over the past): ctx.causal = false gives the same
// causal attention, as the other always-causal mixers (ssm/mamba, conv/hyena).
//
// Shape contract: x [B, N, C] -> [B, N, C]; any tokens, in order (prefix and grid tokens alike).
#pragma once

#include "blocks/common/multi_head.h"

namespace blocklab {

struct LandmarkAttentionOptions : MultiHeadOptions<LandmarkAttentionOptions> {
  TORCH_ARG(std::int64_t, block) = 50;  // l: regular tokens per block before its landmark (default 50, mem_freq)
};

class LandmarkAttentionImpl : public MultiHeadAttentionImpl {
 public:
  static constexpr const char* kKey = "sparse/landmark";
  LandmarkAttentionImpl(std::int64_t dim, const LandmarkAttentionOptions& options, const MultiHeadConfig& config);
  const LandmarkAttentionOptions& options() const { return options_; }

  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const MixerContext& ctx) override;
  // Always causal, normalised weights; no key padding.
  MixerCapabilities core_capabilities() const override;

  // The grouped-softmax attention of q, k [B, h, N, d], v [B, h, N, e] -> [B, h, N, e].
  torch::Tensor grouped_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
  // Whether position p is a landmark: p % (block + 1) == block.
  bool is_landmark(std::int64_t position) const { return position % (options_.block() + 1) == options_.block(); }

 private:
  // The outputs of the queries of block c ([B, h, l + 1, d]) from the blocked keys and values
  // kb, vb [B, h, C, l + 1, .] (zero-padded to whole blocks).
  torch::Tensor block_queries(const torch::Tensor& q, const torch::Tensor& kb, const torch::Tensor& vb, std::int64_t c);

  LandmarkAttentionOptions options_;
  double attn_drop_;
};
TORCH_MODULE(LandmarkAttention);

const OptionsSchema<LandmarkAttentionOptions>& landmark_attention_schema();

}  // namespace blocklab
