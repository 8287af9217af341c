// A multivariate series [T, C] as a forecasting dataset, windowed as LTSF-Linear does
// ("Are Transformers Effective for Time Series Forecasting?", Zeng et al., 2023,
// arXiv:2205.13504; its data_provider/data_loader.py, Dataset_Custom):
//
//   chronological split   train = int(0.7 T), test = int(0.2 T), val = T - train - test
//   windows               part [b1, b2) gives windows i = 0 .. (b2 - b1) - L - H:
//                           inputs x = s[b1+i .. b1+i+L), targets y = s[b1+i+L .. b1+i+L+H)
//   borders               train [0, train), val [train - L, train + val), test [T - test - L, T):
//                           the look-back of the first val (test) window reaches into the part
//                           before it, as Dataset_Custom's border1s; no target crosses a part
//   standardisation       per channel, mean and population std of the training part [0, train)
//                           only (sklearn's StandardScaler; a constant channel keeps scale 1);
//                           inputs and targets are on this scale, and so are the metrics
//
// Splits: inputs float [N, L, C], targets float [N, H, C]; DatasetInfo task "forecast".
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

#include "datasets/dataset.h"
#include "registry/options_schema.h"

namespace blocklab {

// Where the parts of a series of T steps end (LTSF-Linear's 70/10/20 chronological split).
struct SeriesBorders {
  std::int64_t train_end = 0, val_end = 0, total = 0;
};
SeriesBorders series_borders(std::int64_t steps);

// Windows per split for look-back L and horizon H ("train", "val", "test"); a part too short
// for one window counts 0.
std::map<std::string, std::int64_t> series_window_counts(std::int64_t steps, std::int64_t lookback,
                                                         std::int64_t horizon);

// Throws ConfigError (at dataset.lookback / dataset.horizon) unless every split holds a window.
void check_series_windows(const std::string& dataset, std::int64_t steps, std::int64_t lookback, std::int64_t horizon);

// The look-back and horizon options every series dataset has (declared on its Options).
template <class O>
void add_window_options(OptionsSchema<O>& s) {
  BLOCKLAB_OPTION(s, lookback, "look-back window L: steps the model reads").min = 1;
  BLOCKLAB_OPTION(s, horizon, "horizon H: steps the model predicts").min = 1;
}

// The options of a `dataset` config ({type: ..., ...}), validated against the schema.
template <class O>
O bind_series_options(const OptionsSchema<O>& schema, const ConfigNode& params) {
  ConfigNode values = params;
  values.erase("type");
  DiagnosticSink sink;
  validate(values, schema.schema(), "dataset", {}, sink);
  sink.throw_if_any();
  return schema.bind(values, "dataset");
}

DatasetInfo series_info(std::int64_t channels, std::int64_t lookback, std::int64_t horizon);

// The plan of a series dataset of `steps` x `channels` (checked as check_series_windows).
DatasetPlan series_plan(const std::string& dataset, std::int64_t steps, std::int64_t channels, std::int64_t lookback,
                        std::int64_t horizon, std::string more_data_hint);

class SeriesDataset : public Dataset {
 public:
  // `series` [T, C] (any float type; standardised here in float64, stored as float32).
  // `fingerprint_text` identifies the source and its options (hashed with the values).
  SeriesDataset(std::string name, const torch::Tensor& series, std::int64_t lookback, std::int64_t horizon,
                const std::string& fingerprint_text);

  DatasetInfo info() const override { return series_info(channels_, lookback_, horizon_); }
  const Split& split(const std::string& name) const override;
  torch::Tensor prepare(const torch::Tensor& raw, torch::Generator*) const override { return raw; }
  std::string fingerprint() const override { return fingerprint_; }

  // The standardisation fitted on the training part: mean and std [C] (float64).
  const torch::Tensor& mean() const { return mean_; }
  const torch::Tensor& std() const { return std_; }

 private:
  std::string name_;
  std::int64_t channels_, lookback_, horizon_;
  torch::Tensor mean_, std_;
  std::map<std::string, Split> splits_;  // train, val, test
  std::string fingerprint_;
};

}  // namespace blocklab

namespace blocklab {

// series/synthetic's generator (datasets/series/synthetic.cpp): the series [T, C] (float64).
torch::Tensor synthetic_series(std::int64_t steps, std::int64_t channels, std::uint64_t seed);

}  // namespace blocklab
