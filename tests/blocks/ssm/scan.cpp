// The diagonal scan of selective SSMs (blocks/common/diagonal_scan.h), tag [ssm]: the fused CPU
// loop equals the step-by-step reference in float64 (<= 1e-9), outputs and gradients, for rows
// that span several of its row blocks and lengths from 1; the recurrence written out; float32.
#include <catch2/catch.hpp>

#include "blocks/common/diagonal_scan.h"

using namespace blocklab;

namespace {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

}  // namespace

TEST_CASE("diagonal scan: the fused loop equals the step-by-step reference, outputs and gradients", "[ssm]") {
  torch::manual_seed(0);
  // Rows of a step: 3 x 4 (one partial block) and 600 (three blocks of 256, the last partial).
  for (const std::vector<std::int64_t>& rows : {std::vector<std::int64_t>{3, 4}, std::vector<std::int64_t>{600}})
    for (std::int64_t steps : {1, 2, 37}) {
      INFO("steps " << steps << ", rows " << rows.size());
      std::vector<std::int64_t> shape{2, steps};
      shape.insert(shape.end(), rows.begin(), rows.end());
      // a in (0, 1) as exp(Delta A) is; b of either sign.
      auto a = torch::rand(shape, torch::kFloat64).requires_grad_(true);
      auto b = torch::randn(shape, torch::kFloat64).requires_grad_(true);
      const auto weights = torch::randn(shape, torch::kFloat64);
      const auto run = [&](const torch::Tensor& h) {
        auto g = torch::autograd::grad({(h * weights).sum()}, {a, b});
        g.push_back(h.detach());
        return g;
      };
      const auto fused = run(diagonal_scan(a, b));
      const auto reference = run(diagonal_scan_reference(a, b));
      for (std::size_t i = 0; i < fused.size(); ++i) CHECK(max_diff(fused[i], reference[i]) <= 1e-9);
    }
}

TEST_CASE("diagonal scan: h_t = a_t h_{t-1} + b_t written out; float32; non-contiguous inputs", "[ssm]") {
  torch::manual_seed(1);
  const auto a = torch::rand({1, 5, 2}, torch::kFloat64), b = torch::randn({1, 5, 2}, torch::kFloat64);
  auto h = torch::zeros({1, 2}, torch::kFloat64);
  const auto scanned = diagonal_scan(a, b);
  for (std::int64_t t = 0; t < 5; ++t) {
    h = a.select(1, t) * h + b.select(1, t);
    CHECK(max_diff(scanned.select(1, t), h) <= 1e-15);
  }
  const auto a32 = torch::rand({2, 50, 8}).transpose(1, 2), b32 = torch::randn({2, 50, 8}).transpose(1, 2);
  CHECK(max_diff(diagonal_scan(a32, b32), diagonal_scan_reference(a32, b32)) <= 1e-5);
  CHECK_THROWS_WITH(diagonal_scan(a, b.narrow(1, 0, 4)), Catch::Contains("must share one shape"));
}

TEST_CASE("diagonal scan: the fused backward refuses a second derivative instead of returning a wrong one", "[ssm]") {
  auto a = torch::rand({1, 4, 3}, torch::kFloat64).requires_grad_(true);
  const auto b = torch::randn({1, 4, 3}, torch::kFloat64);
  const auto h = diagonal_scan(a, b);
  CHECK_THROWS_WITH(torch::autograd::grad({h.pow(2).sum()}, {a}, {}, true, /*create_graph=*/true),
                    Catch::Contains("not differentiable again"));
}
