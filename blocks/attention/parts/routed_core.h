// The routed attention core: softmax attention inside groups whose queries and keys are chosen
// from the input (Routing Transformer's k-means clusters, BiFormer's routed regions,
// HyperAttention's LSH buckets), so the indices differ per sample and head. Like the local core
// (local_core.h) it gathers each group's queries and keys and never forms the N x N matrix on the
// training path; unlike it, a query may sit in several groups or in none.
//
//   s[g, i, j] = scale q_{Q[g,i]} . k_{K[g,j]} + bias[g, i, j]       (-inf where not allowed)
//   o_g,i      = softmax_j(s[g, i, :]) v_{K[g, :]},   lse_g,i = logsumexp_j s[g, i, j]
//
// and the occurrences of query n are merged by one of
//   union  o_n = sum_occ exp(lse_occ) o_occ / sum_occ exp(lse_occ): one softmax over the union of
//          the keys it saw (a key seen twice counts twice; HyperAttention's block + sample merge),
//   mean   o_n = mean over its occurrences (Routing Transformer's scatter-mean).
// An occurrence with no allowed key contributes nothing; a query with no occurrence gets 0.
//
// The oracle (routed_attend_dense) computes the same from the explicit [N_q, N_k] matrices:
// union: one masked softmax whose logits carry log(sum_occ exp(bias)) per pair; mean: one masked
// softmax per group. Tests compare against it; it is the only place an N x N matrix exists.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace blocklab {

struct RoutedGroups {
  // Leading dims [B', h'] broadcast to [B, h] (B' in {1, B}, h' in {1, h}): a pattern shared by
  // the heads (BiFormer) or by the batch has size 1 there.
  torch::Tensor query_index;  // [B', h', G, b] int64 in [0, N_q)
  torch::Tensor key_index;    // [B', h', G, m] int64 in [0, N_k)
  torch::Tensor allowed;      // broadcastable to [B, h, G, b, m] bool, or undefined: all allowed
  torch::Tensor bias;         // broadcastable to [B, h, G, b, m], or undefined

  std::int64_t groups() const { return query_index.size(-2); }
  std::int64_t group_queries() const { return query_index.size(-1); }
  std::int64_t group_keys() const { return key_index.size(-1); }
};

enum class RoutedMerge { union_softmax, mean };

// q [B, h, N_q, d], k [B, h, N_k, d], v [B, h, N_k, e] -> o [B, h, N_q, e]. When `weights` is given
// it receives the groups' attention weights [B, h, G, b, m] (before dropout at rate `attn_drop`
// when `training`) and `lse` (when given) their log-normalisers [B, h, G, b].
torch::Tensor routed_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const RoutedGroups& groups, double scale, RoutedMerge merge,
                            torch::Tensor* weights = nullptr, torch::Tensor* lse = nullptr, double attn_drop = 0.0,
                            bool training = false);

// The weights the merged output puts on each key, [B, h, N_q, N_k] (the probe; small N only),
// from routed_attend's weights and lse.
torch::Tensor routed_weights_dense(const torch::Tensor& weights, const torch::Tensor& lse, const RoutedGroups& groups,
                                   std::int64_t queries, std::int64_t keys, RoutedMerge merge);

// The oracle: the same attention from explicit [N_q, N_k] matrices (arguments as routed_attend).
torch::Tensor routed_attend_dense(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const RoutedGroups& groups, double scale, RoutedMerge merge);

}  // namespace blocklab
