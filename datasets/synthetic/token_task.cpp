#include "datasets/synthetic/token_task.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "datasets/idx_file.h"
#include "registry/suggest.h"
#include "registry/yaml_io.h"

namespace blocklab {

std::uint64_t TokenRng::next() {  // SplitMix64
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::int64_t TokenRng::below(std::int64_t n) {
  TORCH_CHECK(n >= 1, "TokenRng::below: n must be >= 1, got ", n);
  const auto range = static_cast<std::uint64_t>(n);
  const std::uint64_t limit = ~0ULL - (~0ULL % range);  // a multiple of range
  std::uint64_t x = next();
  while (x >= limit) x = next();
  return static_cast<std::int64_t>(x % range);
}

double TokenRng::unit() { return (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53; }

std::vector<std::int64_t> TokenRng::distinct(std::int64_t k, std::int64_t lo, std::int64_t hi) {
  TORCH_CHECK(k >= 0 && k <= hi - lo, "TokenRng::distinct: ", k, " values from [", lo, ", ", hi, ")");
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(k));
  if (2 * k > hi - lo) {  // dense: a partial Fisher-Yates shuffle of the range
    std::vector<std::int64_t> all(static_cast<std::size_t>(hi - lo));
    std::iota(all.begin(), all.end(), lo);
    for (std::int64_t i = 0; i < k; ++i) {
      std::swap(all[static_cast<std::size_t>(i)], all[static_cast<std::size_t>(i + below(hi - lo - i))]);
      out.push_back(all[static_cast<std::size_t>(i)]);
    }
    return out;
  }
  while (static_cast<std::int64_t>(out.size()) < k) {  // sparse: reject repeats
    const std::int64_t v = lo + below(hi - lo);
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  }
  return out;
}

std::vector<std::int64_t> TokenRng::weighted_distinct(std::int64_t k, const std::vector<double>& weights) {
  TORCH_CHECK(k >= 0 && k <= static_cast<std::int64_t>(weights.size()), "TokenRng::weighted_distinct: ", k, " of ",
              weights.size());
  // Efraimidis & Spirakis (2006): the k largest u^(1/w), i.e. log(u)/w, in decreasing order are
  // a weighted draw without replacement in draw order.
  std::vector<std::pair<double, std::int64_t>> keys(weights.size());
  for (std::size_t i = 0; i < weights.size(); ++i)
    keys[i] = {std::log(unit()) / weights[i], static_cast<std::int64_t>(i)};
  std::partial_sort(keys.begin(), keys.begin() + k, keys.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < k; ++i) out.push_back(keys[static_cast<std::size_t>(i)].second);
  return out;
}

Split generate_split(const std::string& name, std::uint64_t seed, std::uint64_t salt,
                     const std::vector<TokenPoint>& points, std::int64_t length) {
  const std::int64_t n = total_examples(points);
  Split split{torch::zeros({n, length}, torch::kLong), torch::full({n, length}, kIgnoreTarget, torch::kLong),
              torch::empty({n}, torch::kLong)};
  auto* inputs = split.inputs.data_ptr<std::int64_t>();
  auto* targets = split.targets.data_ptr<std::int64_t>();
  auto* lengths = split.lengths.data_ptr<std::int64_t>();
  const std::uint64_t name_label = fnv1a(name.data(), name.size());
  std::int64_t row = 0;
  for (std::size_t p = 0; p < points.size(); ++p) {
    const TokenPoint& point = points[p];
    TORCH_CHECK(point.length <= length, "generate_split: a point of length ", point.length, " in ", length);
    const std::uint64_t point_seed = derive_seed(seed, salt, name_label, p);
    for (std::int64_t i = 0; i < point.examples; ++i, ++row) {
      TokenRng rng(derive_seed(point_seed, static_cast<std::uint64_t>(i)));
      point.write(rng, inputs + row * length, targets + row * length);
      lengths[row] = point.length;
    }
  }
  return split;
}

Split concat_splits(const std::vector<Split>& parts) {
  std::vector<torch::Tensor> inputs, targets, lengths;
  for (const Split& p : parts) {
    inputs.push_back(p.inputs);
    targets.push_back(p.targets);
    lengths.push_back(p.lengths);
  }
  return {torch::cat(inputs), torch::cat(targets), torch::cat(lengths)};
}

namespace {

std::uint64_t tensor_hash(const torch::Tensor& t, std::uint64_t hash) {
  const torch::Tensor c = t.contiguous();
  return fnv1a(c.data_ptr(), static_cast<std::size_t>(c.numel() * c.element_size()), hash);
}

std::string seed_hex(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

TokenDataset::TokenDataset(std::string name, DatasetInfo info, std::map<std::string, Split> splits,
                           const std::string& identity)
    : name_(std::move(name)), info_(std::move(info)), splits_(std::move(splits)) {
  std::uint64_t hash = fnv1a(identity.data(), identity.size());
  for (const auto& [split_name, s] : splits_) {  // map order: by name
    hash = fnv1a(split_name.data(), split_name.size(), hash);
    for (const torch::Tensor& t : {s.inputs, s.targets, s.lengths}) hash = tensor_hash(t, hash);
  }
  fingerprint_ = seed_hex(hash);
}

const Split& TokenDataset::split(const std::string& name) const {
  const auto found = splits_.find(name);
  if (found != splits_.end()) return found->second;
  std::vector<std::string> names;
  for (const auto& [n, s] : splits_) names.push_back(n);
  std::vector<std::string> hints;
  if (std::string dym = did_you_mean(name, names); !dym.empty()) hints.push_back(dym);
  hints.push_back("splits: " + join_names(names));
  throw ConfigError(name_ + " has no split '" + name + "'", {}, "", hints);
}

std::int64_t total_examples(const std::vector<TokenPoint>& points) {
  std::int64_t n = 0;
  for (const TokenPoint& p : points) n += p.examples;
  return n;
}

void token_option_error(const std::string& key, const std::string& message, const std::string& fix) {
  throw ConfigError(message, {}, "dataset." + key, {fix});
}

std::string token_identity(const std::string& name, const Schema& schema, const ConfigNode& params) {
  ConfigNode options = schema.defaults();
  if (params.is_map())
    for (const auto& [key, value] : params.entries())
      if (key != "type") options.set(key, value);
  return name + " " + dump_json(options);
}

std::map<std::string, std::vector<TokenPoint>> LengthTask::points() const {
  const LengthTaskOptions& o = options;
  std::map<std::string, std::vector<TokenPoint>> out;
  out["train"] = {{o.seq_len(), o.train_examples(), writer(o.seq_len())}};
  if (o.val_examples() > 0) out["val"] = {{o.seq_len(), o.val_examples(), writer(o.seq_len())}};
  out["test"] = {{o.seq_len(), o.test_examples(), writer(o.seq_len())}};
  for (std::int64_t n : o.test_seq_len()) out["test/L" + std::to_string(n)] = {{n, o.test_examples(), writer(n)}};
  return out;
}

std::int64_t LengthTask::longest() const {
  std::int64_t n = options.seq_len();
  for (std::int64_t m : options.test_seq_len()) n = std::max(n, m);
  return n;
}

std::vector<std::string> LengthTask::extra_test_splits() const {
  std::vector<std::string> names;
  for (std::int64_t n : options.test_seq_len()) names.push_back("test/L" + std::to_string(n));
  return names;
}

namespace {
DatasetInfo with_lengths(DatasetInfo info, const LengthTask& task) {
  info.length = task.longest();
  info.extra_test_splits = task.extra_test_splits();
  return info;
}
}  // namespace

DatasetPlan plan_length_task(DatasetInfo info, const LengthTask& task) {
  DatasetPlan plan = token_plan(with_lengths(std::move(info), task), task.points());
  plan.more_data_hint = "more training sequences: dataset.train_examples";
  return plan;
}

std::shared_ptr<Dataset> make_length_dataset(const std::string& name, DatasetInfo info, const LengthTask& task,
                                             std::uint64_t seed, std::uint64_t salt, const std::string& identity) {
  info = with_lengths(std::move(info), task);
  std::map<std::string, Split> splits = generate_splits(task.points(), seed, salt, info.length);
  return std::make_shared<TokenDataset>(name, std::move(info), std::move(splits), identity);
}

DatasetPlan token_plan(const DatasetInfo& info, const std::map<std::string, std::vector<TokenPoint>>& points) {
  DatasetPlan plan{info, {}};
  plan.more_data_hint = "more training sequences (see blocklab describe <dataset>: train_examples)";
  for (const char* name : {"train", "val", "test"}) {
    const auto found = points.find(name);
    plan.split_sizes[name] = found == points.end() ? 0 : total_examples(found->second);
  }
  return plan;
}

std::map<std::string, Split> generate_splits(const std::map<std::string, std::vector<TokenPoint>>& points,
                                             std::uint64_t seed, std::uint64_t salt, std::int64_t length) {
  std::map<std::string, Split> splits;
  for (const auto& [name, p] : points) splits[name] = generate_split(name, seed, salt, p, length);
  return splits;
}

}  // namespace blocklab
