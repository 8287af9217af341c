// series/synthetic: a seeded multivariate series with the structure of the LTSF benchmarks
// (shared/blocks catalog C1, "CPU data"): per channel c, hourly steps t = 0 .. T-1,
//
//   x_c(t) = a_c sin(2 pi t / 24 + p_c) + b_c sin(2 pi t / 168 + q_c) + g_c t / T + e_c(t)
//   e_c(t) = phi e_c(t - 1) + sigma z_c(t),   z ~ N(0, 1),  e_c(-1) = 0
//
// a daily and a weekly cycle, a linear trend and AR(1) noise. Amplitudes a_c, b_c ~ U(0.5, 1.5),
// phases ~ U(0, 2 pi), slopes g_c ~ U(-1, 1), phi = 0.8, sigma = 0.3; every draw comes from a
// generator seeded by dataset.seed alone, so a config names its data exactly.
#include <cmath>

#include "datasets/series/series_dataset.h"

namespace blocklab {
namespace {

constexpr std::uint64_t kSeriesSalt = 0x5e71e5;  // derive_seed label of the generator
constexpr double kPhi = 0.8, kSigma = 0.3;
constexpr double kPi = 3.14159265358979323846;

struct SyntheticSeriesOptions {
  TORCH_ARG(std::int64_t, steps) = 8760;
  TORCH_ARG(std::int64_t, channels) = 7;
  TORCH_ARG(std::int64_t, seed) = 0;
  TORCH_ARG(std::int64_t, lookback) = 96;
  TORCH_ARG(std::int64_t, horizon) = 96;
};

const OptionsSchema<SyntheticSeriesOptions>& synthetic_schema() {
  static const OptionsSchema<SyntheticSeriesOptions> schema = [] {
    OptionsSchema<SyntheticSeriesOptions> s;
    BLOCKLAB_OPTION(s, steps, "length T of the series (hourly steps; default one year)").min = 10;
    BLOCKLAB_OPTION(s, channels, "channels (variates)").min = 1;
    BLOCKLAB_OPTION(s, seed, "seed of the generator (the data, not the run)").min = 0;
    add_window_options(s);
    return s;
  }();
  return schema;
}

}  // namespace

// The series [T, C] (float64) of the header's generator.
torch::Tensor synthetic_series(std::int64_t steps, std::int64_t channels, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(derive_seed(seed, kSeriesSalt));
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  const torch::Tensor amplitude = torch::rand({2, channels}, gen, opts) + 0.5;
  const torch::Tensor phase = torch::rand({2, channels}, gen, opts) * (2 * kPi);
  const torch::Tensor slope = torch::rand({channels}, gen, opts) * 2 - 1;
  const torch::Tensor z = torch::randn({steps, channels}, gen, opts);
  const torch::Tensor t = torch::arange(steps, opts).unsqueeze(1);
  torch::Tensor x = amplitude[0] * torch::sin(2 * kPi * t / 24 + phase[0]) +
                    amplitude[1] * torch::sin(2 * kPi * t / 168 + phase[1]) + slope * t / static_cast<double>(steps);
  // AR(1) noise, step by step.
  torch::Tensor noise = torch::empty({steps, channels}, opts);
  auto e = noise.accessor<double, 2>();
  const auto zz = z.accessor<double, 2>();
  for (std::int64_t c = 0; c < channels; ++c) {
    double prev = 0;
    for (std::int64_t i = 0; i < steps; ++i) e[i][c] = prev = kPhi * prev + kSigma * zz[i][c];
  }
  return x + noise;
}

namespace {

SyntheticSeriesOptions bind_synthetic(const ConfigNode& params) {
  return bind_series_options(synthetic_schema(), params);
}

std::shared_ptr<Dataset> make_synthetic(const ConfigNode& params, const DatasetArgs&) {
  const SyntheticSeriesOptions o = bind_synthetic(params);
  check_series_windows("series/synthetic", o.steps(), o.lookback(), o.horizon());
  const torch::Tensor series = synthetic_series(o.steps(), o.channels(), static_cast<std::uint64_t>(o.seed()));
  return std::make_shared<SeriesDataset>("series/synthetic", series, o.lookback(), o.horizon(),
                                         "series/synthetic;seed=" + std::to_string(o.seed()));
}

DatasetPlan plan_synthetic(const ConfigNode& params) {
  const SyntheticSeriesOptions o = bind_synthetic(params);
  return series_plan("series/synthetic", o.steps(), o.channels(), o.lookback(), o.horizon(), "a longer dataset.steps");
}
[[maybe_unused]] const bool BLOCKLAB_UNIQUE(planner_registered_) = register_dataset_planner("series/synthetic",
                                                                                            plan_synthetic);

BLOCKLAB_REGISTER(dataset_registry(),
                  BLOCKLAB_ENTRY("series/synthetic")
                      .summary("seeded series: daily and weekly sinusoids + linear trend + AR(1) noise per channel, "
                               "LTSF-Linear windows and 70/10/20 split")
                      .paper("Are Transformers Effective for Time Series Forecasting? (Zeng et al., 2023), "
                             "arXiv:2205.13504 (windows, split, standardisation)")
                      .equation("x_c(t) = a sin(2 pi t/24 + p) + b sin(2 pi t/168 + q) + g t/T + e(t); "
                                "e(t) = 0.8 e(t-1) + 0.3 z(t)")
                      .schema(synthetic_schema().schema())
                      .example("{steps: 400, channels: 3, lookback: 24, horizon: 8}"),
                  make_synthetic);

}  // namespace
}  // namespace blocklab
