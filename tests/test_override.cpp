#include <catch2/catch.hpp>

#include "golden.h"
#include "registry/config_error.h"
#include "registry/override.h"

using namespace blocklab;

TEST_CASE("override operators and keys", "[override]") {
  auto o = parse_override("trainer.lr=3e-4");
  CHECK(o.op == Override::Op::Set);
  CHECK(o.key == "trainer.lr");
  CHECK(o.value.is_float());
  CHECK(parse_override("+a.b=1").op == Override::Op::Add);
  CHECK(parse_override("++a.b=1").op == Override::Op::ForceAdd);
  auto del = parse_override("~trainer.warmup");
  CHECK(del.op == Override::Op::Delete);
  CHECK_FALSE(del.has_value);
  auto g = parse_override("model/mixer@encoder.mixer=softmax");
  CHECK(g.key == "model/mixer");
  CHECK(g.package == "encoder.mixer");
  CHECK(g.value.as_string() == "softmax");
  CHECK(g.source().text() == "command line 'model/mixer@encoder.mixer=softmax'");
}

TEST_CASE("override values are typed like Hydra's", "[override]") {
  CHECK(parse_override_value("3").is_int());
  CHECK(parse_override_value("3.5").is_float());
  CHECK(parse_override_value("True").as_bool());
  CHECK(parse_override_value("null").is_null());
  CHECK(parse_override_value("inf").as_double() > 1e308);
  CHECK(parse_override_value("'3'").is_string());
  CHECK(parse_override_value("\"a,b\"").as_string() == "a,b");
  CHECK(parse_override_value("hello world").as_string() == "hello world");
  CHECK(parse_override_value("a\\,b").as_string() == "a,b");
  CHECK(parse_override_value("${trainer.lr}").as_string() == "${trainer.lr}");
  CHECK(parse_override_value("lr_${a.b}_x").as_string() == "lr_${a.b}_x");
  CHECK(parse_override("a=").value.as_string().empty());
  auto list = parse_override_value("[1, 2.5, x, [3], {k: v}]");
  REQUIRE(list.is_sequence());
  CHECK(list.items().size() == 5);
  CHECK(list.items()[0].is_int());
  CHECK(list.items()[3].is_sequence());
  CHECK(list.items()[4].at("k").as_string() == "v");
  auto dict = parse_override_value("{a: 1, b: {c: [1,2]}}");
  CHECK(dict.find_path("b.c.1")->as_int() == 2);
}

TEST_CASE("sweep syntax", "[override]") {
  auto c = parse_override("seed=1,2,3");
  REQUIRE(c.is_sweep());
  CHECK(c.sweep->kind == Sweep::Kind::Choice);
  CHECK(c.sweep->values(c.source()).size() == 3);
  auto r = parse_override("seed=range(0,3)");
  REQUIRE(r.is_sweep());
  auto rv = r.sweep->values(r.source());
  REQUIRE(rv.size() == 3);
  CHECK(rv[2].as_int() == 2);
  auto rf = parse_override("lr=range(0,1,0.25)");
  auto fv = rf.sweep->values(rf.source());
  REQUIRE(fv.size() == 4);
  CHECK(fv[3].as_double() == 0.75);
  CHECK(parse_override("x=range(5,0,-2)").sweep->values({}).size() == 3);
  auto g = parse_override("model.mixer=glob(attention/*)");
  REQUIRE(g.is_sweep());
  CHECK(g.sweep->kind == Sweep::Kind::Glob);
  CHECK(g.sweep->patterns == std::vector<std::string>{"attention/*"});
  // Quoted patterns (what a shell needs for '*') and quoted choices inside functions.
  CHECK(parse_override("model/mixer=glob('*')").sweep->patterns == std::vector<std::string>{"*"});
  CHECK(parse_override("m=glob('attention/*','mask/*')").sweep->patterns ==
        std::vector<std::string>{"attention/*", "mask/*"});
  CHECK(parse_override("x=choice('a b',\"c\")").sweep->choices.size() == 2);
  auto ch = parse_override("x=choice(a,[1,2])");
  CHECK(ch.sweep->choices.size() == 2);
  auto z = parse_override("zip(trainer.lr,trainer.warmup)=[1e-3,100],[3e-4,500]");
  CHECK(z.zip_keys == std::vector<std::string>{"trainer.lr", "trainer.warmup"});
  REQUIRE(z.is_sweep());
  CHECK(z.sweep->values({}).size() == 2);
}

TEST_CASE("malformed overrides are ConfigErrors with the column", "[override]") {
  for (const char* bad : {"a", "=1", "a..b=1", "a=[1,2", "a={x 1}", "a='abc", "a=range(1)", "a=foo(1)",
                          "a=b=c", "zip(a)=[1]", "zip(a,b)=[1],[2,3]", "a=1,,2", "a b=1", "a=(1)", "+zip(a,b)=[1,2]"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_override(bad), ConfigError);
  }
}

TEST_CASE("golden: malformed override", "[golden]") {
  const std::string text = testing::error_text([] { parse_override("trainer.lr=[1e-3,"); });
  const std::string mismatch = testing::golden_mismatch("malformed_override", text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}
