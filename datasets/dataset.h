// Dataset plugins and the batched loader.
//
// A dataset loads its splits into memory once ("train", "val", "test"), says what it holds
// (DatasetInfo), and turns raw batches into model inputs (normalisation, and augmentation
// when training). Everything random derives from seeds: the train/val split from the
// dataset's split seed, each epoch's order and each batch's augmentation from the run seed,
// the epoch and the step, so a resumed run sees exactly the batches an uninterrupted run
// would (the sampler position is just (epoch, batch index)).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "registry/options_schema.h"
#include "registry/registry.h"

namespace blocklab {

// Per-token targets that are not scored (the prompt of a recall task, padding): the value of
// PyTorch's cross_entropy ignore_index default.
constexpr std::int64_t kIgnoreTarget = -100;

struct DatasetInfo {
  // What the targets are: "classification" (a label per example), "language" (the next token
  // at every position), "recall" (tokens at some positions, kIgnoreTarget elsewhere),
  // "forecast" (the next `horizon` steps of every channel).
  std::string task = "classification";
  std::int64_t channels = 0, height = 0, width = 0;  // images; series: channels = variates
  std::int64_t length = 0;               // sequences: tokens (series: look-back steps) of the longest example
  std::int64_t vocabulary = 0;           // token sequences: ids in [0, vocabulary)
  std::vector<std::string> token_names;  // how token id i prints (a text's characters), when known
  std::int64_t horizon = 0;              // forecasting: steps predicted
  std::int64_t num_classes = 0;
  std::vector<std::string> class_names;
  // Test splits besides "test" (e.g. MQAR's grid of lengths x pairs), evaluated by name.
  std::vector<std::string> extra_test_splits;

  // What a model predicts per example (or per token): classes, else the vocabulary (next
  // tokens), else the series' channels (forecasts).
  std::int64_t outputs() const { return num_classes > 0 ? num_classes : vocabulary > 0 ? vocabulary : channels; }
};

struct Split {
  torch::Tensor inputs;   // raw storage, e.g. uint8 [N, C, H, W], token ids [N, L], series [N, L, C]
  torch::Tensor targets;  // int64 [N] labels, int64 [N, L] tokens, float [N, H, C] forecasts
  torch::Tensor lengths;  // int64 [N]: valid positions of right-padded sequences; undefined: all valid
  std::int64_t size() const { return targets.defined() ? targets.size(0) : 0; }
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual DatasetInfo info() const = 0;
  // Throws ConfigError for an unknown split name.
  virtual const Split& split(const std::string& name) const = 0;
  // Raw batch -> float model input; `generator` is set when training augmentation applies.
  virtual torch::Tensor prepare(const torch::Tensor& raw, torch::Generator* augment_generator) const = 0;
  // Identifies the data content (for run ids): changes when the files change.
  virtual std::string fingerprint() const = 0;
};

struct DatasetArgs {
  std::uint64_t seed = 0;  // run seed (the split seed is a dataset parameter)
};
using DatasetRegistry = Registry<std::shared_ptr<Dataset>, const DatasetArgs&>;
DatasetRegistry& dataset_registry();

// What a dataset config will hold, known from the config alone without reading any file, so
// that validation (show, run, every sweep point) can check rules that involve the data (a batch
// larger than the training split) before anything runs.
struct DatasetPlan {
  DatasetInfo info;
  std::map<std::string, std::int64_t> split_sizes;  // "train", "val", "test"
  // How to get more training examples, for the message when a batch does not fit.
  std::string more_data_hint = "more training data (see blocklab describe <dataset>)";
};
using DatasetPlanner = std::function<DatasetPlan(const ConfigNode& params)>;
// Registers the planner of a dataset type (call from the dataset's file, next to its entry).
bool register_dataset_planner(const std::string& type, DatasetPlanner planner);
// The plan of a `dataset` config ({type: ..., ...}); nullopt when its type has no planner.
// Throws ConfigError for options out of range.
std::optional<DatasetPlan> plan_dataset(const ConfigNode& params);

// The error for a split name a dataset with train, val and test does not have (with a
// did-you-mean and the names it has).
[[noreturn]] void throw_unknown_split(const std::string& dataset, const std::string& name);

// One of a dataset's three parts by split name; throws ConfigError for any other name.
template <class Part>
const Part& part_by_name(const std::string& dataset, const std::string& name, const Part& train, const Part& val,
                         const Part& test) {
  if (name == "train") return train;
  if (name == "val") return val;
  if (name == "test") return test;
  throw_unknown_split(dataset, name);
}

// The options of a `dataset` config ({type: ..., ...}): validated against the schema (every
// problem in one error), then bound.
template <class O>
O bind_dataset_options(const OptionsSchema<O>& schema, const ConfigNode& params) {
  ConfigNode values = params;
  values.erase("type");
  DiagnosticSink sink;
  validate(values, schema.schema(), "dataset", {}, sink);
  sink.throw_if_any();
  return schema.bind(values, "dataset");
}

// Derives independent 64-bit seeds from a base seed and labels (SplitMix64 mixing).
std::uint64_t derive_seed(std::uint64_t base, std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0);

// Batches over a split: epoch order is a permutation seeded by (seed, epoch); the last
// partial batch is kept (drop_last = false) or dropped.
class BatchLoader {
 public:
  BatchLoader(const Dataset& dataset, std::string split, std::int64_t batch_size, bool shuffle, std::uint64_t seed,
              bool drop_last = false);
  std::int64_t batches_per_epoch() const;
  std::int64_t size() const { return split_->size(); }
  // The batch `index` of `epoch`: model inputs (prepared; augmented when `augment`) and
  // targets. Deterministic in (seed, epoch, index).
  std::pair<torch::Tensor, torch::Tensor> batch(std::int64_t epoch, std::int64_t index, bool augment) const;
  // The valid lengths [b] of the same batch's examples; undefined when the split has none.
  torch::Tensor lengths(std::int64_t epoch, std::int64_t index) const;

 private:
  torch::Tensor order(std::int64_t epoch) const;
  torch::Tensor indices(std::int64_t epoch, std::int64_t index) const;  // of batch `index`

  const Dataset& dataset_;
  const Split* split_;
  std::int64_t batch_size_;
  bool shuffle_;
  std::uint64_t seed_;
  bool drop_last_;
  mutable std::int64_t cached_epoch_ = -1;
  mutable torch::Tensor cached_order_;
};

}  // namespace blocklab
