// series/temps: hourly air temperatures of Seattle and San Francisco through 2010 (8,759 steps,
// 2 channels), the longest real series Debian ships as plain files: python3-vega-datasets'
// seattle-temps.csv and sf-temps.csv (vega-datasets, from NOAA's hourly observations). Both
// files hold the same timestamps (one hour of the year is missing in both, the change to
// daylight saving time); the reader checks that they agree row by row.
//
// Windowed, split 70/10/20 and standardised on the training part as LTSF-Linear does
// (series_dataset.h). There are no calendar features: the models see the values only.
#include <array>

#include "datasets/idx_file.h"
#include "datasets/series/csv_series.h"
#include "datasets/series/series_dataset.h"

namespace blocklab {
namespace {

const char* const kPackage = "python3-vega-datasets";
constexpr std::int64_t kSteps = 8759;  // rows of each file (2010, hourly, one hour missing)
const std::array<const char*, 2> kFiles = {"seattle-temps.csv", "sf-temps.csv"};

struct TempsOptions {
  TORCH_ARG(std::string, root) = "/usr/lib/python3/dist-packages/vega_datasets/_data";
  TORCH_ARG(std::int64_t, lookback) = 96;
  TORCH_ARG(std::int64_t, horizon) = 96;
};

const OptionsSchema<TempsOptions>& temps_schema() {
  static const OptionsSchema<TempsOptions> schema = [] {
    OptionsSchema<TempsOptions> s;
    BLOCKLAB_OPTION(s, root, "directory holding seattle-temps.csv and sf-temps.csv (python3-vega-datasets)");
    add_window_options(s);
    return s;
  }();
  return schema;
}

TempsOptions bind_temps(const ConfigNode& params) { return bind_series_options(temps_schema(), params); }

// The two files' temperatures as [T, 2] (Seattle, San Francisco), checked to share timestamps.
torch::Tensor read_temps(const std::string& root, const SeriesFileContext& context, std::uint64_t& hash) {
  std::vector<CsvColumn> columns;
  for (const char* name : kFiles) {
    const std::string file = root + (root.empty() || root.back() == '/' ? "" : "/") + name;
    columns.push_back(read_csv_column(file, "temp", "date", context));
    if (static_cast<std::int64_t>(columns.back().values.size()) != kSteps)
      throw ConfigError(file + " holds " + std::to_string(columns.back().values.size()) + " rows, expected " +
                            std::to_string(kSteps) + " (hourly, 2010)",
                        context.where, context.path, context.damaged);
    hash = fnv1a(&columns.back().fnv1a, sizeof columns.back().fnv1a, hash);
  }
  for (std::int64_t t = 0; t < kSteps; ++t)
    // "2010/01/01 00:00" in one file, "2010/01/01 00:00:00" in the other: the minute must agree.
    if (columns[0].labels[t].substr(0, 16) != columns[1].labels[t].substr(0, 16))
      throw ConfigError(std::string(kFiles[0]) + " and " + kFiles[1] + " disagree at row " + std::to_string(t + 2) +
                            ": " + columns[0].labels[t] + " vs " + columns[1].labels[t],
                        context.where, context.path, context.damaged);
  torch::Tensor series = torch::empty({kSteps, 2}, torch::kFloat64);
  for (std::int64_t c = 0; c < 2; ++c) series.select(1, c).copy_(torch::tensor(columns[c].values, torch::kFloat64));
  return series;
}

std::shared_ptr<Dataset> make_temps(const ConfigNode& params, const DatasetArgs&) {
  const TempsOptions o = bind_temps(params);
  const ConfigNode* root = params.find("root");
  const std::string install = " (or set dataset.root)";
  const SeriesFileContext context{
      root ? root->source() : Source{},
      "dataset.root",
      {std::string("install it with: apt-get install ") + kPackage + install},
      {std::string("reinstall it with: apt-get install --reinstall ") + kPackage + install}};
  check_series_windows("series/temps", kSteps, o.lookback(), o.horizon());
  std::uint64_t hash = kFnv1aOffset;
  const torch::Tensor series = read_temps(o.root(), context, hash);
  return std::make_shared<SeriesDataset>("series/temps", series, o.lookback(), o.horizon(),
                                         "series/temps;files=" + std::to_string(hash));
}

DatasetPlan plan_temps(const ConfigNode& params) {
  const TempsOptions o = bind_temps(params);
  return series_plan("series/temps", kSteps, 2, o.lookback(), o.horizon(), "a shorter dataset.lookback or horizon");
}
[[maybe_unused]] const bool BLOCKLAB_UNIQUE(planner_registered_) = register_dataset_planner("series/temps", plan_temps);

BLOCKLAB_REGISTER(dataset_registry(),
                  BLOCKLAB_ENTRY("series/temps")
                      .summary("hourly temperatures of Seattle and San Francisco, 2010 (8,759 steps, 2 channels; "
                               "python3-vega-datasets), LTSF-Linear windows and 70/10/20 split")
                      .paper("Are Transformers Effective for Time Series Forecasting? (Zeng et al., 2023), "
                             "arXiv:2205.13504 (windows, split, standardisation)")
                      .equation("x = s[i, i+L), y = s[i+L, i+L+H); s = (temps - mean_train) / std_train")
                      .schema(temps_schema().schema())
                      .example("{lookback: 48, horizon: 24}"),
                  make_temps);

}  // namespace
}  // namespace blocklab
