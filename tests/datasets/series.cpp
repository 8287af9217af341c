// Series datasets (datasets/series/): LTSF-Linear's chronological split and windows, the
// standardisation fitted on the training part only (no statistic of val/test leaks), the seeded
// synthetic generator, the real temperatures, planners, and the missing-file message.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "datasets/series/series_dataset.h"
#include "golden.h"
#include "process_support.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

const std::string kVega = "/usr/lib/python3/dist-packages/vega_datasets/_data";

// A ramp with distinct values per channel, so every window is recognisable.
torch::Tensor ramp(std::int64_t steps, std::int64_t channels) {
  return torch::arange(steps * channels, torch::kFloat64).view({steps, channels}).pow(1.5) / 100;
}

ConfigNode yaml(const std::string& text) { return parse_yaml(text, "test.yaml"); }

}  // namespace

TEST_CASE("series: LTSF-Linear's 70/10/20 borders and window counts", "[forecast]") {
  const SeriesBorders b = series_borders(8759);
  CHECK(b.train_end == 6131);       // int(0.7 * 8759)
  CHECK(b.val_end == 8759 - 1751);  // test = int(0.2 * 8759)
  const auto counts = series_window_counts(8759, 96, 24);
  CHECK(counts.at("train") == 6131 - 96 - 24 + 1);
  CHECK(counts.at("val") == (b.val_end - b.train_end) - 24 + 1);  // its look-back lies in train
  CHECK(counts.at("test") == 1751 - 24 + 1);
}

TEST_CASE("series: windows are consecutive slices of the standardised series; val/test look back into the part before",
          "[forecast]") {
  const std::int64_t steps = 200, lookback = 12, horizon = 5;
  const torch::Tensor raw = ramp(steps, 3);
  SeriesDataset data("test", raw, lookback, horizon, "ramp");
  const torch::Tensor s = ((raw - data.mean()) / data.std()).to(torch::kFloat32);
  const SeriesBorders b = series_borders(steps);
  const std::map<std::string, std::int64_t> first{
      {"train", 0}, {"val", b.train_end - lookback}, {"test", b.val_end - lookback}};
  for (const auto& [name, begin] : first) {
    INFO("split " << name);
    const Split& split = data.split(name);
    CHECK(split.size() == series_window_counts(steps, lookback, horizon).at(name));
    CHECK(split.inputs.sizes() == torch::IntArrayRef({split.size(), lookback, 3}));
    CHECK(split.targets.sizes() == torch::IntArrayRef({split.size(), horizon, 3}));
    for (std::int64_t i : {std::int64_t{0}, split.size() - 1}) {
      CHECK(torch::equal(split.inputs[i], s.slice(0, begin + i, begin + i + lookback)));
      CHECK(torch::equal(split.targets[i], s.slice(0, begin + i + lookback, begin + i + lookback + horizon)));
    }
  }
  // No target crosses into the next part: the last train target ends at train_end, the last val one at val_end.
  const Split& train = data.split("train");
  CHECK(torch::equal(train.targets[train.size() - 1][horizon - 1], s[b.train_end - 1]));
  const Split& val = data.split("val");
  CHECK(torch::equal(val.targets[val.size() - 1][horizon - 1], s[b.val_end - 1]));
  CHECK(data.info().task == "forecast");
  CHECK(data.info().length == lookback);
  CHECK(data.info().horizon == horizon);
  CHECK(data.info().outputs() == 3);
  CHECK_THROWS_AS(data.split("valid"), ConfigError);
}

TEST_CASE("series: standardisation is fitted on the training part only: changing val/test leaks nothing",
          "[forecast]") {
  const std::int64_t steps = 300, lookback = 10, horizon = 4;
  const torch::Tensor raw = ramp(steps, 2);
  const SeriesBorders b = series_borders(steps);
  // Training part: zero mean and unit (population) std per channel.
  SeriesDataset data("test", raw, lookback, horizon, "ramp");
  const torch::Tensor train_part = (raw.slice(0, 0, b.train_end) - data.mean()) / data.std();
  CHECK(train_part.mean(0).abs().max().item<double>() < 1e-12);
  CHECK((train_part.pow(2).mean(0) - 1).abs().max().item<double>() < 1e-12);  // population variance 1

  // Change every step after the training part (val and test), wildly.
  torch::Tensor changed = raw.clone();
  changed.slice(0, b.train_end).mul_(-7).add_(1000);
  SeriesDataset other("test", changed, lookback, horizon, "ramp");
  CHECK(torch::equal(other.mean(), data.mean()));
  CHECK(torch::equal(other.std(), data.std()));
  CHECK(torch::equal(other.split("train").inputs, data.split("train").inputs));
  CHECK(torch::equal(other.split("train").targets, data.split("train").targets));
  CHECK_FALSE(torch::equal(other.split("test").targets, data.split("test").targets));
  CHECK(other.fingerprint() != data.fingerprint());

  // Changing only the test part leaves val untouched as well.
  torch::Tensor test_changed = raw.clone();
  test_changed.slice(0, b.val_end).add_(50);
  SeriesDataset third("test", test_changed, lookback, horizon, "ramp");
  CHECK(torch::equal(third.split("val").inputs, data.split("val").inputs));
  CHECK(torch::equal(third.split("val").targets, data.split("val").targets));
  CHECK(torch::equal(third.split("train").inputs, data.split("train").inputs));
}

TEST_CASE("series/synthetic: deterministic per seed, daily and weekly cycles, planner agrees", "[forecast]") {
  const torch::Tensor a = synthetic_series(2000, 7, 3), b = synthetic_series(2000, 7, 3);
  CHECK(a.sizes() == torch::IntArrayRef({2000, 7}));
  CHECK(torch::equal(a, b));
  CHECK_FALSE(torch::equal(a, synthetic_series(2000, 7, 4)));
  // The daily cycle dominates: steps 24 apart correlate far more than steps 12 apart.
  const auto lag_corr = [&](std::int64_t lag) {
    const torch::Tensor x = a.slice(0, 0, 2000 - lag), y = a.slice(0, lag);
    const torch::Tensor xc = x - x.mean(0), yc = y - y.mean(0);
    return ((xc * yc).sum(0) / (xc.norm(2, 0) * yc.norm(2, 0))).mean().item<double>();
  };
  CHECK(lag_corr(24) > lag_corr(12) + 0.3);
  CHECK(lag_corr(168) > 0.5);

  const ConfigNode config = yaml("{type: series/synthetic, steps: 500, channels: 3, lookback: 24, horizon: 8}");
  const auto data = dataset_registry().create(config, DatasetArgs{});
  const auto plan = plan_dataset(config);
  REQUIRE(plan);
  for (const char* split : {"train", "val", "test"}) CHECK(plan->split_sizes.at(split) == data->split(split).size());
  CHECK(plan->info.channels == 3);
  CHECK(plan->info.horizon == 8);
  CHECK(data->fingerprint() == dataset_registry().create(config, DatasetArgs{5})->fingerprint());  // not the run seed
  CHECK(data->fingerprint() !=
        dataset_registry()
            .create(yaml("{type: series/synthetic, steps: 500, channels: 3, lookback: 24, horizon: 8, "
                         "seed: 1}"),
                    DatasetArgs{})
            ->fingerprint());
}

TEST_CASE("series: a horizon or look-back that leaves a split without windows is refused, naming the option",
          "[forecast]") {
  const std::string text = testing::error_text([] {
    dataset_registry().create(yaml("{type: series/synthetic, steps: 200, horizon: 30, lookback: 8}"), DatasetArgs{});
  });
  CHECK(text.find("dataset.horizon") != std::string::npos);
  CHECK(text.find("use dataset.horizon <= 20") != std::string::npos);
  CHECK_THROWS_AS(plan_dataset(yaml("{type: series/temps, lookback: 6100, horizon: 96}")), ConfigError);
}

TEST_CASE("series/temps: Seattle and San Francisco, hourly 2010, 2 channels", "[forecast]") {
  const ConfigNode config = yaml("{type: series/temps, lookback: 96, horizon: 24}");
  const auto data = dataset_registry().create(config, DatasetArgs{});
  CHECK(data->info().channels == 2);
  const auto plan = plan_dataset(config);
  REQUIRE(plan);
  for (const char* split : {"train", "val", "test"}) CHECK(plan->split_sizes.at(split) == data->split(split).size());
  CHECK(data->split("train").size() == 6131 - 96 - 24 + 1);
  // Standardised on train: the training inputs' first window starts at Seattle's first reading.
  const auto* series = dynamic_cast<const SeriesDataset*>(data.get());
  REQUIRE(series);
  CHECK(series->mean()[0].item<double>() > 40);  // Fahrenheit
  CHECK(std::abs(data->split("train").inputs[0][0][0].item<double>() -
                 (39.4 - series->mean()[0].item<double>()) / series->std()[0].item<double>()) < 1e-5);
}

TEST_CASE("series/temps: a missing file names the file and the package", "[forecast][golden]") {
  ConfigNode node = yaml("{type: series/temps}");
  node.set("root", ConfigNode::string("/nonexistent/vega", Source::command_line("dataset.root=/nonexistent/vega")));
  const std::string text = testing::error_text([&] { dataset_registry().create(node, DatasetArgs{}); });
  const std::string mismatch = testing::golden_mismatch("series_file_missing", text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

TEST_CASE("series/temps: a damaged file names the file and line", "[forecast]") {
  testing::TempDir dir;
  for (const char* name : {"seattle-temps.csv", "sf-temps.csv"}) fs::copy_file(kVega + "/" + name, dir.path / name);
  {
    std::ofstream out(dir.path / "sf-temps.csv", std::ios::app);
    out << "warm,2011/01/01 00:00:00\n";  // after the last row (the file ends with a newline)
  }
  ConfigNode node = yaml("{type: series/temps}");
  node.set("root", ConfigNode::string(dir.path.string()));
  const std::string text = testing::error_text([&] { dataset_registry().create(node, DatasetArgs{}); });
  CHECK(text.find((dir.path / "sf-temps.csv").string() + ":8761: 'warm' in column 'temp' is not a number") !=
        std::string::npos);
  CHECK(text.find("apt-get install --reinstall python3-vega-datasets") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
