// Relative-position primitives shared by the relative-position attentions (attention/relative,
// attention/urpe, attention/gpsa) and their tests.
//
// Conventions: a relative offset is key minus query, j - i. A table of 2M - 1 offsets stores
// offset o = r - (M - 1) in row r (row M - 1 is offset 0), so one table serves both directions.
//
// - relative_index: the [n, n] row indices into such a table, offsets clamped to +-(M - 1)
//   (Shaw et al. 2018, arXiv:1803.02155, §3.2 clipping). Gathering a per-head table [h, 2M-1]
//   with it gives a Toeplitz matrix [h, n, n] (entry depends on j - i only).
// - relative_window: the 2n - 1 rows of a table [.., 2M-1, ..] for a sequence of n tokens;
//   offsets beyond +-(M - 1) get zero rows (tensor2tensor's zero padding when n > M).
// - skew_causal / skew_bidirectional: the Music Transformer "skewing" (Huang et al. 2018,
//   "Music Transformer", arXiv:1809.04281, §3, Fig. 1) that turns the query-by-offset
//   logits Q E^T into the query-by-key matrix S_rel[i, j] = q_i . E_{j - i} with a pad, a
//   reshape and a slice: O(L d) extra memory instead of Shaw et al.'s O(L^2 d) gather.
// - grid_offsets: ConViT's relative features (d'Ascoli et al. 2021, arXiv:2103.10697, and
//   get_rel_indices in the official convit.py): (dx, dy, dx^2 + dy^2) of key minus query on a
//   row-major grid, x = column, y = row.
#pragma once

#include <torch/torch.h>

namespace blocklab {

// [n, n] int64: clamp(j - i, -(M-1), M-1) + (M-1), M = max_distance >= 1.
torch::Tensor relative_index(std::int64_t tokens, std::int64_t max_distance, const torch::Device& device);

// table [..., 2M-1, ...] (offsets on dimension `dim`) -> [..., 2n-1, ...] for offsets -(n-1)..(n-1):
// a centred slice when n <= M, zero rows for |offset| > M-1 otherwise.
torch::Tensor relative_window(const torch::Tensor& table, std::int64_t tokens, std::int64_t dim);

// rel [..., L, L], column r <-> offset r - (L-1) (offsets -(L-1)..0) -> [..., L, L] with
// out[i, j] = rel[i, L-1 + j - i] for j <= i. Entries above the diagonal hold other rows'
// values (or the padded zero) and must be masked, as the causal attention does.
torch::Tensor skew_causal(const torch::Tensor& rel);

// rel [..., L, 2L-1], column r <-> offset r - (L-1) -> [..., L, L] with
// out[i, j] = rel[i, L-1 + j - i] for every i, j (the unmasked skew of an encoder): pad one zero
// column on the right, flatten the last two dimensions, drop the first L-1 entries, reshape
// rows of 2L-1 and keep the first L columns.
torch::Tensor skew_bidirectional(const torch::Tensor& rel);

// [H*W, H*W, 3]: (x_j - x_i, y_j - y_i, (x_j - x_i)^2 + (y_j - y_i)^2) for tokens i, j of a
// height x width grid in row-major order (x = column, y = row).
torch::Tensor grid_offsets(std::int64_t height, std::int64_t width, const torch::TensorOptions& options);

}  // namespace blocklab
