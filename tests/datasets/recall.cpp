// The recall datasets (datasets/synthetic/): synthetic/mqar, synthetic/induction and
// synthetic/selective-copy. Every answer is checked by re-reading the sequence, independently of
// the generators' bookkeeping; plus determinism per seed, distinct streams per split and seed,
// padding and lengths, plans that match the data, and the option rules.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "datasets/dataset.h"
#include "datasets/synthetic/token_task.h"
#include "golden.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

std::shared_ptr<Dataset> load(const std::string& yaml) {
  return dataset_registry().create(parse_yaml(yaml, "test"), DatasetArgs{0});
}

const char* const kMqar =
    "{type: synthetic/mqar, vocabulary: 128, train_seq_len: [16, 32], train_kv_pairs: [4, 8], "
    "train_examples: [40, 30], val_examples: 10, test_seq_len: [16, 32, 64], test_kv_pairs: [2, 8, 16], "
    "test_examples: 20, seed: 3}";

// Row r of a split as vectors: its valid inputs and targets; checks the padding after them.
struct Row {
  std::vector<std::int64_t> x, y;
};
Row row(const Split& s, std::int64_t r) {
  const std::int64_t n = s.lengths[r].item<std::int64_t>();
  const std::int64_t width = s.inputs.size(1);
  REQUIRE(n >= 1);
  REQUIRE(n <= width);
  Row out;
  for (std::int64_t t = 0; t < width; ++t) {
    const std::int64_t x = s.inputs[r][t].item<std::int64_t>(), y = s.targets[r][t].item<std::int64_t>();
    if (t < n) {
      out.x.push_back(x);
      out.y.push_back(y);
    } else {
      CHECK(x == 0);  // right padding
      CHECK(y == kIgnoreTarget);
    }
  }
  return out;
}

std::vector<std::int64_t> scored_positions(const Row& r) {
  std::vector<std::int64_t> at;
  for (std::size_t t = 0; t < r.y.size(); ++t)
    if (r.y[t] != kIgnoreTarget) at.push_back(static_cast<std::int64_t>(t));
  return at;
}

// MQAR, re-read: the pairs open the sequence (keys distinct in [1, V/2), values in [V/2, V));
// every key is queried once, at an even offset after the pairs, and its target is the value
// that followed the key in the pairs. Returns the query gaps.
std::vector<std::int64_t> check_mqar_row(const Row& r, std::int64_t vocabulary) {
  const std::vector<std::int64_t> queries = scored_positions(r);
  const auto kv = static_cast<std::int64_t>(queries.size());  // each key is queried once
  REQUIRE(kv >= 1);
  REQUIRE(4 * kv <= static_cast<std::int64_t>(r.x.size()));
  std::map<std::int64_t, std::int64_t> pairs;
  for (std::int64_t i = 0; i < kv; ++i) {
    const std::int64_t k = r.x[2 * i], v = r.x[2 * i + 1];
    CHECK(k >= 1);
    CHECK(k < vocabulary / 2);
    CHECK(v >= vocabulary / 2);
    CHECK(v < vocabulary);
    CHECK(pairs.count(k) == 0);  // keys distinct
    pairs[k] = v;
  }
  std::set<std::int64_t> queried;
  std::vector<std::int64_t> gaps;
  for (std::int64_t t : queries) {
    CHECK(t >= 2 * kv);
    CHECK((t - 2 * kv) % 2 == 0);
    CHECK(t <= static_cast<std::int64_t>(r.x.size()) - 2);
    const std::int64_t key = r.x[static_cast<std::size_t>(t)];
    REQUIRE(pairs.count(key) == 1);
    CHECK(r.y[static_cast<std::size_t>(t)] == pairs[key]);
    queried.insert(key);
    gaps.push_back((t - 2 * kv) / 2);
  }
  CHECK(queried.size() == pairs.size());
  return gaps;
}

bool same(const Split& a, const Split& b) {
  return a.inputs.equal(b.inputs) && a.targets.equal(b.targets) && a.lengths.equal(b.lengths);
}

}  // namespace

TEST_CASE("recall: mqar answers are the values paired with the queried keys", "[recall]") {
  const auto data = load(kMqar);
  const DatasetInfo info = data->info();
  CHECK(info.task == "recall");
  CHECK(info.vocabulary == 128);
  CHECK(info.length == 64);
  CHECK(info.extra_test_splits == std::vector<std::string>{"test/L16-kv2", "test/L32-kv8", "test/L64-kv16"});
  CHECK(info.token_names.size() == 128);
  CHECK(info.token_names[1] == "k1");
  CHECK(info.token_names[64] == "v0");
  for (const std::string name : {"train", "val", "test", "test/L16-kv2", "test/L32-kv8", "test/L64-kv16"}) {
    INFO("split " << name);
    const Split& s = data->split(name);
    CHECK(s.inputs.sizes() == torch::IntArrayRef{s.size(), 64});
    for (std::int64_t r = 0; r < s.size(); ++r) check_mqar_row(row(s, r), 128);
  }
  // The grid point's rows: its length and pairs.
  const Split& point = data->split("test/L32-kv8");
  CHECK(point.size() == 20);
  CHECK(point.lengths.eq(32).all().item<bool>());
  CHECK(point.targets.ne(kIgnoreTarget).sum(1).eq(8).all().item<bool>());
  // "test" is the union of the grid points, in order.
  const Split& test = data->split("test");
  CHECK(test.size() == 60);
  CHECK(test.inputs.slice(0, 20, 40).equal(point.inputs));
  CHECK(data->split("train").size() == 70);
  CHECK(data->split("val").size() == 20);
}

TEST_CASE("recall: mqar fills the gaps with noise, or zeros without random_non_queries", "[recall]") {
  const auto data = load(
      "{type: synthetic/mqar, vocabulary: 64, train_seq_len: [32], train_kv_pairs: [4], train_examples: [50], "
      "test_seq_len: [32], test_kv_pairs: [4], test_examples: 5, random_non_queries: false}");
  const Split& s = data->split("train");
  for (std::int64_t r = 0; r < s.size(); ++r) {
    const Row x = row(s, r);
    check_mqar_row(x, 64);
    for (std::size_t t = 8; t < x.x.size(); ++t)
      if (x.y[t] == kIgnoreTarget) CHECK(x.x[t] == 0);
  }
  const auto noisy_data = load(kMqar);
  const Split& noisy = noisy_data->split("train");
  CHECK(noisy.inputs.slice(1, 8, 16).eq(0).to(torch::kFloat).mean().item<double>() < 0.1);
}

TEST_CASE("recall: mqar query gaps follow the power law (near queries likelier than with power_a = 1)", "[recall]") {
  const auto gaps_mean = [](const std::string& a) {
    const auto data = load(
        "{type: synthetic/mqar, vocabulary: 256, train_seq_len: [128], train_kv_pairs: [4], "
        "train_examples: [400], test_seq_len: [16], test_kv_pairs: [2], test_examples: 1, "
        "power_a: " +
        a + "}");
    const Split& s = data->split("train");
    double sum = 0, n = 0;
    for (std::int64_t r = 0; r < s.size(); ++r)
      for (std::int64_t g : check_mqar_row(row(s, r), 256)) {
        CHECK(g < 60);  // (128 - 8) / 2 gaps
        sum += static_cast<double>(g), n += 1;
      }
    return sum / n;
  };
  const double uniform = gaps_mean("1.0"), power = gaps_mean("0.01");
  CHECK(uniform == Approx(29.5).margin(3.0));  // mean of U{0..59}
  CHECK(power < 0.75 * uniform);
}

TEST_CASE("recall: generators are deterministic per seed and differ across seeds and splits", "[recall]") {
  const std::string base = kMqar;
  const auto a = load(base), b = load(base);
  for (const std::string name : {"train", "val", "test"}) CHECK(same(a->split(name), b->split(name)));
  CHECK(a->fingerprint() == b->fingerprint());
  std::string other = base;
  other.replace(other.find("seed: 3"), 7, "seed: 4");
  const auto c = load(other);
  CHECK_FALSE(same(a->split("train"), c->split("train")));
  CHECK(a->fingerprint() != c->fingerprint());
  // train and val hold the same points but different streams.
  CHECK_FALSE(a->split("train").inputs.slice(0, 0, 10).equal(a->split("val").inputs.slice(0, 0, 10)));
  for (const char* yaml : {"{type: synthetic/induction, seq_len: 24, train_examples: 20, test_examples: 20}",
                           "{type: synthetic/selective-copy, seq_len: 40, train_examples: 20, test_examples: 20}"}) {
    INFO(yaml);
    const auto x = load(yaml), y = load(yaml);
    CHECK(same(x->split("train"), y->split("train")));
    CHECK(x->fingerprint() == y->fingerprint());
    CHECK_FALSE(x->split("train").inputs.equal(x->split("test").inputs));
  }
}

TEST_CASE("recall: induction answers the token that followed the trigger's first occurrence", "[recall]") {
  const auto data = load(
      "{type: synthetic/induction, vocabulary: 10, seq_len: 20, test_seq_len: [40], "
      "train_examples: 200, val_examples: 10, test_examples: 30}");
  const DatasetInfo info = data->info();
  CHECK(info.length == 40);
  CHECK(info.extra_test_splits == std::vector<std::string>{"test/L40"});
  CHECK(info.token_names.back() == "<trigger>");
  std::set<std::int64_t> answer_at;
  for (const std::string name : {"train", "val", "test", "test/L40"}) {
    INFO("split " << name);
    const Split& s = data->split(name);
    const std::int64_t expected_length = name == "test/L40" ? 40 : 20;
    for (std::int64_t r = 0; r < s.size(); ++r) {
      const Row x = row(s, r);
      REQUIRE(static_cast<std::int64_t>(x.x.size()) == expected_length);
      const std::vector<std::int64_t> scored = scored_positions(x);
      REQUIRE(scored == std::vector<std::int64_t>{expected_length - 1});
      std::vector<std::int64_t> triggers;
      for (std::size_t t = 0; t < x.x.size(); ++t) {
        CHECK(x.x[t] >= 0);
        CHECK(x.x[t] <= 9);
        if (x.x[t] == 9) triggers.push_back(static_cast<std::int64_t>(t));
      }
      REQUIRE(triggers.size() == 2);
      CHECK(triggers[1] == expected_length - 1);
      CHECK(triggers[0] <= expected_length - 3);
      CHECK(x.y.back() == x.x[static_cast<std::size_t>(triggers[0] + 1)]);
      answer_at.insert(triggers[0]);
    }
  }
  CHECK(answer_at.size() > 15);  // the first trigger moves
}

TEST_CASE("recall: selective copy answers the data tokens in order at the markers", "[recall]") {
  const auto data = load(
      "{type: synthetic/selective-copy, alphabet: 5, copy_tokens: 4, seq_len: 16, "
      "test_seq_len: [24], train_examples: 200, val_examples: 0, test_examples: 30}");
  const DatasetInfo info = data->info();
  CHECK(info.vocabulary == 7);
  CHECK(info.token_names == std::vector<std::string>{"<noise>", "d1", "d2", "d3", "d4", "d5", "<copy>"});
  CHECK_THROWS_AS(data->split("val"), ConfigError);  // val_examples: 0
  for (const std::string name : {"train", "test", "test/L24"}) {
    INFO("split " << name);
    const Split& s = data->split(name);
    for (std::int64_t r = 0; r < s.size(); ++r) {
      const Row x = row(s, r);
      const auto n = static_cast<std::int64_t>(x.x.size());
      std::vector<std::int64_t> data_tokens;
      for (std::int64_t t = 0; t < n - 4; ++t) {
        CHECK(x.x[static_cast<std::size_t>(t)] != 6);
        if (x.x[static_cast<std::size_t>(t)] != 0) data_tokens.push_back(x.x[static_cast<std::size_t>(t)]);
      }
      REQUIRE(data_tokens.size() == 4);
      const std::vector<std::int64_t> scored = scored_positions(x);
      REQUIRE(scored == std::vector<std::int64_t>{n - 4, n - 3, n - 2, n - 1});
      for (std::int64_t i = 0; i < 4; ++i) {
        CHECK(x.x[static_cast<std::size_t>(n - 4 + i)] == 6);
        CHECK(x.y[static_cast<std::size_t>(n - 4 + i)] == data_tokens[static_cast<std::size_t>(i)]);
        CHECK(data_tokens[static_cast<std::size_t>(i)] >= 1);
        CHECK(data_tokens[static_cast<std::size_t>(i)] <= 5);
      }
    }
  }
}

TEST_CASE("recall: plans give the split sizes and shapes from the options alone", "[recall]") {
  for (const char* yaml :
       {kMqar, "{type: synthetic/induction, seq_len: 24, test_seq_len: [32, 48], train_examples: 20, test_examples: 7}",
        "{type: synthetic/selective-copy, seq_len: 40, val_examples: 0, train_examples: 20, test_examples: 7}"}) {
    INFO(yaml);
    const ConfigNode config = parse_yaml(yaml, "test");
    const std::optional<DatasetPlan> plan = plan_dataset(config);
    REQUIRE(plan);
    const auto data = dataset_registry().create(config, DatasetArgs{0});
    CHECK(plan->info.length == data->info().length);
    CHECK(plan->info.vocabulary == data->info().vocabulary);
    CHECK(plan->info.extra_test_splits == data->info().extra_test_splits);
    for (const auto& [name, size] : plan->split_sizes) {
      INFO(name);
      if (size > 0)
        CHECK(data->split(name).size() == size);
      else
        CHECK_THROWS_AS(data->split(name), ConfigError);
    }
  }
}

TEST_CASE("recall: broken option rules fail naming the option and the fix", "[recall]") {
  const auto error = [](const std::string& yaml) {
    return testing::error_text([&] { plan_dataset(parse_yaml(yaml, "test")); });
  };
  std::string e = error(
      "{type: synthetic/mqar, vocabulary: 128, train_seq_len: [16], train_kv_pairs: [5], "
      "train_examples: [4]}");
  CHECK(e.find("dataset.train_kv_pairs") != std::string::npos);
  CHECK(e.find("use at most 4 pairs") != std::string::npos);
  e = error("{type: synthetic/mqar, vocabulary: 32, train_seq_len: [64], train_kv_pairs: [4], train_examples: [4]}");
  CHECK(e.find("dataset.vocabulary") != std::string::npos);
  e = error("{type: synthetic/mqar, train_seq_len: [64, 32], train_kv_pairs: [4]}");
  CHECK(e.find("same length") != std::string::npos);
  e = error("{type: synthetic/mqar, train_seq_len: [63], train_kv_pairs: [4], train_examples: [4]}");
  CHECK(e.find("odd") != std::string::npos);
  e = error("{type: synthetic/selective-copy, copy_tokens: 16, seq_len: 20}");
  CHECK(e.find("dataset.seq_len") != std::string::npos);
  CHECK(e.find(">= 2 * copy_tokens = 32") != std::string::npos);
  e = error("{type: synthetic/induction, seq_len: 2}");
  CHECK(e.find("dataset.seq_len") != std::string::npos);
  e = testing::error_text([] { load(kMqar)->split("tset"); });
  CHECK(e.find("did you mean") != std::string::npos);
  CHECK(e.find("'test'") != std::string::npos);
}

TEST_CASE("recall: the token stream samples uniformly and by weight without replacement", "[recall]") {
  TokenRng rng(7);
  std::vector<int> first(2, 0), counts(5, 0);
  for (int i = 0; i < 20000; ++i) {
    ++first[static_cast<std::size_t>(rng.weighted_distinct(1, {1.0, 3.0})[0])];
    const std::vector<std::int64_t> d = rng.distinct(3, 10, 15);
    REQUIRE(std::set<std::int64_t>(d.begin(), d.end()).size() == 3);
    for (std::int64_t v : d) ++counts[static_cast<std::size_t>(v - 10)];
  }
  CHECK(first[1] / 20000.0 == Approx(0.75).margin(0.015));
  for (int c : counts) CHECK(c / 60000.0 == Approx(0.2).margin(0.01));
  // Without replacement: after the heavy index, the light one (numpy's successive draws).
  const std::vector<std::int64_t> both = TokenRng(1).weighted_distinct(2, {1.0, 3.0});
  CHECK(std::set<std::int64_t>(both.begin(), both.end()) == std::set<std::int64_t>{0, 1});
}

}  // namespace BLOCKLAB_TEST_FILE
