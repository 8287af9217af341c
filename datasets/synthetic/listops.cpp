#include "datasets/synthetic/listops.h"

#include <algorithm>
#include <numeric>
#include <unordered_set>
#include <vector>

#include "datasets/dataset_options.h"
#include "datasets/idx_file.h"

namespace blocklab {
namespace {

constexpr double kValueP = 0.25;        // LRA's VALUE_P: a node below max_depth is an operator with this probability
constexpr std::int64_t kOperators = 4;  // MIN, MAX, MED, SM (LRA's OPERATORS, in order)
constexpr std::uint64_t kListopsSplitSalt = 0x11570;  // derive_seed label of a split's generator
// Rejection sampling gives up when fewer than one tree in kGiveUpRatio fits (after kGiveUpAfter
// draws): the lengths are then almost out of reach, and generating would take hours.
constexpr std::int64_t kGiveUpAfter = 1000000, kGiveUpRatio = 2000;

// SplitMix64 as a stream (Steele, Lea, Flood 2014): portable, unlike the distributions of <random>.
class Stream {
 public:
  explicit Stream(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1), like random.random()
  int below(std::int64_t n) { return static_cast<int>(uniform() * static_cast<double>(n)); }

 private:
  std::uint64_t state_;
};

// The value of an operator on its arguments (LRA's to_value).
int apply(int op, std::vector<int>& args) {
  switch (op + kListOpsMin) {
    case kListOpsMin:
      return *std::min_element(args.begin(), args.end());
    case kListOpsMax:
      return *std::max_element(args.begin(), args.end());
    case kListOpsMed: {  // int(np.median(args)): the mean of the two middle values, truncated, for an even count
      std::sort(args.begin(), args.end());
      const std::size_t half = args.size() / 2;
      return args.size() % 2 == 1 ? args[half] : (args[half - 1] + args[half]) / 2;
    }
    default:
      return std::accumulate(args.begin(), args.end(), 0) % 10;
  }
}

// Draws LRA trees as token sequences, computing their values on the way.
class TreeWriter {
 public:
  TreeWriter(const ListOpsOptions& o, std::uint64_t seed)
      : stream_(seed),
        max_depth_(o.max_depth()),
        max_args_(o.max_args()),
        max_length_(o.max_length()),
        args_(static_cast<std::size_t>(o.max_depth()) + 1) {
    tokens_.reserve(static_cast<std::size_t>(max_length_));
  }
  // One tree into tokens(); its value, or -1 when it grew past max_length (abandoned there).
  int draw() {
    tokens_.clear();
    return node(1);
  }
  const std::vector<std::uint8_t>& tokens() const { return tokens_; }

 private:
  bool put(int token) {
    if (static_cast<std::int64_t>(tokens_.size()) >= max_length_) return false;
    tokens_.push_back(static_cast<std::uint8_t>(token));
    return true;
  }
  int node(std::int64_t depth) {
    if (depth >= max_depth_ || stream_.uniform() > kValueP) {
      const int digit = stream_.below(10);
      return put(kListOpsDigit0 + digit) ? digit : -1;
    }
    const int count = 2 + stream_.below(max_args_ - 1);  // random.randint(2, max_args)
    const int op = stream_.below(kOperators);
    if (!put(kListOpsMin + op)) return -1;
    std::vector<int>& args = args_[static_cast<std::size_t>(depth)];
    args.clear();
    for (int i = 0; i < count; ++i) {
      const int value = node(depth + 1);
      if (value < 0) return -1;
      args.push_back(value);
    }
    return put(kListOpsClose) ? apply(op, args) : -1;
  }

  Stream stream_;
  std::int64_t max_depth_, max_args_, max_length_;
  std::vector<std::vector<int>> args_;  // the arguments being collected at each depth
  std::vector<std::uint8_t> tokens_;
};

// The longest tree max_depth and max_args allow (saturating: only compared with max_length).
std::int64_t longest_tree(const ListOpsOptions& o) {
  std::int64_t longest = 1;  // a digit at the deepest level
  for (std::int64_t level = 1; level < o.max_depth() && longest <= o.max_length(); ++level)
    longest = 2 + o.max_args() * longest;
  return longest;
}

// Ranges, then the rules between values.
void check_options(const ListOpsOptions& o) {
  const Schema& schema = listops_schema().schema();
  for (const auto& [name, value] : {std::pair<const char*, std::int64_t>{"train_size", o.train_size()},
                                    {"val_size", o.val_size()},
                                    {"test_size", o.test_size()},
                                    {"min_length", o.min_length()},
                                    {"max_length", o.max_length()},
                                    {"max_depth", o.max_depth()},
                                    {"max_args", o.max_args()},
                                    {"seed", o.seed()}})
    check_dataset_option_range(schema, name, value);
  if (o.min_length() > o.max_length())
    throw ConfigError(
        "min_length " + std::to_string(o.min_length()) + " is larger than max_length " + std::to_string(o.max_length()),
        {}, "dataset.min_length", {"use dataset.min_length <= dataset.max_length"});
  if (longest_tree(o) < o.min_length())
    throw ConfigError("no tree with max_depth " + std::to_string(o.max_depth()) + " and max_args " +
                          std::to_string(o.max_args()) + " has min_length " + std::to_string(o.min_length()) +
                          " tokens (the longest has " + std::to_string(longest_tree(o)) + ")",
                      {}, "dataset.min_length",
                      {"lower dataset.min_length, or raise dataset.max_depth or dataset.max_args"});
}

// `count` new trees with lengths in [min_length, max_length] from the stream of `seed`; their
// token hashes go into `seen`. Adds the trees drawn to `attempts`.
Split draw_split(const ListOpsOptions& o, std::int64_t count, std::uint64_t seed,
                 std::unordered_set<std::uint64_t>& seen, std::int64_t& attempts) {
  Split split{torch::zeros({count, o.max_length()}, torch::kUInt8), torch::empty({count}, torch::kLong),
              torch::empty({count}, torch::kLong)};
  std::uint8_t* inputs = split.inputs.data_ptr<std::uint8_t>();
  std::int64_t* targets = split.targets.data_ptr<std::int64_t>();
  std::int64_t* lengths = split.lengths.data_ptr<std::int64_t>();
  TreeWriter writer(o, seed);
  std::int64_t kept = 0, drawn = 0;
  for (; kept < count; ++drawn) {
    if (drawn > kGiveUpAfter && drawn > kGiveUpRatio * (kept + 1))
      throw ConfigError("only " + std::to_string(kept) + " of " + std::to_string(drawn) + " ListOps trees had " +
                            std::to_string(o.min_length()) + ".." + std::to_string(o.max_length()) +
                            " tokens and were new",
                        {}, "dataset.min_length",
                        {"widen the lengths (dataset.min_length, dataset.max_length) or ask for fewer examples"});
    const int value = writer.draw();
    const std::vector<std::uint8_t>& t = writer.tokens();
    if (value < 0 || static_cast<std::int64_t>(t.size()) < o.min_length() ||
        !seen.insert(fnv1a(t.data(), t.size())).second)
      continue;
    std::copy(t.begin(), t.end(), inputs + kept * o.max_length());
    targets[kept] = value;
    lengths[kept] = static_cast<std::int64_t>(t.size());
    ++kept;
  }
  attempts += drawn;
  return split;
}

}  // namespace

const OptionsSchema<ListOpsOptions>& listops_schema() {
  static const OptionsSchema<ListOpsOptions> schema = [] {
    OptionsSchema<ListOpsOptions> s;
    const auto size = [](ParamSpec& spec) { spec.min = 0, spec.max = 10000000; };
    size(BLOCKLAB_OPTION(s, train_size, "training examples (LRA: 96000)"));
    size(BLOCKLAB_OPTION(s, val_size, "validation examples (LRA: 2000); 0 = none"));
    size(BLOCKLAB_OPTION(s, test_size, "test examples (LRA: 2000)"));
    auto& min_length = BLOCKLAB_OPTION(s, min_length, "fewest tokens of an expression (LRA: more than 500)");
    min_length.min = 1, min_length.max = 1 << 20;
    auto& max_length =
        BLOCKLAB_OPTION(s, max_length, "most tokens of an expression, the padded length (LRA: under 2000)");
    max_length.min = 1, max_length.max = 1 << 20;
    auto& depth = BLOCKLAB_OPTION(s, max_depth, "levels of the expression tree, the root's level 1 (LRA: 10)");
    depth.min = 1, depth.max = 64;
    auto& args = BLOCKLAB_OPTION(s, max_args, "most arguments of an operator, at least 2 (LRA: 10)");
    args.min = 2, args.max = 255;
    BLOCKLAB_OPTION(s, seed, "seed of the generator (each split's stream derives from it)").min = 0;
    return s;
  }();
  return schema;
}

DatasetInfo listops_info(const ListOpsOptions& options) {
  DatasetInfo info;
  info.length = options.max_length();
  info.vocabulary = kListOpsVocabulary;
  info.token_names = {"<pad>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "[MIN", "[MAX", "[MED", "[SM", "]"};
  info.num_classes = 10;
  info.class_names = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  return info;
}

ListOps::ListOps(ListOpsOptions options) : options_(std::move(options)) {
  check_options(options_);
  const ListOpsOptions& o = options_;
  std::unordered_set<std::uint64_t> seen;
  seen.reserve(static_cast<std::size_t>(o.train_size() + o.val_size() + o.test_size()));
  std::int64_t attempts = 0;
  const auto seed = static_cast<std::uint64_t>(o.seed());
  test_ = draw_split(o, o.test_size(), derive_seed(seed, kListopsSplitSalt, 1), seen, attempts);
  val_ = draw_split(o, o.val_size(), derive_seed(seed, kListopsSplitSalt, 2), seen, attempts);
  train_ = draw_split(o, o.train_size(), derive_seed(seed, kListopsSplitSalt, 3), seen, attempts);
  attempts_per_example_ = static_cast<double>(attempts) / static_cast<double>(std::max<std::size_t>(seen.size(), 1));

  std::uint64_t hash = kFnv1aOffset;
  for (const Split* s : {&test_, &val_, &train_})
    for (const torch::Tensor& t : {s->inputs, s->targets, s->lengths})
      hash = fnv1a(t.data_ptr(), static_cast<std::size_t>(t.nbytes()), hash);
  fingerprint_ = fingerprint_hex(hash);
}

const Split& ListOps::split(const std::string& name) const {
  if (name == "train") return train_;
  if (name == "val") return val_;
  if (name == "test") return test_;
  throw_unknown_split("synthetic/listops", name);
}

namespace {

DatasetPlan plan_listops(const ConfigNode& params) {
  const ListOpsOptions o = bind_dataset_options(listops_schema(), params);
  check_options(o);
  DatasetPlan plan{listops_info(o), {{"train", o.train_size()}, {"val", o.val_size()}, {"test", o.test_size()}}};
  plan.more_data_hint = "more training data: dataset.train_size";
  plan.train_size_option = "train_size";
  return plan;
}
[[maybe_unused]] const bool BLOCKLAB_UNIQUE(planner_registered_) = register_dataset_planner("synthetic/listops",
                                                                                            plan_listops);

BLOCKLAB_REGISTER(
    dataset_registry(),
    BLOCKLAB_ENTRY("synthetic/listops")
        .summary("ListOps (Long Range Arena): nested MIN/MAX/MED/SM expressions of digits, 10 classes")
        .paper("Long Range Arena: A Benchmark for Efficient Transformers (Tay et al. 2021), "
               "arXiv:2011.04006; ListOps (Nangia & Bowman 2018), arXiv:1804.06028")
        .equation("y = value([OP x_1 ... x_k ]), OP in {MIN, MAX, MED, SM (sum mod 10)}, k in 2..max_args")
        .schema(listops_schema().schema())
        .example("{train_size: 32, val_size: 8, test_size: 8, min_length: 20, max_length: 80}"),
    [](const ConfigNode& params, const DatasetArgs&) -> std::shared_ptr<Dataset> {
      return std::make_shared<ListOps>(bind_dataset_options(listops_schema(), params));
    });

}  // namespace
}  // namespace blocklab
