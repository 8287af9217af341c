// The local attention core: softmax attention of every query over a restricted set of keys,
// computed group by group, so that no N x N matrix exists on the training path (design.md,
// "second shape": cores dense, linear, local).
//
// A pattern (LocalPattern) partitions the N_q queries into parts; a part (LocalGroups) is G
// groups of b queries, the queries of group g attending to the same m keys key_index[g] (indices
// into the N_k keys the mixer passes; N_k may exceed N_q: HaloNet's keys are the zero-padded
// grid), subject to an optional pair mask allowed[g, i, j] (Swin's shifted-window regions,
// causality). The patterns of the papers (local_patterns.h) are one part each:
//   windows      Swin, MaxViT block attention    G windows, b = m = window tokens
//   grid         MaxViT grid attention           G dilated groups, b = m = grid^2
//   halo         HaloNet                         G blocks, b = block^2, m = (block + 2 halo)^2
//   neighborhood NATTEN (kernel, dilation)       G = N_q, b = 1, m = kernel^dims
//   axial        axial attention                 G rows (or columns), b = m = their length
// with_prefix adds the prefix tokens (class, registers) as global tokens: every grid query also
// sees them, and they form a second part that sees every token.
//
//   s[g, i, j] = scale q_{Q[g,i]} . k_{K[g,j]} + bias[g, i, j]    (-inf where not allowed)
//   o_{Q[g,i]} = sum_j softmax_j(s[g, i, :]) v_{K[g,j]}
//
// The oracle (local_attend_dense) computes the same attention densely: the [N_q, N_k] boolean
// mask of the pattern and its biases scattered to [h, N_q, N_k], then masked softmax attention.
// Every test of a local block compares against it; it is the only place an N x N matrix exists.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace blocklab {

struct LocalGroups {
  torch::Tensor query_index;  // [G, b] int64
  torch::Tensor key_index;    // [G, m] int64 in [0, N_k), no key twice in a row
  torch::Tensor allowed;      // [G, b, m] bool, or undefined: every pair allowed

  std::int64_t groups() const { return query_index.size(0); }
  std::int64_t group_queries() const { return query_index.size(1); }
  std::int64_t group_keys() const { return key_index.size(1); }
};

struct LocalPattern {
  std::vector<LocalGroups> parts;  // together they hold every query of [0, N_q) exactly once
  torch::Tensor query_inverse;     // [N_q] int64: the place of query n in the parts' queries, in order
  // Coordinates (row, column; a sequence: row 0) of the queries [N_q, 2] and keys [N_k, 2], int64:
  // relative position biases read offsets key - query from them.
  torch::Tensor query_coords;
  torch::Tensor key_coords;
  torch::Tensor token_keys;  // [N_q] int64: the key index of each token (padded layouts move them)
  std::int64_t queries = 0;  // N_q
  std::int64_t keys = 0;     // N_k
  bool causal = false;

  // The same pattern with its tensors on `device`.
  LocalPattern to(const torch::Device& device) const;
};

// Fills query_inverse and checks the invariants above (the parts partition the queries, keys in
// range and unique per row, at least one allowed key per query); throws std::invalid_argument
// naming the broken one. Pattern builders end with it.
LocalPattern finish_pattern(LocalPattern pattern);

// `pattern` over grid tokens behind `prefix` prefix tokens: indices shifted by prefix, every
// group also sees the prefix keys, and the prefix queries (one more part) see every token's key
// (Longformer-style global tokens); causal: prefix query i sees the prefix keys up to i only
// (the grid comes after it). prefix = 0: the pattern itself.
LocalPattern with_prefix(const LocalPattern& pattern, std::int64_t prefix);

// The relative offsets key - query of every pair of a part, [G, b, m, 2] int64 (row, column).
torch::Tensor pair_offsets(const LocalPattern& pattern, const LocalGroups& part);

// The local attention. q [B, h, N_q, d], k [B, h, N_k, d], v [B, h, N_k, e]; biases: one per
// part (or none), each broadcastable to [B, h, G, b, m] or undefined -> o [B, h, N_q, e]. When
// `weights` is given it receives each part's attention weights [B, h, G, b, m] (the probe:
// local_weights_dense scatters them), before dropout (rate `attn_drop` when `training`).
torch::Tensor local_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const LocalPattern& pattern, const std::vector<torch::Tensor>& biases, double scale,
                           std::vector<torch::Tensor>* weights = nullptr, double attn_drop = 0.0,
                           bool training = false);

// The pattern as a dense [N_q, N_k] boolean mask: true where query n may see key j.
torch::Tensor local_dense_mask(const LocalPattern& pattern);
// Per-part values x_p [..., G, b, m] scattered to one [..., N_q, N_k] (`fill` outside the pattern;
// undefined parts give `fill`).
torch::Tensor local_scatter_dense(const std::vector<torch::Tensor>& x, const LocalPattern& pattern, double fill);
// The oracle: the same attention with the explicit [N_q, N_k] matrix (arguments as local_attend).
torch::Tensor local_attend_dense(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const LocalPattern& pattern, const std::vector<torch::Tensor>& biases, double scale);
// Attention weights per part as the dense map [B, h, N_q, N_k] the probe shows (zeros outside
// the pattern). Small N only: this is the N x N matrix.
inline torch::Tensor local_weights_dense(const std::vector<torch::Tensor>& weights, const LocalPattern& pattern) {
  return local_scatter_dense(weights, pattern, 0.0);
}

}  // namespace blocklab
