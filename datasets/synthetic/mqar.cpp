// synthetic/mqar: multi-query associative recall.
//
// Paper: "Zoology: Measuring and Improving Recall in Efficient Language Models" (Arora, Eyuboglu,
// Timalsina, Johnson, Poli, Zou, Rudra, Ré 2023, arXiv:2312.04927), §3 and Appendix; generator:
// zoology/data/multiquery_ar.py (HazyResearch/zoology), reproduced rule for rule:
//   - ids [1, V/2) are keys, [V/2, V) values; an example draws kv distinct keys and kv distinct
//     values and writes the pairs first: k_1 v_1 k_2 v_2 ... (2 kv tokens);
//   - every key is queried once after the pairs, at position 2 kv + 2 g_i, where the gaps g_i
//     are drawn without replacement from [0, (L - 2 kv)/2) with p(g) ∝ a (g+1)^(a-1) (a =
//     power_a = 0.01: near queries are more likely, as repeated bigrams in text);
//   - the target at a query position is the key's value (kIgnoreTarget elsewhere); the value
//     is not written after the query (the model answers at the key);
//   - every other position holds 0, replaced by a uniform id of [0, V) (random_non_queries).
// Zoology's rules hold: L even, V > L, 4 kv <= L.
//
// Splits: train (the train points), val (val_examples more of each train point, their own
// stream), one test split per grid point, "test/L<len>-kv<pairs>" (DatasetInfo.extra_test_splits),
// and "test", the union of the grid points (so test/acc pools every query of the grid; the task
// also reports the grid's mean). Sequences are right-padded to the longest length of all points.
#include <algorithm>
#include <cmath>

#include "datasets/synthetic/token_task.h"

namespace blocklab {
namespace {

struct MqarOptions {
  TORCH_ARG(std::int64_t, vocabulary) = 8192;
  TORCH_ARG(std::vector<std::int64_t>, train_seq_len) = std::vector<std::int64_t>{64, 128, 256};
  TORCH_ARG(std::vector<std::int64_t>, train_kv_pairs) = std::vector<std::int64_t>{4, 8, 16};
  TORCH_ARG(std::vector<std::int64_t>, train_examples) = std::vector<std::int64_t>{10000, 5000, 5000};
  TORCH_ARG(std::int64_t, val_examples) = 200;
  TORCH_ARG(std::vector<std::int64_t>, test_seq_len) = std::vector<std::int64_t>{64, 128, 256};
  TORCH_ARG(std::vector<std::int64_t>, test_kv_pairs) = std::vector<std::int64_t>{4, 8, 16};
  TORCH_ARG(std::int64_t, test_examples) = 1000;
  TORCH_ARG(double, power_a) = 0.01;
  TORCH_ARG(bool, random_non_queries) = true;
  TORCH_ARG(std::int64_t, seed) = 0;
};

constexpr std::uint64_t kMqarSalt = 0x3a9c;  // derive_seed label of this generator

const OptionsSchema<MqarOptions>& mqar_schema() {
  static const OptionsSchema<MqarOptions> schema = [] {
    OptionsSchema<MqarOptions> s;
    BLOCKLAB_OPTION(s, vocabulary, "V: ids [1, V/2) are keys, [V/2, V) values (zoology: 8192)").min = 8;
    BLOCKLAB_OPTION(s, train_seq_len, "sequence length of each training point (even)").min = 4;
    BLOCKLAB_OPTION(s, train_kv_pairs, "key-value pairs of each training point (4 kv <= length)").min = 1;
    BLOCKLAB_OPTION(s, train_examples, "sequences of each training point").min = 1;
    BLOCKLAB_OPTION(s, val_examples, "validation sequences per training point (own stream); 0 = no val").min = 0;
    BLOCKLAB_OPTION(s, test_seq_len, "sequence length of each test grid point (even)").min = 4;
    BLOCKLAB_OPTION(s, test_kv_pairs, "key-value pairs of each test grid point (4 kv <= length)").min = 1;
    BLOCKLAB_OPTION(s, test_examples, "sequences per test grid point").min = 1;
    auto& a = BLOCKLAB_OPTION(s, power_a, "query gaps g drawn with p(g) ∝ a (g+1)^(a-1); 1 = uniform");
    a.min = 1e-6, a.max = 1.0;
    BLOCKLAB_OPTION(s, random_non_queries, "fill the positions between queries with uniform ids (else 0)");
    BLOCKLAB_OPTION(s, seed, "seed of the generator (train, val and each test point use derived streams)").min = 0;
    return s;
  }();
  return schema;
}

// One (length, pairs) point of the train mix or the test grid.
struct GridPoint {
  std::int64_t length, pairs;
};

// Zoology's rules for one point: even length, 4 kv <= length < V.
void check_point(const GridPoint& p, std::int64_t vocabulary, const std::string& prefix) {
  const std::string at = "(" + std::to_string(p.length) + ", " + std::to_string(p.pairs) + ")";
  if (p.length % 2 != 0)
    token_option_error(prefix + "_seq_len", "sequence length " + std::to_string(p.length) + " is odd",
                       "use an even length (keys and values alternate)");
  if (4 * p.pairs > p.length)
    token_option_error(
        prefix + "_kv_pairs",
        "point " + at + ": " + std::to_string(p.pairs) + " pairs do not fit with their queries (4 kv <= length)",
        "use at most " + std::to_string(p.length / 4) + " pairs, or a longer sequence");
  if (vocabulary <= p.length)
    token_option_error("vocabulary",
                       "vocabulary " + std::to_string(vocabulary) + " is not larger than length " +
                           std::to_string(p.length) + " (zoology's rule V > L)",
                       "use dataset.vocabulary > " + std::to_string(p.length));
}

std::vector<GridPoint> grid(const std::vector<std::int64_t>& lengths, const std::vector<std::int64_t>& pairs,
                            std::int64_t vocabulary, const std::string& prefix) {
  if (lengths.empty() || lengths.size() != pairs.size())
    token_option_error(prefix + "_kv_pairs",
                       prefix + "_seq_len and " + prefix + "_kv_pairs must be non-empty lists of the same length",
                       "give one pair count per sequence length");
  std::vector<GridPoint> points;
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    points.push_back({lengths[i], pairs[i]});
    check_point(points.back(), vocabulary, prefix);
  }
  return points;
}

// The writer of one point: zoology's rules (see the file comment).
ExampleWriter mqar_writer(const GridPoint& p, const MqarOptions& o) {
  const std::int64_t space = (p.length - 2 * p.pairs) / 2;
  std::vector<double> weights(static_cast<std::size_t>(space));
  for (std::int64_t g = 0; g < space; ++g)
    weights[static_cast<std::size_t>(g)] = o.power_a() * std::pow(static_cast<double>(g + 1), o.power_a() - 1.0);
  const std::int64_t v = o.vocabulary(), half = o.vocabulary() / 2;
  const bool fill = o.random_non_queries();
  return [p, v, half, fill, weights](TokenRng& rng, std::int64_t* inputs, std::int64_t* targets) {
    const std::vector<std::int64_t> keys = rng.distinct(p.pairs, 1, half), values = rng.distinct(p.pairs, half, v);
    for (std::int64_t i = 0; i < p.pairs; ++i) {
      inputs[2 * i] = keys[static_cast<std::size_t>(i)];
      inputs[2 * i + 1] = values[static_cast<std::size_t>(i)];
    }
    const std::vector<std::int64_t> gaps = rng.weighted_distinct(p.pairs, weights);
    for (std::int64_t i = 0; i < p.pairs; ++i) {
      const std::int64_t at = 2 * p.pairs + 2 * gaps[static_cast<std::size_t>(i)];
      inputs[at] = keys[static_cast<std::size_t>(i)];
      targets[at] = values[static_cast<std::size_t>(i)];
    }
    if (fill)
      for (std::int64_t t = 0; t < p.length; ++t)
        if (inputs[t] == 0) inputs[t] = rng.below(v);
  };
}

std::string point_name(const GridPoint& p) {
  return "test/L" + std::to_string(p.length) + "-kv" + std::to_string(p.pairs);
}

// The points of every split ("test" is the union of the grid, see the file comment).
struct MqarLayout {
  std::map<std::string, std::vector<TokenPoint>> points;  // train, val, and each grid point
  std::vector<std::string> grid_names;
  DatasetInfo info;
};

MqarLayout mqar_layout(const MqarOptions& o) {
  MqarLayout layout;
  const std::vector<GridPoint> train = grid(o.train_seq_len(), o.train_kv_pairs(), o.vocabulary(), "train");
  const std::vector<GridPoint> test = grid(o.test_seq_len(), o.test_kv_pairs(), o.vocabulary(), "test");
  if (o.train_examples().size() != train.size())
    token_option_error("train_examples", "train_examples must give one count per training point",
                       "use " + std::to_string(train.size()) + " counts");
  std::int64_t longest = 0;
  for (std::size_t i = 0; i < train.size(); ++i) {
    layout.points["train"].push_back({train[i].length, o.train_examples()[i], mqar_writer(train[i], o)});
    if (o.val_examples() > 0)
      layout.points["val"].push_back({train[i].length, o.val_examples(), mqar_writer(train[i], o)});
    longest = std::max(longest, train[i].length);
  }
  for (const GridPoint& p : test) {
    const std::string name = point_name(p);
    if (layout.points.count(name))
      token_option_error("test_kv_pairs", "the test grid lists " + name + " twice", "list each point once");
    layout.points[name] = {{p.length, o.test_examples(), mqar_writer(p, o)}};
    layout.grid_names.push_back(name);
    longest = std::max(longest, p.length);
  }
  DatasetInfo& info = layout.info;
  info.task = "recall";
  info.vocabulary = o.vocabulary();
  info.length = longest;
  info.extra_test_splits = layout.grid_names;
  info.token_names.push_back("<0>");
  for (std::int64_t id = 1; id < o.vocabulary(); ++id)
    info.token_names.push_back(id < o.vocabulary() / 2 ? "k" + std::to_string(id)
                                                       : "v" + std::to_string(id - o.vocabulary() / 2));
  return layout;
}

DatasetPlan plan_mqar(const ConfigNode& params) {
  const MqarLayout layout = mqar_layout(bind_dataset_options(mqar_schema(), params));
  std::map<std::string, std::vector<TokenPoint>> points = layout.points;
  for (const std::string& name : layout.grid_names)
    points["test"].insert(points["test"].end(), layout.points.at(name).begin(), layout.points.at(name).end());
  DatasetPlan plan = token_plan(layout.info, points);
  plan.more_data_hint = "more training sequences: dataset.train_examples";
  return plan;
}
[[maybe_unused]] const bool BLOCKLAB_UNIQUE(planner_registered_) = register_dataset_planner("synthetic/mqar",
                                                                                            plan_mqar);

std::shared_ptr<Dataset> make_mqar(const ConfigNode& params, const DatasetArgs&) {
  const MqarOptions o = bind_dataset_options(mqar_schema(), params);
  const MqarLayout layout = mqar_layout(o);
  std::map<std::string, Split> splits =
      generate_splits(layout.points, static_cast<std::uint64_t>(o.seed()), kMqarSalt, layout.info.length);
  std::vector<Split> grid_splits;
  for (const std::string& name : layout.grid_names) grid_splits.push_back(splits.at(name));
  splits["test"] = concat_splits(grid_splits);
  return std::make_shared<TokenDataset>("synthetic/mqar", layout.info, std::move(splits),
                                        token_identity("synthetic/mqar", mqar_schema().schema(), params));
}

BLOCKLAB_REGISTER(dataset_registry(),
                  BLOCKLAB_ENTRY("synthetic/mqar")
                      .summary("multi-query associative recall (zoology's MQAR): recall the value of each key queried "
                               "after the key-value pairs; test grid of lengths x pairs")
                      .paper("Zoology: Measuring and Improving Recall in Efficient Language Models (Arora et al. "
                             "2023), arXiv:2312.04927")
                      .equation("x = k1 v1 ... kn vn, then k_i at 2n + 2 g_i (p(g) ∝ a (g+1)^(a-1)), noise elsewhere; "
                                "target at k_i's query = v_i")
                      .schema(mqar_schema().schema())
                      .example("{vocabulary: 64, train_seq_len: [16], train_kv_pairs: [4], train_examples: [8], "
                               "val_examples: 4, test_seq_len: [16, 32], test_kv_pairs: [2, 8], test_examples: 4}"),
                  make_mqar);

}  // namespace
}  // namespace blocklab
