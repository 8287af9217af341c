// LTSF-Linear (Zeng et al. 2023, arXiv:2205.13504): Linear, NLinear, DLinear and their shared
// time_linear map (shared/blocks catalog C1 tests 4-6).
#include <catch2/catch.hpp>

#include "blocks/forecast/dlinear.h"
#include "blocks/forecast/time_linear.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

constexpr std::int64_t kLookback = 36, kHorizon = 12, kChannels = 3;

ModelArgs series_args() {
  ModelArgs args;
  args.inputs.channels = kChannels;
  args.inputs.length = kLookback;
  args.inputs.horizon = kHorizon;
  args.outputs = kChannels;
  return args;
}

Network forecaster(const std::string& config) {
  Network n = model_registry().create(parse_yaml(config, "test.yaml"), series_args());
  n->to(torch::kFloat64);
  return n;
}

}  // namespace

TEST_CASE("time_linear: y[:, c] = W x[:, c] + b, shared or per channel", "[forecast]") {
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({2, kLookback, kChannels});
  TimeLinear shared(kLookback, kHorizon, kChannels, false);
  const torch::Tensor y = shared->forward(x);
  REQUIRE(y.sizes() == torch::IntArrayRef({2, kHorizon, kChannels}));
  for (std::int64_t c = 0; c < kChannels; ++c)
    CHECK(
        torch::allclose(y.select(2, c), torch::matmul(x.select(2, c), shared->weight.t()) + shared->bias, 1e-5, 1e-6));
  // Linear's default init: U(-1/sqrt(L), 1/sqrt(L)).
  CHECK(shared->weight.abs().max().item<double>() <= 1 / std::sqrt(double(kLookback)));

  TimeLinear each(kLookback, kHorizon, kChannels, true);
  REQUIRE(each->weight.sizes() == torch::IntArrayRef({kChannels, kHorizon, kLookback}));
  const torch::Tensor z = each->forward(x);
  for (std::int64_t c = 0; c < kChannels; ++c)
    CHECK(torch::allclose(z.select(2, c), torch::matmul(x.select(2, c), each->weight[c].t()) + each->bias[c], 1e-5,
                          1e-6));
}

TEST_CASE("dlinear: at init with zero biases the forecast is the window mean", "[forecast]") {
  torch::manual_seed(2);
  const Network model = forecaster("{type: forecast/dlinear, kernel: 25}");
  auto& dlinear = dynamic_cast<DLinearImpl&>(*model);
  // Init W = 1/L (built in float32, then moved to float64: refilled in float64 for an exact check).
  CHECK(torch::allclose(dlinear.trend->weight, torch::full_like(dlinear.trend->weight, 1.0 / kLookback), 0, 1e-8));
  CHECK(torch::equal(dlinear.seasonal->weight, dlinear.trend->weight));
  dlinear.seasonal->set_weight(1.0 / kLookback);
  dlinear.trend->set_weight(1.0 / kLookback);
  {
    torch::NoGradGuard no_grad;
    dlinear.seasonal->bias.zero_();
    dlinear.trend->bias.zero_();
  }
  const torch::Tensor x = torch::randn({4, kLookback, kChannels}, torch::kFloat64);
  const torch::Tensor y = model->forward(x);
  CHECK(torch::allclose(y, x.mean(1, true).expand({4, kHorizon, kChannels}), 0, 1e-12));
  // Parameters: 2 (P L + P) shared; C times that per channel.
  const auto count = [](const Network& n) {
    std::int64_t total = 0;
    for (const auto& p : n->parameters()) total += p.numel();
    return total;
  };
  CHECK(count(model) == 2 * (kHorizon * kLookback + kHorizon));
  CHECK(count(forecaster("{type: forecast/dlinear, individual: true}")) ==
        kChannels * 2 * (kHorizon * kLookback + kHorizon));
}

TEST_CASE("nlinear: shift-equivariant, f(x + c) = f(x) + c per channel", "[forecast]") {
  torch::manual_seed(3);
  const Network model = forecaster("{type: forecast/nlinear}");
  const torch::Tensor x = torch::randn({3, kLookback, kChannels}, torch::kFloat64);
  const torch::Tensor c = torch::tensor({5.0, -2.0, 0.25}, torch::kFloat64).view({1, 1, kChannels});
  CHECK(torch::allclose(model->forward(x + c), model->forward(x) + c, 0, 1e-12));
  // The vanilla Linear is not: a shift moves its output by W 1 c, not by c.
  const Network linear = forecaster("{type: forecast/linear}");
  CHECK_FALSE(torch::allclose(linear->forward(x + c), linear->forward(x) + c, 0, 1e-6));
}

TEST_CASE("dlinear: individual with equal per-channel weights equals the shared model", "[forecast]") {
  torch::manual_seed(4);
  const Network shared = forecaster("{type: forecast/dlinear, kernel: 7}");
  const Network each = forecaster("{type: forecast/dlinear, kernel: 7, individual: true}");
  auto& s = dynamic_cast<DLinearImpl&>(*shared);
  auto& e = dynamic_cast<DLinearImpl&>(*each);
  {
    torch::NoGradGuard no_grad;
    s.seasonal->weight.normal_();
    s.trend->weight.normal_();
    for (std::int64_t c = 0; c < kChannels; ++c) {
      e.seasonal->weight[c].copy_(s.seasonal->weight);
      e.trend->weight[c].copy_(s.trend->weight);
      e.seasonal->bias[c].copy_(s.seasonal->bias);
      e.trend->bias[c].copy_(s.trend->bias);
    }
  }
  const torch::Tensor x = torch::randn({2, kLookback, kChannels}, torch::kFloat64);
  CHECK(torch::allclose(each->forward(x), shared->forward(x), 0, 1e-12));
}

TEST_CASE("ltsf-linear: sizes come from the data, or the options; a classification task is refused", "[forecast]") {
  const Network model = forecaster("{type: forecast/linear, lookback: 20, horizon: 5}");
  CHECK(model->forward(torch::randn({2, 20, kChannels}, torch::kFloat64)).sizes() ==
        torch::IntArrayRef({2, 5, kChannels}));
  ModelArgs classes = series_args();
  classes.outputs = 10;
  CHECK_THROWS_AS(model_registry().create(parse_yaml("{type: forecast/dlinear}", "t.yaml"), classes), ConfigError);
  ModelArgs no_horizon = series_args();
  no_horizon.inputs.horizon = 0;
  CHECK_THROWS_WITH(model_registry().create(parse_yaml("{type: forecast/nlinear}", "t.yaml"), no_horizon),
                    Catch::Contains("needs its horizon"));
}

}  // namespace BLOCKLAB_TEST_FILE
