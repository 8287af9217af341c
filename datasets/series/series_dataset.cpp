#include "datasets/series/series_dataset.h"

#include <array>
#include <iomanip>
#include <sstream>

#include "datasets/idx_file.h"
#include "registry/suggest.h"

namespace blocklab {

namespace {

struct Part {
  std::int64_t begin, end;  // [begin, end) of the series, look-back included
};

// The three parts of LTSF-Linear's Dataset_Custom (border1s, border2s).
std::array<Part, 3> parts(std::int64_t steps, std::int64_t lookback) {
  const SeriesBorders b = series_borders(steps);
  return {Part{0, b.train_end}, Part{b.train_end - lookback, b.val_end}, Part{b.val_end - lookback, b.total}};
}

std::int64_t windows_in(const Part& p, std::int64_t lookback, std::int64_t horizon) {
  if (p.begin < 0) return 0;  // the look-back does not fit before the part
  return std::max<std::int64_t>(0, p.end - p.begin - lookback - horizon + 1);
}

// Windows of the standardised series s [T, C] in part p: inputs [N, L, C], targets [N, H, C].
Split windows(const torch::Tensor& s, const Part& p, std::int64_t lookback, std::int64_t horizon) {
  const std::int64_t n = windows_in(p, lookback, horizon);
  const torch::Tensor part = s.slice(0, p.begin, p.end);
  // unfold(0, size, 1): [T - size + 1, C, size]; window i starts at step i of the part.
  const torch::Tensor inputs = part.unfold(0, lookback, 1).slice(0, 0, n).transpose(1, 2).contiguous();
  const torch::Tensor targets =
      part.slice(0, lookback).unfold(0, horizon, 1).slice(0, 0, n).transpose(1, 2).contiguous();
  return Split{inputs, targets, {}};
}

std::string hex(std::uint64_t v) {
  std::ostringstream out;
  out << std::hex << std::setw(16) << std::setfill('0') << v;
  return out.str();
}

}  // namespace

SeriesBorders series_borders(std::int64_t steps) {
  // int(len * 0.7) and int(len * 0.2) of the Python code, in the same double arithmetic (90 * 0.7
  // is 62.999..., so train is 62 there, not 63).
  const auto train = static_cast<std::int64_t>(static_cast<double>(steps) * 0.7);
  const auto test = static_cast<std::int64_t>(static_cast<double>(steps) * 0.2);
  return {train, steps - test, steps};
}

std::map<std::string, std::int64_t> series_window_counts(std::int64_t steps, std::int64_t lookback,
                                                         std::int64_t horizon) {
  const auto p = parts(steps, lookback);
  return {{"train", windows_in(p[0], lookback, horizon)},
          {"val", windows_in(p[1], lookback, horizon)},
          {"test", windows_in(p[2], lookback, horizon)}};
}

void check_series_windows(const std::string& dataset, std::int64_t steps, std::int64_t lookback, std::int64_t horizon) {
  const SeriesBorders b = series_borders(steps);
  const std::int64_t val = b.val_end - b.train_end, test = b.total - b.val_end;
  if (horizon > std::min(val, test))
    throw ConfigError("horizon " + std::to_string(horizon) + " is longer than the val part of " + dataset + " (" +
                          std::to_string(val) + " of " + std::to_string(steps) + " steps; test " +
                          std::to_string(test) + "): the val split would hold no window",
                      {}, "dataset.horizon", {"use dataset.horizon <= " + std::to_string(std::min(val, test))});
  if (lookback + horizon > b.train_end)
    throw ConfigError("lookback " + std::to_string(lookback) + " + horizon " + std::to_string(horizon) +
                          " is longer than the training part of " + dataset + " (" + std::to_string(b.train_end) +
                          " steps): the train split would hold no window",
                      {}, "dataset.lookback", {"use dataset.lookback <= " + std::to_string(b.train_end - horizon)});
}

DatasetInfo series_info(std::int64_t channels, std::int64_t lookback, std::int64_t horizon) {
  DatasetInfo info;
  info.task = "forecast";
  info.channels = channels;
  info.length = lookback;
  info.horizon = horizon;
  return info;
}

DatasetPlan series_plan(const std::string& dataset, std::int64_t steps, std::int64_t channels, std::int64_t lookback,
                        std::int64_t horizon, std::string more_data_hint) {
  check_series_windows(dataset, steps, lookback, horizon);
  return DatasetPlan{series_info(channels, lookback, horizon), series_window_counts(steps, lookback, horizon),
                     std::move(more_data_hint)};
}

SeriesDataset::SeriesDataset(std::string name, const torch::Tensor& series, std::int64_t lookback, std::int64_t horizon,
                             const std::string& fingerprint_text)
    : name_(std::move(name)), channels_(series.size(1)), lookback_(lookback), horizon_(horizon) {
  TORCH_CHECK(series.dim() == 2, name_, ": expected a series [T, C], got ", series.sizes());
  const std::int64_t steps = series.size(0);
  check_series_windows(name_, steps, lookback, horizon);
  const torch::Tensor s = series.to(torch::kFloat64).contiguous();
  // StandardScaler on the training part only: population std; a constant channel keeps scale 1.
  const torch::Tensor train = s.slice(0, 0, series_borders(steps).train_end);
  mean_ = train.mean(0);
  std_ = (train - mean_).pow(2).mean(0).sqrt();  // population std
  std_ = torch::where(std_ > 0, std_, torch::ones_like(std_));
  const torch::Tensor normalised = ((s - mean_) / std_).to(torch::kFloat32);
  const auto p = parts(steps, lookback);
  const char* const names[] = {"train", "val", "test"};
  for (std::size_t i = 0; i < p.size(); ++i) splits_[names[i]] = windows(normalised, p[i], lookback, horizon);
  const std::string text =
      fingerprint_text + ";lookback=" + std::to_string(lookback) + ";horizon=" + std::to_string(horizon);
  fingerprint_ = hex(fnv1a(text.data(), text.size(), fnv1a(s.data_ptr(), s.numel() * sizeof(double))));
}

const Split& SeriesDataset::split(const std::string& name) const {
  const auto found = splits_.find(name);
  if (found != splits_.end()) return found->second;
  const std::vector<std::string> names{"train", "val", "test"};
  const std::string suggestion = did_you_mean(name, names);
  throw ConfigError(name_ + " has no split '" + name + "' (" + join_names(names) + ")", {}, "",
                    suggestion.empty() ? std::vector<std::string>{} : std::vector<std::string>{suggestion});
}

}  // namespace blocklab
