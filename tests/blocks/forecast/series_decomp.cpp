// series_decomp (Autoformer eq. 1, FEDformer padding; shared/blocks catalog C1 tests 1-3).
#include <catch2/catch.hpp>

#include "blocks/forecast/series_decomp.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

TEST_CASE("series_decomp: trend + seasonal == x, for odd, even and unit windows", "[forecast]") {
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({2, 40, 3}, torch::kFloat64);
  for (std::int64_t k : {25, 24, 1}) {
    INFO("k = " << k);
    const Decomposition d = series_decomp(x, k);
    CHECK(d.trend.sizes() == x.sizes());
    CHECK(torch::allclose(d.trend + d.seasonal, x, 0, 1e-14));
  }
}

TEST_CASE("series_decomp: the trend is the moving average over the replicate-padded series", "[forecast]") {
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({1, 12, 2}, torch::kFloat64);
  for (std::int64_t k : {5, 4}) {
    INFO("k = " << k);
    const std::int64_t end = (k - 1) / 2, front = k - 1 - end;  // FEDformer: the extra step in front
    const torch::Tensor trend = moving_average(x, k);
    for (std::int64_t t = 0; t < 12; ++t) {
      torch::Tensor sum = torch::zeros({2}, torch::kFloat64);
      for (std::int64_t u = 0; u < k; ++u) sum += x[0][std::clamp<std::int64_t>(t + u - front, 0, 11)];
      CHECK(torch::allclose(trend[0][t], sum / k, 0, 1e-14));
    }
  }
}

TEST_CASE("series_decomp: a constant series is all trend; k = 1 leaves x as the trend", "[forecast]") {
  const torch::Tensor c = torch::full({2, 30, 3}, 0.7, torch::kFloat64);
  const Decomposition d = series_decomp(c, 25);
  CHECK(torch::allclose(d.trend, c, 0, 1e-14));
  CHECK(d.seasonal.abs().max().item<double>() < 1e-14);
  const torch::Tensor x = torch::randn({2, 30, 3}, torch::kFloat64);
  const Decomposition one = series_decomp(x, 1);
  CHECK(torch::equal(one.trend, x));
  CHECK(torch::equal(one.seasonal, torch::zeros_like(x)));
}

}  // namespace BLOCKLAB_TEST_FILE
