// Autoformer (Wu et al. 2021, arXiv:2106.13008): Auto-Correlation (FFT vs direct sum, roll vs
// gather, the delays of a period-24 sine, training == inference path for one sample), the
// seasonal LayerNorm, and the whole model (shared/blocks catalog C8 tests 1-5).
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include "blocks/forecast/auto_correlation.h"
#include "blocks/forecast/autoformer.h"
#include "blocks/forecast/seasonal_layernorm.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

TEST_CASE("auto-correlation: the FFT correlation equals the direct circular sum", "[forecast]") {
  torch::manual_seed(1);
  const std::int64_t length = 13;  // odd: irfft must be told n = L
  const torch::Tensor q = torch::randn({2, 2, 3, length}, torch::kFloat64);
  const torch::Tensor k = torch::randn({2, 2, 3, length}, torch::kFloat64);
  const torch::Tensor r = period_correlation(q, k);
  REQUIRE(r.sizes() == q.sizes());
  for (std::int64_t tau = 0; tau < length; ++tau) {
    // R(tau) = sum_t q[(t + tau) mod L] k[t]
    const torch::Tensor direct = (torch::roll(q, {-tau}, {-1}) * k).sum(-1);
    CHECK(torch::allclose(r.select(-1, tau), direct, 0, 1e-12));
  }
}

TEST_CASE("auto-correlation: rolling by -tau equals gathering from the doubled series", "[forecast]") {
  torch::manual_seed(2);
  const torch::Tensor v = torch::randn({1, 2, 3, 10}, torch::kFloat64);
  const torch::Tensor doubled = torch::cat({v, v}, -1);
  for (std::int64_t tau : {0, 3, 9}) {
    const torch::Tensor index = (torch::arange(10) + tau).view({1, 1, 1, 10}).expand(v.sizes());
    CHECK(torch::equal(torch::roll(v, {-tau}, {-1}), doubled.gather(-1, index)));
  }
}

TEST_CASE("auto-correlation: a period-24 sine selects delays among multiples of 24", "[forecast]") {
  const std::int64_t length = 96;
  const torch::Tensor t = torch::arange(length, torch::kFloat64);
  const torch::Tensor s = torch::sin(2 * M_PI * t / 24).view({1, 1, 1, length});
  const torch::Tensor m = period_correlation(s, s).mean({1, 2});  // [1, L]
  const std::int64_t k = delay_count(1.0, length);
  CHECK(k == 4);  // floor(ln 96)
  const torch::Tensor delays = std::get<1>(m.topk(k, -1))[0];
  std::set<std::int64_t> chosen;
  for (std::int64_t i = 0; i < k; ++i) chosen.insert(delays[i].item<std::int64_t>());
  CHECK(chosen == std::set<std::int64_t>{0, 24, 48, 72});
  // Aggregating the sine over those delays returns the sine (every delay is a whole period).
  const torch::Tensor out = delay_aggregation_inference(s, period_correlation(s, s), 1.0);
  CHECK(torch::allclose(out, s, 0, 1e-10));
}

TEST_CASE("auto-correlation: training and inference paths agree for one sample, differ across a batch", "[forecast]") {
  torch::manual_seed(3);
  const torch::Tensor v = torch::randn({1, 2, 4, 32}, torch::kFloat64);
  const torch::Tensor corr = period_correlation(torch::randn({1, 2, 4, 32}, torch::kFloat64), v);
  CHECK(torch::allclose(delay_aggregation_training(v, corr, 3.0), delay_aggregation_inference(v, corr, 3.0), 0, 1e-12));
  // With a batch the training path shares the delays: sample 0's output depends on sample 1.
  const torch::Tensor vb = torch::randn({2, 2, 4, 32}, torch::kFloat64);
  const torch::Tensor cb = period_correlation(torch::randn({2, 2, 4, 32}, torch::kFloat64), vb);
  const torch::Tensor shared = delay_aggregation_training(vb, cb, 1.0);
  const torch::Tensor alone = delay_aggregation_training(vb.narrow(0, 0, 1), cb.narrow(0, 0, 1), 1.0);
  CHECK_FALSE(torch::allclose(shared[0], alone[0], 0, 1e-6));
  // The inference path picks each sample's own delays: sample 0 is the same alone or batched.
  CHECK(torch::allclose(delay_aggregation_inference(vb, cb, 1.0)[0],
                        delay_aggregation_inference(vb.narrow(0, 0, 1), cb.narrow(0, 0, 1), 1.0)[0], 0, 1e-12));
}

TEST_CASE("auto-correlation layer: 4 D^2 + 4 D parameters; shorter keys are zero-padded", "[forecast]") {
  AutoCorrelation layer(16, 4, 1.0);
  std::int64_t count = 0;
  for (const auto& p : layer->parameters()) count += p.numel();
  CHECK(count == 4 * 16 * 16 + 4 * 16);
  layer->eval();
  const torch::Tensor q = torch::randn({2, 20, 16}), kv = torch::randn({2, 12, 16});
  CHECK(layer->forward(q, kv, kv).sizes() == torch::IntArrayRef({2, 20, 16}));
  CHECK(layer->forward(kv, q, q).sizes() == torch::IntArrayRef({2, 12, 16}));
}

TEST_CASE("seasonal layernorm: zero temporal mean", "[forecast]") {
  torch::manual_seed(4);
  SeasonalLayerNorm norm(8);
  norm->to(torch::kFloat64);
  const torch::Tensor y = norm->forward(torch::randn({3, 17, 8}, torch::kFloat64) * 5 + 2);
  CHECK(y.mean(1).abs().max().item<double>() < 1e-12);
}

TEST_CASE("autoformer: forecasts [B, P, C]; eval is per sample; rules between options", "[forecast]") {
  ModelArgs args;
  args.inputs.channels = 2;
  args.inputs.length = 48;
  args.inputs.horizon = 12;
  args.outputs = 2;
  torch::manual_seed(5);
  const Network model = model_registry().create(
      parse_yaml("{type: forecast/autoformer, dim: 16, heads: 2, ffn_dim: 32, moving_avg: 5, factor: 3}", "t.yaml"),
      args);
  model->to(torch::kFloat64);
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({3, 48, 2}, torch::kFloat64);
  const torch::Tensor y = model->forward(x);
  CHECK(y.sizes() == torch::IntArrayRef({3, 12, 2}));
  // Inference path: each sample alone gives the same forecast as in the batch.
  for (std::int64_t b = 0; b < 3; ++b) CHECK(torch::allclose(model->forward(x.narrow(0, b, 1))[0], y[b], 0, 1e-10));
  CHECK_THROWS_WITH(
      model_registry().create(parse_yaml("{type: forecast/autoformer, dim: 10, heads: 4}", "t.yaml"), args),
      Catch::Contains("not divisible by heads"));
  CHECK_THROWS_WITH(model_registry().create(parse_yaml("{type: forecast/autoformer, label_len: 49}", "t.yaml"), args),
                    Catch::Contains("label_len 49 is longer than the look-back"));
}

}  // namespace BLOCKLAB_TEST_FILE
