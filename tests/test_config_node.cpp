#include <catch2/catch.hpp>

#include "registry/config_error.h"
#include "registry/yaml_io.h"

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
