#include "blocks/common/long_conv.h"

#include <algorithm>
#include <utility>

namespace blocklab {

namespace {

// `dim` of u as an index, and the same axis of k under right-aligned broadcasting.
std::pair<std::int64_t, std::int64_t> conv_axes(const torch::Tensor& u, const torch::Tensor& k, std::int64_t dim) {
  const auto axis = dim < 0 ? dim + u.dim() : dim;
  const auto k_axis = axis - (u.dim() - k.dim());
  TORCH_CHECK(axis >= 0 && axis < u.dim() && k_axis >= 0, "long convolution: axis ", dim, " of u ", u.sizes(),
              " has no counterpart in the kernel ", k.sizes());
  return {axis, k_axis};
}

}  // namespace

std::int64_t power_of_two_at_least(std::int64_t n) {
  std::int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

torch::Tensor fft_conv(const torch::Tensor& u, const torch::Tensor& k, std::int64_t dim, std::int64_t from,
                       std::int64_t length) {
  const auto [axis, k_axis] = conv_axes(u, k, dim);
  const auto n = u.size(axis), m = k.size(k_axis);
  TORCH_CHECK(from >= 0 && length >= 0 && from + length <= n + m - 1, "fft_conv: the window [", from, ", ",
              from + length, ") is outside the ", n + m - 1, " entries of the convolution");
  // A circular convolution of size P adds the entries t + P and t - P to entry t; none lands in
  // the window when P > n + m - 2 - from and P >= from + length.
  const auto size = power_of_two_at_least(std::max(n + m - 1 - from, from + length));
  const auto spectrum = torch::fft::rfft(u, size, axis) * torch::fft::rfft(k, size, k_axis);
  return torch::fft::irfft(spectrum, size, axis).narrow(axis, from, length);
}

torch::Tensor causal_fft_conv(const torch::Tensor& u, const torch::Tensor& k, std::int64_t dim) {
  return fft_conv(u, k, dim, 0, u.size(dim));
}

torch::Tensor causal_direct_conv(const torch::Tensor& u, const torch::Tensor& k, std::int64_t dim) {
  const auto [axis, k_axis] = conv_axes(u, k, dim);
  const auto n = u.size(axis), taps = std::min(n, k.size(k_axis));
  auto y = torch::zeros_like(u * k.narrow(k_axis, 0, 1));  // the broadcast shape
  for (std::int64_t s = 0; s < taps; ++s) {                // y_t += k_s u_{t-s}, t >= s
    y.narrow(axis, s, n - s).add_(k.narrow(k_axis, s, 1) * u.narrow(axis, 0, n - s));
  }
  return y;
}

}  // namespace blocklab
