#include "blocks/common/relative_positions.h"

namespace blocklab {

torch::Tensor relative_index(std::int64_t tokens, std::int64_t max_distance, const torch::Device& device) {
  TORCH_CHECK(tokens >= 1 && max_distance >= 1, "relative_index: need tokens >= 1 and max_distance >= 1, got ", tokens,
              " and ", max_distance);
  const auto pos = torch::arange(tokens, torch::TensorOptions().dtype(torch::kLong).device(device));
  const auto offset = pos.unsqueeze(0) - pos.unsqueeze(1);  // [i, j] = j - i
  return offset.clamp(-(max_distance - 1), max_distance - 1) + (max_distance - 1);
}

torch::Tensor relative_window(const torch::Tensor& table, std::int64_t tokens, std::int64_t dim) {
  dim = dim < 0 ? dim + table.dim() : dim;
  const auto rows = table.size(dim);
  TORCH_CHECK(rows % 2 == 1, "relative_window: a table of offsets has 2M-1 rows, got ", rows);
  const auto m = (rows + 1) / 2;
  if (tokens <= m) return table.narrow(dim, m - tokens, 2 * tokens - 1);
  // constant_pad_nd pads the last dimensions first: (before, after) pairs from the last one.
  std::vector<std::int64_t> pad(static_cast<std::size_t>(2 * (table.dim() - dim)), 0);
  pad[pad.size() - 2] = tokens - m;
  pad[pad.size() - 1] = tokens - m;
  return torch::constant_pad_nd(table, pad, 0.0);
}

torch::Tensor skew_causal(const torch::Tensor& rel) {
  TORCH_CHECK(rel.dim() >= 2 && rel.size(-1) == rel.size(-2), "skew_causal: expected [..., L, L], got ", rel.sizes());
  const auto l = rel.size(-1);
  auto shape = rel.sizes().vec();
  // Pad one zero column on the left: [.., L, L+1]; reshape to [.., L+1, L]; drop the first row.
  auto padded = torch::constant_pad_nd(rel, {1, 0}, 0.0);
  shape[shape.size() - 2] = l + 1;
  shape[shape.size() - 1] = l;
  return padded.reshape(shape).narrow(-2, 1, l);
}

torch::Tensor skew_bidirectional(const torch::Tensor& rel) {
  TORCH_CHECK(rel.dim() >= 2 && rel.size(-1) == 2 * rel.size(-2) - 1,
              "skew_bidirectional: expected [..., L, 2L-1], got ", rel.sizes());
  const auto l = rel.size(-2);
  // Rows of 2L: out[i, j] sits at flat index i*2L + (L-1-i+j) = (L-1) + i*(2L-1) + j.
  const auto flat = torch::constant_pad_nd(rel, {0, 1}, 0.0).flatten(-2);
  auto shape = rel.sizes().vec();
  shape[shape.size() - 2] = l;
  shape[shape.size() - 1] = 2 * l - 1;
  return flat.narrow(-1, l - 1, l * (2 * l - 1)).reshape(shape).narrow(-1, 0, l);
}

torch::Tensor grid_offsets(std::int64_t height, std::int64_t width, const torch::TensorOptions& options) {
  TORCH_CHECK(height >= 1 && width >= 1, "grid_offsets: need a non-empty grid, got ", height, "x", width);
  const auto index = torch::arange(height * width, options.dtype(torch::kLong));
  const auto x = (index % width).to(options.dtype()), y = index.div(width, "floor").to(options.dtype());
  const auto dx = x.unsqueeze(0) - x.unsqueeze(1), dy = y.unsqueeze(0) - y.unsqueeze(1);  // [i, j]: key j - query i
  return torch::stack({dx, dy, dx * dx + dy * dy}, -1);
}

}  // namespace blocklab
