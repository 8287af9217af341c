#include <catch2/catch.hpp>

#include "golden.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

TEST_CASE("plain scalars are typed by the YAML 1.2 core schema", "[config]") {
  CHECK(resolve_plain_scalar("3") == ScalarType::Int);
  CHECK(resolve_plain_scalar("-12") == ScalarType::Int);
  CHECK(resolve_plain_scalar("0x1F") == ScalarType::Int);
  CHECK(resolve_plain_scalar("3e-4") == ScalarType::Float);
  CHECK(resolve_plain_scalar("1.") == ScalarType::Float);
  CHECK(resolve_plain_scalar(".5") == ScalarType::Float);
  CHECK(resolve_plain_scalar(".inf") == ScalarType::Float);
  CHECK(resolve_plain_scalar("true") == ScalarType::Bool);
  CHECK(resolve_plain_scalar("False") == ScalarType::Bool);
  CHECK(resolve_plain_scalar("yes") == ScalarType::String);  // YAML 1.1 booleans are strings
  CHECK(resolve_plain_scalar("~") == ScalarType::Null);
  CHECK(resolve_plain_scalar("null") == ScalarType::Null);
  CHECK(resolve_plain_scalar("1e") == ScalarType::String);
  CHECK(resolve_plain_scalar("attention/softmax") == ScalarType::String);
}

TEST_CASE("YAML loads with types, quoting and file:line provenance", "[config]") {
  const ConfigNode n = parse_yaml("a: 1\nb: '1'\nc:\n  d: 3e-4\n  e: [1, 2.5, x]\nf: null\n", "t.yaml");
  CHECK(n.at("a").is_int());
  CHECK(n.at("a").as_int() == 1);
  CHECK(n.at("b").is_string());
  CHECK(n.at("c").at("d").as_double() == Approx(3e-4));
  CHECK(n.at("c").at("d").source().text() == "t.yaml:4");
  CHECK(n.find_path("c.e.1")->as_double() == 2.5);
  CHECK(n.find_path("c.e.2")->is_string());
  CHECK(n.at("f").is_null());
  CHECK(n.at("b").source().text() == "t.yaml:2");
}

TEST_CASE("typed reads name the value's origin on a type mismatch", "[config]") {
  const ConfigNode n = parse_yaml("lr: fast\n", "t.yaml");
  try {
    (void)n.at("lr").as_double();
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == "t.yaml:1: expected a float, got string 'fast'\n");
  }
}

TEST_CASE("duplicate YAML keys are errors with both lines", "[config]") {
  try {
    (void)parse_yaml("a: 1\nb: 2\na: 3\n", "dup.yaml");
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()).find("dup.yaml:3: duplicate key 'a' (first defined at line 1)") == 0);
  }
}

TEST_CASE("dump_yaml round-trips values and types", "[config]") {
  const std::string text =
      "a: 1\nb: '1'\nc:\n  d: 0.0003\n  e: [1, 2.5, x]\n  empty: {}\nf: null\ng: 'true'\nh: 'a: b'\n"
      "l:\n  - x: 1\n    y: 2\n  - x: 3\n";
  const ConfigNode n = parse_yaml(text, "t.yaml");
  const std::string dumped = dump_yaml(n);
  const ConfigNode back = parse_yaml(dumped, "dump");
  CHECK(back.same_value(n));
  CHECK(back.at("g").is_string());
  CHECK(back.at("b").is_string());
}

TEST_CASE("format_double gives the shortest round-trip text", "[config]") {
  CHECK(format_double(0.0003) == "0.0003");
  CHECK(format_double(1e-5) == "1e-05");
  CHECK(format_double(1.0) == "1.0");
  CHECK(format_double(0.1) == "0.1");
  CHECK(resolve_plain_scalar(format_double(100.0)) == ScalarType::Float);
}

namespace {

std::string yaml_error(const std::string& text) {
  try {
    (void)parse_yaml(text, "t.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

// "a: &a [1,...] / b: &b [*a,...]": `levels` levels of `fanout` aliases each, fanout^levels values.
std::string alias_bomb(int levels, int fanout) {
  std::string doc = "l0: &l0 [x]\n";
  for (int l = 1; l <= levels; ++l) {
    doc += "l" + std::to_string(l) + ": &l" + std::to_string(l) + " [";
    for (int i = 0; i < fanout; ++i) doc += (i ? ", *l" : "*l") + std::to_string(l - 1);
    doc += "]\n";
  }
  return doc;
}

}  // namespace

TEST_CASE("cyclic YAML aliases are errors naming file:line, not a crash", "[config]") {
  CHECK(yaml_error("a: &x [*x]\n").find("t.yaml:1: an alias (*name) refers to a value that contains it") == 0);
  CHECK(yaml_error("a: 1\nb: &y {c: [1, *y]}\n").find("t.yaml:2: an alias") == 0);
  CHECK(yaml_error("&r {a: *r}\n").find("t.yaml:1: an alias") == 0);
  // A shared, acyclic alias is fine.
  const ConfigNode ok = parse_yaml("a: &x {b: 1}\nc: *x\nd: [*x, *x]\n", "t.yaml");
  CHECK(ok.find_path("d.1.b")->as_int() == 1);
}

TEST_CASE("YAML alias expansion is bounded", "[config]") {
  // 10^9 values from a 600-byte file: refused at the limit, quickly and in little memory.
  const std::string bomb = alias_bomb(9, 10);
  CHECK(bomb.size() < 600);
  CHECK(yaml_error(bomb).find("t.yaml:1: the YAML expands to more than 1000000 values") == 0);
  // 10^5 values are fine.
  const ConfigNode n = parse_yaml(alias_bomb(5, 10), "t.yaml");
  CHECK(n.at("l5").items().size() == 10);
}

TEST_CASE("YAML nesting is bounded below the stack's limit", "[config]") {
  const auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  CHECK_NOTHROW(parse_yaml(nested(200), "t.yaml"));
  CHECK(yaml_error(nested(300)).find("t.yaml:1: the YAML nests deeper than 256 levels") == 0);
  CHECK(yaml_error(nested(100000)).find("t.yaml: the YAML nests deeper than 256 levels") == 0);
  std::string block;
  for (int i = 0; i < 400; ++i) block += std::string(static_cast<std::size_t>(i), ' ') + "a:\n";
  CHECK(yaml_error(block).find("the YAML nests deeper than 256 levels") != std::string::npos);
  // Aliases can nest deeper than the text: each level wraps the previous one.
  std::string chain = "l0: &l0 [x]\n";
  for (int l = 1; l <= 300; ++l) chain += "l" + std::to_string(l) + ": &l" + std::to_string(l) + " [*l" + std::to_string(l - 1) + "]\n";
  CHECK(yaml_error(chain).find("the YAML nests deeper than 256 levels") != std::string::npos);
}

TEST_CASE("YAML error lines are exact", "[config]") {
  // An unclosed '[' or '{' is reported where it opens, not where yaml-cpp notices it.
  CHECK(yaml_error("model:\n  width: 64\n  heads: [4, 8\nseed: 1\n").find("t.yaml:3: a '[' has no matching ']'") == 0);
  CHECK(yaml_error("a: {x: 1\nb: 2\n").find("t.yaml:1: a '{' has no matching '}'") == 0);
  CHECK(yaml_error("a: [1, '[', {b: 2}, \"]\"  # [\nc: 1\n").find("t.yaml:1: a '['") == 0);
  CHECK(yaml_error("a: 1\n b: 2\n").find("t.yaml:2:") == 0);
  CHECK(yaml_error("a: 1\nb: c: d\n").find("t.yaml:2:") == 0);
  CHECK(yaml_error("a:\n  - 1\n  b: 2\n").find("t.yaml:3:") == 0);
  CHECK(yaml_error("a: 1\nb: 2\na: 3\n").find("t.yaml:3: duplicate key 'a' (first defined at line 1)") == 0);
}

TEST_CASE("unicode keys and values stay intact", "[config]") {
  const ConfigNode n = parse_yaml("größe: 1\n名前: 'café'\n", "t.yaml");
  CHECK(n.keys() == std::vector<std::string>{"größe", "名前"});
  CHECK(n.at("名前").as_string() == "café");
  CHECK(yaml_error("größe: 1\ngröße: 2\n").find("t.yaml:2: duplicate key 'größe'") == 0);
  CHECK(dump_json(n) == "{\"größe\": 1, \"名前\": \"café\"}\n");
  CHECK(dump_yaml(n) == "größe: 1\n名前: café\n");
}

TEST_CASE("golden: cyclic alias, alias bomb, deep nesting", "[golden]") {
  const std::string text = yaml_error("defaults: []\nlayers: &l\n  - *l\n") + yaml_error(alias_bomb(9, 10)) +
                           yaml_error(std::string(300, '[') + std::string(300, ']'));
  const std::string mismatch = testing::golden_mismatch("yaml_pathological", text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

}  // namespace BLOCKLAB_TEST_FILE
