#include "blocks/common/rotary.h"

#include <cmath>

namespace blocklab {

namespace {

// base^(-step i / d) for i < count.
torch::Tensor frequencies(std::int64_t count, double step, std::int64_t head_dim, double base,
                          const torch::Device& device) {
  const auto i = torch::arange(count, torch::TensorOptions(torch::kFloat64).device(device));
  return torch::exp(i * (-step * std::log(base) / static_cast<double>(head_dim)));
}

}  // namespace

torch::Tensor rotary_angles_1d(const torch::Tensor& positions, std::int64_t head_dim, double base) {
  TORCH_CHECK(head_dim % 2 == 0, "rotary 1d: the head width must be even, got ", head_dim);
  const auto theta = frequencies(head_dim / 2, 2.0, head_dim, base, positions.device());  // RoFormer eq. (15)
  return positions.to(torch::kFloat64).unsqueeze(1) * theta.unsqueeze(0);
}

torch::Tensor rotary_angles_2d(std::int64_t tokens, const MixerContext& ctx, std::int64_t head_dim, double base,
                               const torch::Device& device) {
  TORCH_CHECK(head_dim % 4 == 0, "rotary 2d: the head width must be divisible by 4, got ", head_dim);
  const auto grid = tokens - ctx.prefix_tokens;
  TORCH_CHECK(ctx.has_grid() && ctx.grid_height * ctx.grid_width == grid,
              "rotary 2d needs the tokens of an image grid (", ctx.grid_height, "x", ctx.grid_width, " grid + ",
              ctx.prefix_tokens, " prefix tokens, got ", tokens, " tokens); use rotary: 1d for sequences");
  const auto f64 = torch::TensorOptions(torch::kFloat64).device(device);
  const auto index = torch::arange(grid, f64);
  const auto row = torch::floor(index / static_cast<double>(ctx.grid_width));
  const auto col = index - row * static_cast<double>(ctx.grid_width);
  const auto theta = frequencies(head_dim / 4, 4.0, head_dim, base, device).unsqueeze(0);   // rope-vit
  const auto angles = torch::cat({col.unsqueeze(1) * theta, row.unsqueeze(1) * theta}, 1);  // [M, d/2]: x, then y
  return torch::cat({torch::zeros({ctx.prefix_tokens, head_dim / 2}, f64), angles}, 0);
}

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& angles) {
  const auto cos = angles.cos().to(x.dtype()), sin = angles.sin().to(x.dtype());
  const auto pairs = x.unflatten(-1, {x.size(-1) / 2, 2});  // [..., N, d/2, 2]
  const auto even = pairs.select(-1, 0), odd = pairs.select(-1, 1);
  return torch::stack({even * cos - odd * sin, even * sin + odd * cos}, -1).flatten(-2);
}

}  // namespace blocklab
