// Long convolutions by FFT (blocks/common/long_conv.h), tag [conv]: the FFT path equals direct
// summation in float64 (<= 1e-9), outputs and gradients, for kernels as long as the sequence
// and shorter, broadcast over batch and channels, along any axis; causal; windows of the full
// linear convolution (the Toeplitz products of kernelized attention) do not alias.
#include <catch2/catch.hpp>

#include "blocks/common/long_conv.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

torch::Tensor randn(std::vector<std::int64_t> shape) { return torch::randn(shape, torch::kFloat64); }

// The full linear convolution of u [n] and k [m] written out: [n + m - 1].
torch::Tensor full_by_hand(const torch::Tensor& u, const torch::Tensor& k) {
  const auto n = u.size(0), m = k.size(0);
  auto y = torch::zeros({n + m - 1}, torch::kFloat64);
  for (std::int64_t t = 0; t < n + m - 1; ++t)
    for (std::int64_t s = 0; s < m; ++s)
      if (t - s >= 0 && t - s < n) y[t] += k[s] * u[t - s];
  return y;
}

}  // namespace

TEST_CASE("long conv: the causal FFT convolution equals direct summation, outputs and gradients", "[conv]") {
  torch::manual_seed(0);
  for (std::int64_t n : {1, 7, 64, 100})
    for (std::int64_t m : {n, std::max<std::int64_t>(1, n / 3)}) {
      INFO("n " << n << ", kernel taps " << m);
      // u [B, D, n], k [D, m]: one filter per channel, shared over the batch (Hyena's layout).
      auto u = randn({2, 3, n}).requires_grad_(true);
      auto k = randn({3, m}).requires_grad_(true);
      const auto weights = randn({2, 3, n});
      const auto run = [&](const torch::Tensor& y) {
        auto g = torch::autograd::grad({(y * weights).sum()}, {u, k});
        g.push_back(y.detach());
        return g;
      };
      const auto fft = run(causal_fft_conv(u, k, -1));
      const auto direct = run(causal_direct_conv(u, k, -1));
      for (std::size_t i = 0; i < fft.size(); ++i) CHECK(max_diff(fft[i], direct[i]) <= 1e-9);
    }
}

TEST_CASE("long conv: any axis; the direct form is the convolution written out", "[conv]") {
  torch::manual_seed(1);
  const auto u = randn({9}), k = randn({9});
  const auto expected = full_by_hand(u, k).narrow(0, 0, 9);
  CHECK(max_diff(causal_direct_conv(u, k, 0), expected) <= 1e-12);
  // Along the middle axis of [B, n, C] (the [B, N, C] layout of token mixers).
  const auto x = randn({2, 9, 4}), w = randn({1, 9, 4});
  const auto y = causal_fft_conv(x, w, 1);
  CHECK(y.sizes() == x.sizes());
  CHECK(max_diff(y, causal_direct_conv(x, w, 1)) <= 1e-9);
  CHECK(max_diff(y.select(0, 1).select(1, 2),
                 full_by_hand(x.select(0, 1).select(1, 2), w[0].select(1, 2)).narrow(0, 0, 9)) <= 1e-9);
}

TEST_CASE("long conv: causal, output t depends on inputs up to t only", "[conv]") {
  torch::manual_seed(2);
  const auto u = randn({1, 2, 40}), k = randn({2, 40});
  const auto y = causal_fft_conv(u, k, -1);
  auto changed = u.clone();
  changed.select(-1, 25).add_(1.0);
  const auto diff = (causal_fft_conv(changed, k, -1) - y).abs().amax({0, 1});
  CHECK(diff.narrow(0, 0, 25).max().item<double>() <= 1e-12);
  CHECK(diff.narrow(0, 25, 15).min().item<double>() > 1e-6);
}

TEST_CASE("long conv: every window of the full linear convolution, with the smallest FFT that does not alias",
          "[conv]") {
  torch::manual_seed(3);
  for (std::int64_t n : {5, 16, 33}) {
    const auto m = 2 * n - 1;  // a Toeplitz product's kernel: offsets -(n-1)..(n-1)
    const auto u = randn({n}), k = randn({m});
    const auto full = full_by_hand(u, k);
    for (std::int64_t from : {std::int64_t{0}, n - 1, n + m - 2})
      for (std::int64_t length : {std::int64_t{1}, n}) {
        if (from + length > n + m - 1) continue;
        INFO("n " << n << ", window [" << from << ", " << from + length << ")");
        CHECK(max_diff(fft_conv(u, k, 0, from, length), full.narrow(0, from, length)) <= 1e-9);
      }
  }
  CHECK_THROWS_WITH(fft_conv(randn({4}), randn({3}), 0, 5, 2), Catch::Contains("outside the 6 entries"));
}

}  // namespace BLOCKLAB_TEST_FILE
