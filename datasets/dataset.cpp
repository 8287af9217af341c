#include "datasets/dataset.h"

#include "registry/named_hooks.h"
#include "registry/suggest.h"

namespace blocklab {

DatasetRegistry& dataset_registry() {
  static DatasetRegistry r("dataset", "datasets: in-memory splits, normalisation, augmentation");
  return r;
}

namespace {
NamedHooks<DatasetPlanner>& planners() {
  static NamedHooks<DatasetPlanner> hooks;
  return hooks;
}
}  // namespace

bool register_dataset_planner(const std::string& type, DatasetPlanner planner) {
  return planners().add(type, std::move(planner));
}

std::optional<DatasetPlan> plan_dataset(const ConfigNode& params) {
  const ConfigNode* type = params.is_map() ? params.find("type") : nullptr;
  const DatasetPlanner* planner = type && type->is_scalar() ? planners().find(type->text()) : nullptr;
  if (!planner) return std::nullopt;
  return (*planner)(params);
}

void throw_unknown_split(const std::string& dataset, const std::string& name) {
  const std::vector<std::string> names{"train", "val", "test"};
  std::vector<std::string> hints;
  if (std::string dym = did_you_mean(name, names); !dym.empty()) hints.push_back(dym);
  hints.push_back("splits: " + join_names(names));
  throw ConfigError(dataset + " has no split '" + name + "'", {}, "", hints);
}

std::uint64_t derive_seed(std::uint64_t base, std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  auto mix = [](std::uint64_t z) {  // SplitMix64 finaliser
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  std::uint64_t h = mix(base);
  h = mix(h ^ a);
  h = mix(h ^ b);
  h = mix(h ^ c);
  return h >> 1;  // torch generators take seeds that fit in int64 comfortably
}

BatchLoader::BatchLoader(const Dataset& dataset, std::string split, std::int64_t batch_size, bool shuffle,
                         std::uint64_t seed, bool drop_last)
    : dataset_(dataset),
      split_(&dataset.split(split)),
      batch_size_(batch_size),
      shuffle_(shuffle),
      seed_(seed),
      drop_last_(drop_last) {
  TORCH_CHECK(batch_size >= 1, "BatchLoader: batch_size must be >= 1, got ", batch_size);
}

std::int64_t BatchLoader::batches_per_epoch() const {
  const std::int64_t n = split_->size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

torch::Tensor BatchLoader::order(std::int64_t epoch) const {
  if (epoch == cached_epoch_) return cached_order_;
  const std::int64_t n = split_->size();
  if (shuffle_) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(derive_seed(seed_, 0x5a3d, static_cast<std::uint64_t>(epoch)));
    cached_order_ = torch::randperm(n, gen, torch::kLong);
  } else {
    cached_order_ = torch::arange(n, torch::kLong);
  }
  cached_epoch_ = epoch;
  return cached_order_;
}

torch::Tensor BatchLoader::indices(std::int64_t epoch, std::int64_t index) const {
  TORCH_CHECK(epoch >= 0 && index >= 0 && index < batches_per_epoch(), "BatchLoader: no batch ", index, " in epoch ",
              epoch, " (", batches_per_epoch(), " batches per epoch)");
  const std::int64_t start = index * batch_size_;
  const std::int64_t stop = std::min(start + batch_size_, split_->size());
  return order(epoch).slice(0, start, stop);
}

torch::Tensor BatchLoader::lengths(std::int64_t epoch, std::int64_t index) const {
  const torch::Tensor idx = indices(epoch, index);
  return split_->lengths.defined() ? split_->lengths.index_select(0, idx) : torch::Tensor();
}

std::pair<torch::Tensor, torch::Tensor> BatchLoader::batch(std::int64_t epoch, std::int64_t index, bool augment) const {
  const torch::Tensor idx = indices(epoch, index);
  const torch::Tensor raw = split_->inputs.index_select(0, idx);
  const torch::Tensor targets = split_->targets.index_select(0, idx);
  if (!augment) return {dataset_.prepare(raw, nullptr), targets};
  auto gen = at::make_generator<at::CPUGeneratorImpl>(
      derive_seed(seed_, 0xa06, static_cast<std::uint64_t>(epoch), static_cast<std::uint64_t>(index)));
  return {dataset_.prepare(raw, &gen), targets};
}

}  // namespace blocklab
