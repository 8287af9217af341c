// synthetic/listops: labels checked by an evaluator written here (a stack over the token
// names, not the generator's evaluation), lengths, depth and arguments within the options,
// determinism per seed, disjoint splits, the plan, and the errors for impossible options.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <set>
#include <vector>

#include "datasets/synthetic/listops.h"
#include "golden.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

// What the evaluator finds in one example.
struct Parsed {
  int value = -1;
  std::int64_t depth = 0;     // levels of the tree (a digit alone: 1)
  std::int64_t min_args = 0;  // fewest and most arguments of an operator
  std::int64_t max_args = 0;
  std::set<std::string> operators;
};

// The value of `op` on `args`, by the definitions of ListOps (Nangia & Bowman 2018): median as
// numpy's (mean of the two middle values for an even count), truncated to an integer.
int operate(const std::string& op, std::vector<int> args) {
  std::sort(args.begin(), args.end());
  if (op == "[MIN") return args.front();
  if (op == "[MAX") return args.back();
  if (op == "[SM") {
    int sum = 0;
    for (int a : args) sum += a;
    return sum % 10;
  }
  REQUIRE(op == "[MED");
  const std::size_t n = args.size();
  const double median = n % 2 ? args[n / 2] : 0.5 * (args[n / 2 - 1] + args[n / 2]);
  return static_cast<int>(median);
}

// Evaluates the tokens (by name) with a stack of open operators; fails on a malformed sequence.
Parsed evaluate(const std::vector<std::string>& tokens) {
  struct Frame {
    std::string op;
    std::vector<int> args;
  };
  std::vector<Frame> open;
  Parsed p;
  p.min_args = 1 << 30;
  for (const std::string& t : tokens) {
    int value = -1;
    if (t.size() == 1 && t[0] >= '0' && t[0] <= '9') {
      value = t[0] - '0';
      p.depth = std::max<std::int64_t>(p.depth, static_cast<std::int64_t>(open.size()) + 1);
    } else if (t == "]") {
      REQUIRE(!open.empty());
      const Frame f = open.back();
      open.pop_back();
      const auto n = static_cast<std::int64_t>(f.args.size());
      p.min_args = std::min(p.min_args, n), p.max_args = std::max(p.max_args, n);
      value = operate(f.op, f.args);
    } else {
      REQUIRE(t.rfind("[", 0) == 0);
      open.push_back({t, {}});
      p.operators.insert(t);
      continue;
    }
    if (open.empty()) {
      REQUIRE(p.value == -1);  // one expression: nothing after its end
      p.value = value;
    } else {
      open.back().args.push_back(value);
    }
  }
  REQUIRE(open.empty());
  return p;
}

// Example i of a split as token names, after checking that the padding starts at its length.
std::vector<std::string> example_tokens(const Split& s, const DatasetInfo& info, std::int64_t i) {
  const std::int64_t length = s.lengths[i].item<std::int64_t>();
  const torch::Tensor row = s.inputs[i].to(torch::kLong);
  CHECK(row.slice(0, length).eq(0).all().item<bool>());
  CHECK(row.slice(0, 0, length).ne(0).all().item<bool>());
  std::vector<std::string> names;
  for (std::int64_t j = 0; j < length; ++j) names.push_back(info.token_names.at(row[j].item<std::int64_t>()));
  return names;
}

ListOpsOptions small(std::int64_t seed = 0) {
  return ListOpsOptions().train_size(300).val_size(60).test_size(60).min_length(20).max_length(200).seed(seed);
}

std::set<std::string> rows(const Split& s) {
  std::set<std::string> out;
  for (std::int64_t i = 0; i < s.size(); ++i) {
    const torch::Tensor r = s.inputs[i].contiguous();
    out.emplace(static_cast<const char*>(r.data_ptr()), static_cast<std::size_t>(r.nbytes()));
  }
  return out;
}

}  // namespace

TEST_CASE("listops: every label is the value an independent evaluator computes from the tokens", "[seqcls]") {
  const auto [options, name] =
      GENERATE(std::make_pair(small(), "LRA depth and arguments"), std::make_pair(ListOpsOptions()
                                                                                      .train_size(400)
                                                                                      .val_size(0)
                                                                                      .test_size(50)
                                                                                      .min_length(5)
                                                                                      .max_length(60)
                                                                                      .max_depth(3)
                                                                                      .max_args(4)
                                                                                      .seed(7),
                                                                                  "shallow and narrow"));
  INFO(name);
  const ListOps data(options);
  const DatasetInfo info = data.info();
  CHECK(info.task == "classification");
  CHECK(info.length == options.max_length());
  CHECK(info.vocabulary == static_cast<std::int64_t>(info.token_names.size()));
  CHECK(info.num_classes == 10);
  std::int64_t deepest = 0, widest = 0, shortest = options.max_length(), longest = 0;
  std::set<std::string> operators;
  std::set<std::int64_t> labels;
  for (const char* split : {"train", "val", "test"}) {
    const Split& s = data.split(split);
    REQUIRE(s.inputs.sizes() == torch::IntArrayRef{s.size(), options.max_length()});
    for (std::int64_t i = 0; i < s.size(); ++i) {
      const Parsed p = evaluate(example_tokens(s, info, i));
      INFO(split << " example " << i);
      REQUIRE(p.value == s.targets[i].item<std::int64_t>());
      CHECK(p.min_args >= 2);
      CHECK(p.max_args <= options.max_args());
      CHECK(p.depth <= options.max_depth());
      deepest = std::max(deepest, p.depth), widest = std::max(widest, p.max_args);
      shortest = std::min(shortest, s.lengths[i].item<std::int64_t>());
      longest = std::max(longest, s.lengths[i].item<std::int64_t>());
      operators.insert(p.operators.begin(), p.operators.end());
      labels.insert(p.value);
    }
  }
  CHECK(shortest >= options.min_length());
  CHECK(longest <= options.max_length());
  // The limits are reached, so the checks above can fail.
  CHECK(deepest == options.max_depth());
  CHECK(widest == options.max_args());
  CHECK(operators == std::set<std::string>{"[MIN", "[MAX", "[MED", "[SM"});
  CHECK(labels.size() == 10);
}

TEST_CASE("listops: the same seed generates the same splits, another seed others; no expression is in two splits",
          "[seqcls]") {
  const ListOps a(small()), b(small()), c(small(1));
  for (const char* split : {"train", "val", "test"}) {
    INFO(split);
    for (auto part : {&Split::inputs, &Split::targets, &Split::lengths})
      CHECK(torch::equal(a.split(split).*part, b.split(split).*part));
    CHECK_FALSE(torch::equal(a.split(split).inputs, c.split(split).inputs));
  }
  CHECK(a.fingerprint() == b.fingerprint());
  CHECK(a.fingerprint() != c.fingerprint());

  const std::set<std::string> train = rows(a.split("train")), val = rows(a.split("val")), test = rows(a.split("test"));
  CHECK(train.size() == 300);  // and no duplicates within a split
  CHECK(val.size() == 60);
  CHECK(test.size() == 60);
  std::set<std::string> all = train;
  all.insert(val.begin(), val.end());
  all.insert(test.begin(), test.end());
  CHECK(all.size() == 420);

  // The test split does not depend on the sizes of the others.
  const ListOps more(small().train_size(500).val_size(10));
  CHECK(torch::equal(more.split("test").inputs, a.split("test").inputs));
  CHECK(more.fingerprint() != a.fingerprint());
  // Model inputs: int64 ids of the same values.
  const torch::Tensor raw = a.split("val").inputs.slice(0, 0, 4);
  const torch::Tensor ids = a.prepare(raw, nullptr);
  CHECK(ids.scalar_type() == torch::kLong);
  CHECK(torch::equal(ids, raw.to(torch::kLong)));
}

TEST_CASE("listops: registered with its schema; the plan from the config alone matches the data", "[seqcls]") {
  const EntryInfo& entry = dataset_registry().info("synthetic/listops");
  CHECK(entry.paper.find("arXiv:2011.04006") != std::string::npos);
  CHECK(entry.schema.names() == std::vector<std::string>{"train_size", "val_size", "test_size", "min_length",
                                                         "max_length", "max_depth", "max_args", "seed"});
  const ConfigNode node = parse_yaml(
      "{type: synthetic/listops, train_size: 40, val_size: 0, test_size: 9, min_length: 10, max_length: 50}", "t.yaml");
  const std::optional<DatasetPlan> plan = plan_dataset(node);
  REQUIRE(plan);
  const auto data = dataset_registry().create(node, DatasetArgs{});
  for (const char* split : {"train", "val", "test"}) CHECK(plan->split_sizes.at(split) == data->split(split).size());
  CHECK(plan->info.length == data->info().length);
  CHECK(plan->info.length == 50);
  CHECK(plan->info.vocabulary == data->info().vocabulary);
  CHECK(data->split("val").size() == 0);
}

TEST_CASE("listops: impossible or out-of-range options are ConfigErrors naming the option", "[seqcls]") {
  const auto message = [](const ListOpsOptions& o) { return testing::error_text([&] { ListOps data(o); }); };
  CHECK(message(small().min_length(300)).find("dataset.min_length: min_length 300 is larger than max_length 200") !=
        std::string::npos);
  // Two levels of at most two arguments: [OP d d ] has 4 tokens.
  const std::string unreachable = message(small().max_depth(2).max_args(2).min_length(5));
  CHECK(unreachable.find("no tree with max_depth 2 and max_args 2 has min_length 5 tokens (the longest has 4)") !=
        std::string::npos);
  CHECK(message(small().max_args(1)).find("dataset.max_args") != std::string::npos);
  // The planner refuses the same before anything is generated.
  const ConfigNode node = parse_yaml("{type: synthetic/listops, min_length: 3000}", "t.yaml");
  CHECK(testing::error_text([&] { plan_dataset(node); }).find("dataset.min_length") != std::string::npos);
  // More examples than there are distinct expressions (one level: the ten digits): an error
  // after a bounded number of draws, not an endless search.
  const std::string exhausted = message(small().max_depth(1).min_length(1).max_length(1));
  CHECK(exhausted.find("dataset.min_length: only 10 of ") != std::string::npos);
  CHECK(exhausted.find(" ListOps trees had 1..1 tokens and were new") != std::string::npos);
}

TEST_CASE("listops: generation time at the size of LRA", "[.][seqcls-bench]") {
  const auto start = std::chrono::steady_clock::now();
  const ListOps data(ListOpsOptions{});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "96000/2000/2000 expressions of 500..2000 tokens: " << seconds << " s, " << data.attempts_per_example()
            << " trees drawn per tree kept\n";
}

}  // namespace BLOCKLAB_TEST_FILE
