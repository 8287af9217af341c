#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include "golden.h"
#include "registry/registry.h"
#include "registry/suggest.h"
#include "support_registries.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

TEST_CASE("keys are lowercase family/name with dashes", "[registry]") {
  CHECK(is_valid_key("attention/softmax"));
  CHECK(is_valid_key("mask/rel-pos-2d"));
  CHECK(is_valid_key("classify"));
  CHECK_FALSE(is_valid_key("Attention/softmax"));
  CHECK_FALSE(is_valid_key("attention//x"));
  CHECK_FALSE(is_valid_key("attention/soft_max"));
  CHECK_FALSE(is_valid_key("-x"));
}

TEST_CASE("registries create by key and list by glob", "[registry]") {
  auto& reg = testing::widget_registry();
  const auto w = reg.create(ConfigNode::string("mix/dense"), 0);
  CHECK(w.key == "mix/dense");
  CHECK(w.width == 64);
  ConfigNode params = ConfigNode::map();
  params.set("type", ConfigNode::string("mix/sparse"));
  params.set("width", ConfigNode::integer(8));
  CHECK(reg.create(params, 0).width == 8);
  CHECK(reg.list("mix/*").size() == 2);
  CHECK(reg.list("*/sparse").size() == 1);
  CHECK(reg.list("nothing*").empty());
  CHECK(RegistryIndex::instance().find("testwidget") == &reg);
}

TEST_CASE("unknown keys suggest the nearest names", "[registry]") {
  auto& reg = testing::widget_registry();
  const std::string text = testing::error_text([&] { reg.create(ConfigNode::string("mix/dnese"), 0); });
  CHECK(text.find("unknown testwidget 'mix/dnese'") != std::string::npos);
  CHECK(text.find("did you mean 'mix/dense'?") != std::string::npos);
}

TEST_CASE("did-you-mean and globs", "[registry]") {
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(edit_distance("ab", "ba") == 1);
  CHECK(did_you_mean("lrr", {"lr", "epochs", "warmup"}) == "did you mean 'lr'?");
  CHECK(did_you_mean("zzzzzz", {"lr", "epochs"}).empty());
  CHECK(did_you_mean("softmax", {"attention/softmax", "attention/sigmoid"}) == "did you mean 'attention/softmax'?");
  CHECK(glob_match("attention/*", "attention/softmax"));
  CHECK_FALSE(glob_match("attention/*", "mask/gmm"));
  CHECK(glob_match("*/s?ftmax", "attention/softmax"));
  CHECK(glob_match("mask/[ae]*", "mask/alibi"));
  CHECK_FALSE(glob_match("mask/[!ae]*", "mask/alibi"));
}

TEST_CASE("golden: duplicate registration", "[golden]") {
  // A registry of its own, so the duplicate does not disturb the process-wide index check.
  RegistryIndex& index = RegistryIndex::instance();
  static Registry<int> dup_registry("testdup", "duplicate-registration test");
  dup_registry.add(EntryInfo{"family/name", "first", "", "", {}, "{}", "blocks/first.cpp"},
                   [](const ConfigNode&) { return 1; });
  dup_registry.add(EntryInfo{"family/name", "second", "", "", {}, "{}", "blocks/second.cpp"},
                   [](const ConfigNode&) { return 2; });
  dup_registry.add(EntryInfo{"Bad_Key", "malformed", "", "", {}, "{}", "blocks/third.cpp"},
                   [](const ConfigNode&) { return 3; });
  const std::string text = testing::error_text([&] { index.check(); });
  const std::string mismatch = testing::golden_mismatch("duplicate_registration", text);
  INFO(mismatch);
  CHECK(mismatch.empty());
  CHECK(dup_registry.create(ConfigNode::string("family/name")) == 1);  // the first one stays
}

// The census: every real registration (test-only kinds excluded) against tests/census.txt,
// so that a registration dropped by the linker, or added without a conformance decision,
// fails here.
TEST_CASE("census: the registry holds exactly the checked-in names", "[census]") {
  std::set<std::string> actual;
  for (const RegistryBase* reg : RegistryIndex::instance().all()) {
    if (reg->kind().rfind("test", 0) == 0) continue;
    for (const auto& key : reg->keys())
      if (key.rfind("test/", 0) != 0) actual.insert(reg->kind() + " " + key);
  }
  std::set<std::string> expected;
  std::ifstream in(std::string(BLOCKLAB_TEST_DIR) + "/census.txt");
  REQUIRE(in);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#') expected.insert(line);
  std::ostringstream missing, extra;
  for (const auto& e : expected)
    if (!actual.count(e)) missing << "  " << e << "\n";
  for (const auto& a : actual)
    if (!expected.count(a)) extra << "  " << a << "\n";
  INFO("registered but not in tests/census.txt:\n" << extra.str() << "in tests/census.txt but not registered:\n"
                                                     << missing.str());
  CHECK(actual == expected);
}

}  // namespace BLOCKLAB_TEST_FILE
