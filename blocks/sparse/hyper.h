// sparse/hyper: HyperAttention, near-linear attention from sortLSH blocks plus uniformly sampled
// keys, merged by log-sum-exp; causal through a recursion over halves.
//
// Paper: "HyperAttention: Long-context Attention in Near-Linear Time", Han et al. 2023,
// arXiv:2310.05869, Algorithms 1-4 and Appendix B; read against insuhan/hyper-attn
// models/attention/hyper_attn.py, angular_lsh.py, utils.py (catalog_000_001 0-30).
// Non-causal, q, k [B, h, N, d], v [B, h, N, e], scale d^{-1/2}:
//   1. angular LSH with r fixed directions P [d, r] (a buffer drawn at construction):
//        bits = (x P > 0), bucket = gray(sum_i bits_i 2^i) with gray(v) = v xor (v >> 1), the
//        code's reflected Gray-code table perm[v]; queries and keys sorted by bucket (stable).
//   2. block-diagonal part: the sorted keys cut into blocks of b; the i-th sorted query attends
//        exactly to the key block of the i-th sorted key (block i div b) -> (o_blk, lse_blk).
//   3. residual part: s key positions (in sorted order) drawn uniformly with replacement; every
//        sorted query attends to the sampled keys except those in its own block, with the
//        importance weight N / s: lse_res = logsumexp(...) + log(N / s) -> (o_res, lse_res).
//   4. merge: c = 1 / (1 + exp(lse_res - lse_blk)), o = c o_blk + (1 - c) o_res,
//        lse = lse_blk - log c (computed per query in token order: no unsort).
//   The implied weights: softmax_j(q_i k_j scale + log m_ij), m_ij = 1 for the pairs of a block,
//   m_ij = count_ij N / s for sampled keys outside the block (0 elsewhere): rows sum to 1.
// Causal (Algorithm 4): N <= min_seq_len: exact causal attention. Otherwise (an odd N padded by
// one zero token, as the code) the halves' causal attentions (recursively, both halves stacked as
// heads) give the top rows; the bottom rows merge (step 4) the second half's causal attention
// with the non-causal HyperAttention of the second half's queries over the first half's keys.
// There a query takes the key block where its bucket falls among the sorted keys (searchsorted):
// with the code's rank rule (i-th sorted query -> block of the i-th sorted key) a later query's
// hash moves earlier queries between blocks, which leaks the future; the new rule reads only
// the query itself and past keys.
// N <= min_seq_len, or one block (b >= N), is exact attention. Exact attention is computed by
// chunks of b queries, so no N x N matrix exists on the training path.
// Deviations from the code: a last block shorter than b stays short (the code pads the sorted
// keys with zero keys that take part in the last block's softmax); the non-causal threshold is
// N <= min_seq_len as the causal one (the code's non-causal test is N < min_seq_len). The samples
// come from a generator seeded with `seed` on every call ([h, s], shared by the batch), so the
// output is deterministic and independent of the batch.
//
// Shape contract: x [B, N, C] -> [B, N, C]; any tokens (prefix and grid tokens alike). Honours
// ctx.causal.
#pragma once

#include <utility>

#include "blocks/common/multi_head.h"

namespace blocklab {

struct HyperAttentionOptions : MultiHeadOptions<HyperAttentionOptions> {
  TORCH_ARG(std::int64_t, lsh_projections) = 7;  // r random directions of the angular LSH (default 7)
  TORCH_ARG(std::int64_t, block_size) = 256;     // b: queries and keys per sorted block (default 256)
  TORCH_ARG(std::int64_t, sample_size) = 256;    // s: uniformly sampled keys (default 256; 0: none)
  TORCH_ARG(std::int64_t, min_seq_len) = 4096;   // exact attention up to this many tokens (default 4096)
  TORCH_ARG(std::int64_t, seed) = 0;             // seed of the key sampling (default 0)
};

// The pattern of one non-causal call: the key sort order [B, h, N_k] (sorted position -> key),
// the key block each query attends to [B, h, N_q] (blocks of b sorted keys, queries in token
// order), the query sort order [B, h, N_q] (rank rule only) and the sampled sorted key positions
// [h, s] (undefined when there is one block or no sample).
struct HyperPattern {
  torch::Tensor query_order;
  torch::Tensor key_order;
  torch::Tensor query_block;
  torch::Tensor samples;
  std::int64_t block = 0;
};

// Attention output and its log-normaliser per query: o [B, h, N, e], lse [B, h, N].
using HyperResult = std::pair<torch::Tensor, torch::Tensor>;

class HyperAttentionImpl : public MultiHeadAttentionImpl {
 public:
  static constexpr const char* kKey = "sparse/hyper";
  HyperAttentionImpl(std::int64_t dim, const HyperAttentionOptions& options, const MultiHeadConfig& config);
  const HyperAttentionOptions& options() const { return options_; }

  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const MixerContext& ctx) override;
  // Causal, normalised weights (the implied map); no key padding.
  MixerCapabilities core_capabilities() const override;

  // The LSH bucket of every row of x [B, h, N, d] -> [B, h, N] int64 (step 1).
  torch::Tensor buckets(const torch::Tensor& x) const;
  // The pattern the non-causal approximation uses for q [B, h, N_q, d], k [B, h, N_k, d]: query
  // blocks by rank (the code; N_q = N_k) or, by_keys, by where each query's bucket falls among the
  // sorted keys' buckets (the causal recursion's off-diagonal part).
  HyperPattern pattern(const torch::Tensor& q, const torch::Tensor& k, bool by_keys = false) const;
  // Non-causal HyperAttention (exact when N_k <= min_seq_len) and the causal recursion.
  HyperResult attend_non_causal(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                bool by_keys = false);
  HyperResult attend_causal(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
  // Steps 2 and 3 for queries q [B, h, N_q, d] (token order) over the sorted keys ks [B, h, N_k, d]
  // and values vs [B, h, N_k, e]; query_block [B, h, N_q]: each query's key block.
  HyperResult block_part(const torch::Tensor& q, const torch::Tensor& ks, const torch::Tensor& vs,
                         const torch::Tensor& query_block);
  HyperResult residual_part(const torch::Tensor& q, const torch::Tensor& ks, const torch::Tensor& vs,
                            const torch::Tensor& samples, const torch::Tensor& query_block);

  torch::Tensor lsh_directions;  // [d, r] buffer: the LSH's random directions

 private:
  HyperAttentionOptions options_;
  double attn_drop_;
};
TORCH_MODULE(HyperAttention);

const OptionsSchema<HyperAttentionOptions>& hyper_attention_schema();

// `count` sorted key positions in [0, tokens) per head, [heads, count] int64, drawn uniformly with
// replacement from a CPU generator seeded with `seed`.
torch::Tensor hyper_samples(std::int64_t seed, std::int64_t heads, std::int64_t tokens, std::int64_t count);
// Appendix B: two attentions over disjoint key sets, (o1, lse1) and (o2, lse2), merged into the
// attention over their union (lse1 finite; lse2 may be -inf: no key).
HyperResult hyper_merge(const HyperResult& first, const HyperResult& second);
// Exact softmax attention with its log-normaliser, by chunks of `chunk` queries (no N x N);
// dropout at rate attn_drop on the weights when training.
HyperResult hyper_exact(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                        bool causal, std::int64_t chunk, double attn_drop = 0.0, bool training = false);

}  // namespace blocklab
