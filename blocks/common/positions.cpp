#include "blocks/common/positions.h"

namespace blocklab {
namespace {

// [M] positions -> [M, d] = [sin(pos w), cos(pos w)], w_k = 1/10000^(k/(d/2)).
torch::Tensor sincos_1d(std::int64_t d, const torch::Tensor& pos) {
  auto omega = torch::arange(d / 2, torch::kFloat64) / (static_cast<double>(d) / 2.0);
  omega = 1.0 / torch::pow(10000.0, omega);
  const auto out = torch::outer(pos, omega);
  return torch::cat({torch::sin(out), torch::cos(out)}, 1);
}

}  // namespace

torch::Tensor sincos_2d_positions(std::int64_t dim, std::int64_t grid_h, std::int64_t grid_w,
                                  std::int64_t prefix_tokens) {
  TORCH_CHECK(dim % 4 == 0, "sincos_2d_positions: dim must be divisible by 4, got ", dim);
  const auto rows = torch::arange(grid_h, torch::kFloat64).repeat_interleave(grid_w);
  const auto cols = torch::arange(grid_w, torch::kFloat64).repeat({grid_h});
  // MAE's meshgrid(grid_w, grid_h) puts the column coordinate in the first half.
  auto table = torch::cat({sincos_1d(dim / 2, cols), sincos_1d(dim / 2, rows)}, 1);
  if (prefix_tokens > 0) table = torch::cat({torch::zeros({prefix_tokens, dim}, torch::kFloat64), table}, 0);
  return table.to(torch::kFloat32).unsqueeze(0);
}

}  // namespace blocklab
