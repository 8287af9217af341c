// JSON files through nlohmann-json (experiments/json_io.h, JsonObject): non-finite numbers as
// null plus a "<key>_nonfinite" flag (strict JSON) and back, doubles and 64-bit integers
// bit-exact both ways, keys in insertion order, the one-line layout, messages for corrupt text
// that name the file and the line, files of earlier versions (bare NaN) still read.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "analysis/curves.h"
#include "analysis/run_records.h"
#include "experiments/json_io.h"
#include "experiments/run_files.h"
#include "process_support.h"
#include "registry/config_error.h"

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;
using namespace blocklab;
using Catch::Matchers::Contains;

namespace {

constexpr double kJsonInf = std::numeric_limits<double>::infinity();

std::uint64_t json_bits(double v) {
  std::uint64_t b = 0;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

std::string json_error(const std::string& text, const std::string& file, int line = 0) {
  try {
    parse_json(text, file, line);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("a metrics line with NaN and infinities is strict JSON with a flag per value", "[json]") {
  const std::string line = JsonObject()
                               .set("step", 5)
                               .set("loss", std::nan(""))
                               .set("up", kJsonInf)
                               .set("down", -kJsonInf)
                               .set("diverged", true)
                               .str();
  CHECK(line == R"({"step": 5, "loss": null, "loss_nonfinite": "nan", "up": null, "up_nonfinite": "inf", )"
                R"("down": null, "down_nonfinite": "-inf", "diverged": true})");
  CHECK(line.find("NaN") == std::string::npos);
  CHECK(line.find("Infinity") == std::string::npos);
  CHECK(line.find('\n') == std::string::npos);

  // nlohmann's own parser is strict (no NaN, no Infinity, no comments): it takes the line.
  const nlohmann::json strict = nlohmann::json::parse(line);
  CHECK(strict.at("loss").is_null());
  CHECK(strict.at("loss_nonfinite") == "nan");
  CHECK(strict.at("down_nonfinite") == "-inf");

  // The reader gives the numbers back, without the flags, and writes the same text again.
  const Json back = parse_json(line, "metrics.jsonl", 1);
  CHECK(std::isnan(back.at("loss").get<double>()));
  CHECK(back.at("up").get<double>() == kJsonInf);
  CHECK(back.at("down").get<double>() == -kJsonInf);
  CHECK_FALSE(back.contains("loss_nonfinite"));
  CHECK(back.size() == 5);
  CHECK(json_text(back) == line);

  // In a nested object too (the summary's "final"), and in an array as a bare null.
  JsonObject eval;
  eval.set("epoch", 1).set("val/loss", std::nan(""));
  const std::string summary = JsonObject().set("final", eval).str();
  CHECK(summary == R"({"final": {"epoch": 1, "val/loss": null, "val/loss_nonfinite": "nan"}})");
  CHECK(json_text(Json::array({1.5, std::nan(""), -kJsonInf})) == "[1.5, null, null]");
}

TEST_CASE("a flag without its null, or a null without its flag, stays as it is", "[json]") {
  const Json a = parse_json(R"({"a": 1, "a_nonfinite": "nan", "b": null, "c": null, "c_nonfinite": "huge"})", "x");
  CHECK(a.at("a") == 1);
  CHECK(a.at("a_nonfinite") == "nan");
  CHECK(a.at("b").is_null());
  CHECK(a.at("c").is_null());
  CHECK(a.at("c_nonfinite") == "huge");
  // A finite value set over a non-finite one leaves no flag behind.
  CHECK(JsonObject().set("loss", std::nan("")).set("loss", 0.5).str() == R"({"loss": 0.5})");
}

TEST_CASE("doubles and 64-bit integers round-trip bit-exactly", "[json]") {
  const std::vector<double> awkward = {0.1,
                                       1e-300,
                                       -0.0,
                                       0.0,
                                       std::numeric_limits<double>::denorm_min(),  // 5e-324
                                       4.9406564584124654e-322,                    // a denormal
                                       std::numeric_limits<double>::min(),
                                       std::numeric_limits<double>::max(),
                                       -std::numeric_limits<double>::max(),
                                       1.0 / 3.0,
                                       0.30000000000000004,
                                       1e15,
                                       1e16,
                                       9007199254740993.0,  // not a double: rounds to 2^53
                                       123456789.125,
                                       6.02214076e23};
  for (const double v : awkward) {
    const std::string text = JsonObject().set("v", v).str();
    INFO(text);
    const Json back = parse_json(text, "x");
    REQUIRE(back.at("v").is_number_float());
    CHECK(json_bits(back.at("v").get<double>()) == json_bits(v));
    // Through the ConfigNode view as well (what the table and sweep readers use).
    CHECK(json_bits(json_to_config(back).at("v").as_double()) == json_bits(v));
    // And Python's strict reader gets the same double: the text is Python's repr.
    CHECK(text == "{\"v\": " + format_double(v) + "}");
  }
  CHECK(JsonObject().set("v", 0.1).str() == R"({"v": 0.1})");
  CHECK(JsonObject().set("v", 1e-300).str() == R"({"v": 1e-300})");
  CHECK(JsonObject().set("v", -0.0).str() == R"({"v": -0.0})");
  CHECK(JsonObject().set("v", 5e-324).str() == R"({"v": 5e-324})");
  CHECK(JsonObject().set("v", 2.0).str() == R"({"v": 2.0})");  // stays a float when read back

  const std::int64_t above_2_53 = (std::int64_t{1} << 53) + 1;
  for (const std::int64_t v : {above_2_53, std::numeric_limits<std::int64_t>::max(),
                               std::numeric_limits<std::int64_t>::min(), std::int64_t{-1}, std::int64_t{0}}) {
    const std::string text = JsonObject().set("n", v).str();
    INFO(text);
    CHECK(text == "{\"n\": " + std::to_string(v) + "}");
    const Json back = parse_json(text, "x");
    REQUIRE(back.at("n").is_number_integer());
    CHECK(back.at("n").get<std::int64_t>() == v);
    CHECK(json_to_config(back).at("n").as_int() == v);
  }
}

TEST_CASE("keys keep their insertion order; a key set again keeps its place", "[json]") {
  JsonObject o;
  o.set("zeta", 1).set("alpha", 2).set("mid", 3).set("alpha", 4);
  CHECK(o.str() == R"({"zeta": 1, "alpha": 4, "mid": 3})");
  const Json back = parse_json(o.str(), "x");
  CHECK(json_text(back) == o.str());
  const ConfigNode node = json_to_config(back);
  CHECK(node.keys() == std::vector<std::string>{"zeta", "alpha", "mid"});
  // A copy is independent of the original.
  JsonObject copy = o;
  copy.set("extra", true);
  CHECK(o.str() == R"({"zeta": 1, "alpha": 4, "mid": 3})");
  CHECK(copy.str() == R"({"zeta": 1, "alpha": 4, "mid": 3, "extra": true})");
}

TEST_CASE("strings, lists and nested values are written as strict JSON", "[json]") {
  const std::string tricky = std::string("quote \" backslash \\ newline \n tab \t bell \x07 e\xC3\xA9");
  const std::string text = JsonObject()
                               .set("s", tricky)
                               .set("list", std::vector<std::string>{"a", "b=c"})
                               .set_raw("params", "{\"lr\": 0.001, \"depth\": 4}\n")
                               .set_null("best")
                               .str();
  CHECK(text.find('\n') == std::string::npos);
  const nlohmann::json strict = nlohmann::json::parse(text);
  CHECK(strict.at("s").get<std::string>() == tricky);
  CHECK(strict.at("list") == nlohmann::json::array({"a", "b=c"}));
  CHECK(strict.at("params").at("depth") == 4);
  CHECK(strict.at("best").is_null());
  CHECK(text.find(R"("list": ["a", "b=c"], "params": {"lr": 0.001, "depth": 4}, "best": null)") != std::string::npos);
  // Bytes that are not UTF-8 (a log tail) become U+FFFD: the file stays valid JSON.
  const std::string bad = JsonObject().set("log_tail", std::string("x\xFFy")).str();
  CHECK(nlohmann::json::parse(bad).at("log_tail").get<std::string>() == "x\xEF\xBF\xBDy");
  CHECK_THROWS_AS(JsonObject().set_raw("x", "{not json"), ConfigError);
}

TEST_CASE("JSON as a ConfigNode: typed scalars, quoted strings, the non-finite values", "[json]") {
  const ConfigNode n = parse_json_object(
      R"({"a": 1, "b": 0.5, "c": "1.5", "d": null, "d_nonfinite": "-inf", "e": [true, null], "f": {"g": false}})",
      "summary.json");
  CHECK(n.keys() == std::vector<std::string>{"a", "b", "c", "d", "e", "f"});
  CHECK(n.at("a").is_int());
  CHECK(n.at("b").is_float());
  CHECK(n.at("c").is_string());
  CHECK(n.at("c").quoted());
  CHECK(n.at("d").is_number());
  CHECK(n.at("d").as_double() == -kJsonInf);
  CHECK(n.at("e").is_sequence());
  CHECK(n.at("e").items()[1].is_null());
  CHECK_FALSE(n.at("f").at("g").as_bool());
  CHECK_THROWS_WITH(parse_json_object("[1, 2]", "state.json"), Contains("state.json") && Contains("not a JSON object"));
}

TEST_CASE("corrupt JSON is an error naming the file, the line and the column", "[json]") {
  // One line of a .jsonl file: file:line, then the column.
  const std::string cut = json_error("{\"step\": 1, \"loss\": ", "run/metrics.jsonl", 7);
  CHECK_THAT(cut, Contains("run/metrics.jsonl:7: not valid JSON at column 21"));  // just past the end
  CHECK_THAT(cut, Contains("unexpected end of input"));
  // A whole file: its line and column.
  const std::string garbage = json_error("{\n  \"a\": 1,\n  oops\n}\n", "runs/x/summary.json");
  CHECK_THAT(garbage, Contains("runs/x/summary.json: not valid JSON at line 3, column 3"));
  CHECK_THAT(garbage, Contains("invalid literal"));
  CHECK(garbage.find("json.exception") == std::string::npos);  // nlohmann's own wording is rewritten
  CHECK_THAT(json_error("", "empty.json"), Contains("empty.json: not valid JSON"));
  // Deep nesting is refused with a message, not a crashed stack.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  CHECK_THAT(json_error(deep, "deep.json"), Contains("deep.json") && Contains("nests deeper than"));
  Json untouched = 7;
  CHECK_FALSE(try_parse_json("{\"a\": ", untouched));
  CHECK(untouched == 7);

  // From a file: a missing file and a truncated one both name it.
  testing::TempDir dir;
  const std::string path = (dir.path / "summary.json").string();
  CHECK_THROWS_WITH(read_json_file(path), Contains(path));
  std::ofstream(path) << "{\"status\": \"fini";
  CHECK_THROWS_WITH(read_json_file(path), Contains(path + ": not valid JSON at line 1, column"));
}

TEST_CASE("files of earlier versions, with bare NaN and Infinity, are still read", "[json]") {
  const Json old =
      parse_json(R"({"step": 5, "loss": NaN, "hi": Infinity, "lo": -Infinity, "note": "NaN and -Infinity stay text"})",
                 "old.jsonl", 3);
  CHECK(std::isnan(old.at("loss").get<double>()));
  CHECK(old.at("hi").get<double>() == kJsonInf);
  CHECK(old.at("lo").get<double>() == -kJsonInf);
  CHECK(old.at("note") == "NaN and -Infinity stay text");
  // Written again, it is strict JSON.
  CHECK(json_text(old) ==
        R"({"step": 5, "loss": null, "loss_nonfinite": "nan", "hi": null, "hi_nonfinite": "inf", "lo": null, )"
        R"("lo_nonfinite": "-inf", "note": "NaN and -Infinity stay text"})");
  // A word that is not one of the three is still an error.
  CHECK_THAT(json_error(R"({"loss": NaNa})", "old.jsonl", 4), Contains("old.jsonl:4: not valid JSON"));
}

TEST_CASE("the readers see a non-finite value in either form: curves and table records", "[json]") {
  testing::TempDir dir;
  const std::string head = "{\"step\": 2, \"epoch\": 1, \"loss\": 2.5, \"lr\": 0.1}\n";
  for (const std::string last : {"{\"step\": 3, \"loss\": null, \"loss_nonfinite\": \"nan\", \"diverged\": true}\n",
                                 "{\"step\": 3, \"loss\": NaN, \"diverged\": true}\n"}) {
    INFO(last);
    std::ofstream(dir.path / "metrics.jsonl") << head << last;
    const RunCurves c = read_metrics_file((dir.path / "metrics.jsonl").string());
    CHECK(c.diverged);
    CHECK(c.diverged_at == 3);
    CHECK(c.find("loss_nonfinite") == nullptr);
    REQUIRE(c.find("loss") != nullptr);
    CHECK(c.find("loss")->value == std::vector<double>{2.5});
  }

  const fs::path run = dir.path / "run";
  fs::create_directories(run);
  std::ofstream(run / "config.yaml") << "seed: 0\n";
  std::ofstream(run / "summary.json") << JsonObject()
                                             .set("status", "finished")
                                             .set("final", JsonObject().set("val/loss", kJsonInf).set("val/acc", 0.5))
                                             .set("best/val_loss", std::nan(""))
                                             .str()
                                      << "\n";
  const RunRecord r = load_run_directory(run.string());
  CHECK(r.status == "finished");
  REQUIRE(r.metrics.count("best/val_loss"));
  CHECK(std::isnan(r.metrics.at("best/val_loss")));
  CHECK(r.metrics.at("val/loss") == kJsonInf);
  CHECK(r.metrics.at("val/acc") == 0.5);
  CHECK(r.metrics.count("best/val_loss_nonfinite") == 0);
  CHECK(r.metrics.count("val/loss_nonfinite") == 0);
}

}  // namespace BLOCKLAB_TEST_FILE
