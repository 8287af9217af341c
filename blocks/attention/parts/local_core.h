// The local attention core: softmax attention of every query over a restricted set of keys,
// computed group by group, so that no N x N matrix exists on the training path (design.md,
// "second shape": cores dense, linear, local).
//
// A pattern (LocalPattern) partitions the N_q queries into G groups of b queries. The queries
// of group g attend to the same m keys key_index[g] (indices into the N_k keys the mixer passes;
// N_k may exceed N_q: HaloNet's keys are the zero-padded grid), subject to an optional pair mask
// allowed[g, i, j] (Swin's shifted-window regions, causality, slots left empty). The patterns
// of the papers (local_patterns.h):
//   windows      Swin, MaxViT block attention    G windows, b = m = window tokens
//   grid         MaxViT grid attention           G dilated groups, b = m = grid^2
//   halo         HaloNet                         G blocks, b = block^2, m = (block + 2 halo)^2
//   neighborhood NATTEN (kernel, dilation)       G = N_q, b = 1, m = kernel^dims
//   axial        axial attention                 G rows (or columns), b = m = their length
//
//   s[g, i, j] = scale q_{Q[g,i]} . k_{K[g,j]} + bias[g, i, j]    (-inf where not allowed)
//   o_{Q[g,i]} = sum_j softmax_j(s[g, i, :]) v_{K[g,j]}
//
// The oracle (local_attend_dense) computes the same attention densely: the [N_q, N_k] boolean
// mask of the pattern and its bias scattered to [h, N_q, N_k], then masked softmax attention.
// Every test of a local block compares against it; it is the only place an N x N matrix exists.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace blocklab {

struct LocalPattern {
  torch::Tensor query_index;    // [G, b] int64: every query of [0, N_q) exactly once
  torch::Tensor query_inverse;  // [N_q] int64: the position of query n in query_index.flatten()
  torch::Tensor key_index;      // [G, m] int64 in [0, N_k), no key twice in a row
  torch::Tensor allowed;        // [G, b, m] bool, or undefined: every pair allowed
  // Coordinates (row, column; 1-D patterns: column only, row 0) of the queries [N_q, 2] and of
  // the keys [N_k, 2], int64: relative position biases read offsets key - query from them.
  torch::Tensor query_coords;
  torch::Tensor key_coords;
  std::int64_t queries = 0;  // N_q
  std::int64_t keys = 0;     // N_k

  std::int64_t groups() const { return query_index.size(0); }
  std::int64_t group_queries() const { return query_index.size(1); }
  std::int64_t group_keys() const { return key_index.size(1); }
  // The same pattern with its tensors on `device`.
  LocalPattern to(const torch::Device& device) const;
};

// Fills query_inverse and checks the invariants above (a partition of the queries, keys in
// range and unique per row, at least one allowed key per query); throws std::invalid_argument
// naming the broken one. Pattern builders end with it.
LocalPattern finish_pattern(LocalPattern pattern);

// The relative offsets key - query of every pair, [G, b, m, 2] int64 (row, column).
torch::Tensor pair_offsets(const LocalPattern& pattern);

// The local attention. q [B, h, N_q, d], k [B, h, N_k, d], v [B, h, N_k, e]; bias broadcastable
// to [B, h, G, b, m] or undefined -> o [B, h, N_q, e]. When `weights` is given it receives the
// attention weights [B, h, G, b, m] (for the probe: local_weights_dense scatters them).
torch::Tensor local_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const LocalPattern& pattern, const torch::Tensor& bias, double scale,
                           torch::Tensor* weights = nullptr);

// The pattern as a dense [N_q, N_k] boolean mask: true where query n may see key j.
torch::Tensor local_dense_mask(const LocalPattern& pattern);
// Group-ordered values x [..., G, b, m] scattered to [..., N_q, N_k] (`fill` outside the pattern).
torch::Tensor local_scatter_dense(const torch::Tensor& x, const LocalPattern& pattern, double fill);
// The oracle: the same attention with the explicit [N_q, N_k] matrix (arguments as local_attend).
torch::Tensor local_attend_dense(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const LocalPattern& pattern, const torch::Tensor& bias, double scale);
// Attention weights [B, h, G, b, m] as the dense map [B, h, N_q, N_k] the probe shows (zeros
// outside the pattern). Small N only: this is the N x N matrix.
inline torch::Tensor local_weights_dense(const torch::Tensor& weights, const LocalPattern& pattern) {
  return local_scatter_dense(weights, pattern, 0.0);
}

}  // namespace blocklab
