#include "blocks/attention/parts/local_patterns.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

namespace blocklab {

namespace {

using Index = std::vector<std::int64_t>;

void check_arg(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

torch::Tensor long_tensor(const Index& values, torch::IntArrayRef shape) {
  return torch::tensor(values, torch::kLong).view(shape);
}

// (row, column) of every token of a row-major grid, shifted by -offset: [rows * cols, 2].
torch::Tensor grid_coords(std::int64_t rows, std::int64_t cols, std::int64_t offset = 0) {
  const auto r = torch::arange(rows, torch::kLong).view({rows, 1}).expand({rows, cols});
  const auto c = torch::arange(cols, torch::kLong).view({1, cols}).expand({rows, cols});
  return torch::stack({r.flatten(), c.flatten()}, 1) - offset;
}

// A pattern whose keys are its queries (N_k = N_q = height * width).
LocalPattern self_pattern(std::int64_t height, std::int64_t width, torch::Tensor query_index, torch::Tensor key_index,
                          torch::Tensor allowed = {}, bool causal = false) {
  LocalPattern p;
  p.parts.push_back({std::move(query_index), std::move(key_index), std::move(allowed)});
  p.queries = p.keys = height * width;
  p.causal = causal;
  p.query_coords = p.key_coords = grid_coords(height, width);
  return finish_pattern(std::move(p));
}

// NATTEN's windows along one axis: keys[i * k + t] and allowed[i * k + t], t < k.
struct AxisWindows {
  std::int64_t kernel = 1;
  Index keys;
  std::vector<bool> allowed;
};

AxisWindows neighborhood_axis(std::int64_t extent, std::int64_t kernel, std::int64_t dilation, bool causal) {
  AxisWindows w;
  if (extent == 1) {  // a sequence's row axis
    w.keys = {0};
    w.allowed = {true};
    return w;
  }
  check_arg(kernel * dilation <= extent, "neighborhood attention: kernel " + std::to_string(kernel) + " x dilation " +
                                             std::to_string(dilation) + " exceeds an axis of " +
                                             std::to_string(extent) + " tokens; lower the kernel or the dilation");
  w.kernel = kernel;
  for (std::int64_t i = 0; i < extent; ++i) {
    const auto r = i % dilation, query = i / dilation;
    const auto length = (extent - r + dilation - 1) / dilation;  // L_r, the sub-sequence of i
    const auto start = causal ? std::max<std::int64_t>(query - kernel + 1, 0)
                              : std::clamp<std::int64_t>(query - kernel / 2, 0, length - kernel);
    for (std::int64_t t = 0; t < kernel; ++t) {
      w.keys.push_back((start + t) * dilation + r);
      w.allowed.push_back(!causal || start + t <= query);
    }
  }
  return w;
}

// Swin's region of shifted coordinate a on an axis of `extent`: slices (0, -window),
// (-window, -shift), (-shift, end); one region without a shift.
std::int64_t shift_region(std::int64_t a, std::int64_t extent, std::int64_t window, std::int64_t shift) {
  if (shift == 0) return 0;
  return a < extent - window ? 0 : (a < extent - shift ? 1 : 2);
}

}  // namespace

LocalPattern neighborhood_pattern(std::int64_t height, std::int64_t width, std::int64_t kernel, std::int64_t dilation,
                                  bool causal) {
  check_arg(height >= 1 && width >= 1 && kernel >= 1 && dilation >= 1,
            "neighborhood attention: height, width, kernel and dilation must be positive");
  check_arg(causal || kernel % 2 == 1, "neighborhood attention: the kernel must be odd (got " + std::to_string(kernel) +
                                           "); NATTEN centres the window on the query");
  const auto rows = neighborhood_axis(height, kernel, dilation, causal);
  const auto cols = neighborhood_axis(width, kernel, dilation, causal);
  const auto slots = rows.kernel * cols.kernel;
  Index keys;
  std::vector<std::uint8_t> allowed;
  for (std::int64_t y = 0; y < height; ++y)
    for (std::int64_t x = 0; x < width; ++x)
      for (std::int64_t ty = 0; ty < rows.kernel; ++ty)
        for (std::int64_t tx = 0; tx < cols.kernel; ++tx) {
          const auto ry = y * rows.kernel + ty, cx = x * cols.kernel + tx;
          keys.push_back(rows.keys[ry] * width + cols.keys[cx]);
          allowed.push_back(rows.allowed[ry] && cols.allowed[cx]);
        }
  const auto n = height * width;
  torch::Tensor allowed_mask;
  if (causal) allowed_mask = torch::tensor(allowed, torch::kUInt8).to(torch::kBool).view({n, 1, slots});
  return self_pattern(height, width, torch::arange(n, torch::kLong).view({n, 1}), long_tensor(keys, {n, slots}),
                      allowed_mask, causal);
}

LocalPattern window_pattern(std::int64_t height, std::int64_t width, std::int64_t window_h, std::int64_t window_w,
                            std::int64_t shift_h, std::int64_t shift_w) {
  check_arg(window_h >= 1 && window_w >= 1 && height % window_h == 0 && width % window_w == 0,
            "window attention: the grid " + std::to_string(height) + " x " + std::to_string(width) +
                " is not a multiple of the window " + std::to_string(window_h) + " x " + std::to_string(window_w));
  check_arg(shift_h >= 0 && shift_h < window_h && shift_w >= 0 && shift_w < window_w,
            "window attention: the shift must lie in [0, window)");
  Index tokens, regions;
  for (std::int64_t wy = 0; wy < height / window_h; ++wy)
    for (std::int64_t wx = 0; wx < width / window_w; ++wx)
      for (std::int64_t u = 0; u < window_h; ++u)
        for (std::int64_t v = 0; v < window_w; ++v) {
          const auto a = wy * window_h + u, c = wx * window_w + v;  // on the shifted grid
          tokens.push_back(((a + shift_h) % height) * width + (c + shift_w) % width);
          regions.push_back(3 * shift_region(a, height, window_h, shift_h) + shift_region(c, width, window_w, shift_w));
        }
  const auto groups = (height / window_h) * (width / window_w), size = window_h * window_w;
  const auto index = long_tensor(tokens, {groups, size});
  torch::Tensor allowed;
  if (shift_h > 0 || shift_w > 0) {
    const auto region = long_tensor(regions, {groups, size});
    allowed = region.unsqueeze(2) == region.unsqueeze(1);
  }
  return self_pattern(height, width, index, index, allowed);
}

LocalPattern grid_pattern(std::int64_t height, std::int64_t width, std::int64_t grid_h, std::int64_t grid_w) {
  check_arg(grid_h >= 1 && grid_w >= 1 && height % grid_h == 0 && width % grid_w == 0,
            "grid attention: the grid " + std::to_string(height) + " x " + std::to_string(width) +
                " is not a multiple of the attention grid " + std::to_string(grid_h) + " x " + std::to_string(grid_w));
  const auto step_h = height / grid_h, step_w = width / grid_w;
  Index tokens;
  for (std::int64_t p = 0; p < step_h; ++p)
    for (std::int64_t q = 0; q < step_w; ++q)
      for (std::int64_t a = 0; a < grid_h; ++a)
        for (std::int64_t c = 0; c < grid_w; ++c) tokens.push_back((a * step_h + p) * width + c * step_w + q);
  const auto index = long_tensor(tokens, {step_h * step_w, grid_h * grid_w});
  return self_pattern(height, width, index, index);
}

LocalPattern halo_pattern(std::int64_t height, std::int64_t width, std::int64_t block, std::int64_t halo,
                          bool mask_padding) {
  check_arg(block >= 1 && halo >= 0 && height % block == 0 && width % block == 0,
            "halo attention: the grid " + std::to_string(height) + " x " + std::to_string(width) +
                " is not a multiple of the block " + std::to_string(block));
  const auto padded_w = width + 2 * halo, window = block + 2 * halo;
  Index queries, keys;
  std::vector<std::uint8_t> inside;
  for (std::int64_t by = 0; by < height / block; ++by)
    for (std::int64_t bx = 0; bx < width / block; ++bx) {
      for (std::int64_t u = 0; u < block; ++u)
        for (std::int64_t v = 0; v < block; ++v) queries.push_back((by * block + u) * width + bx * block + v);
      for (std::int64_t u = 0; u < window; ++u)
        for (std::int64_t v = 0; v < window; ++v) {
          const auto row = by * block + u, col = bx * block + v;  // padded coordinates
          keys.push_back(row * padded_w + col);
          inside.push_back(row >= halo && row < height + halo && col >= halo && col < width + halo);
        }
    }
  const auto groups = (height / block) * (width / block);
  LocalGroups part{long_tensor(queries, {groups, block * block}), long_tensor(keys, {groups, window * window}), {}};
  if (mask_padding)
    part.allowed = torch::tensor(inside, torch::kUInt8)
                       .to(torch::kBool)
                       .view({groups, 1, window * window})
                       .expand({groups, block * block, window * window})
                       .contiguous();
  LocalPattern p;
  p.parts.push_back(std::move(part));
  p.queries = height * width;
  p.keys = (height + 2 * halo) * padded_w;
  p.query_coords = grid_coords(height, width);
  p.key_coords = grid_coords(height + 2 * halo, padded_w, halo);
  // The padded-grid key of every token: (row + halo, column + halo).
  p.token_keys = ((p.query_coords + halo) * torch::tensor({padded_w, std::int64_t{1}}, torch::kLong)).sum(1);
  return finish_pattern(std::move(p));
}

torch::Tensor pad_grid_tokens(const torch::Tensor& x, std::int64_t height, std::int64_t width, std::int64_t halo) {
  const auto grid = x.unflatten(2, {height, width});  // [B, h, H, W, d]
  return torch::constant_pad_nd(grid, {0, 0, halo, halo, halo, halo}, 0.0).flatten(2, 3);
}

LocalPattern axial_pattern(std::int64_t height, std::int64_t width, int axis) {
  check_arg(axis == 0 || axis == 1, "axial attention: the axis must be 0 (columns) or 1 (rows)");
  auto index = torch::arange(height * width, torch::kLong).view({height, width});
  if (axis == 0) index = index.t().contiguous();  // one group per column
  return self_pattern(height, width, index, index);
}

}  // namespace blocklab
