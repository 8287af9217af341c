// Property test: thousands of random and malformed override strings and YAML documents fed
// to the parsers (seeded, bounded). They must never crash or hang: each input parses, or
// throws a ConfigError. Any other exception fails the test.
#include <catch2/catch.hpp>

#include <chrono>
#include <iostream>
#include <sstream>
#include <unistd.h>
#include <random>

#include "experiments/experiment.h"
#include "process_support.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/config_error.h"
#include "registry/interpolate.h"
#include "registry/override.h"
#include "registry/schema.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

std::string random_from(std::mt19937& rng, const std::vector<std::string>& pieces, int n) {
  std::string s;
  std::uniform_int_distribution<std::size_t> pick(0, pieces.size() - 1);
  for (int i = 0; i < n; ++i) s += pieces[pick(rng)];
  return s;
}

// Mutates a valid text: deletes, duplicates or replaces a few characters.
std::string mutate(std::mt19937& rng, std::string s) {
  const std::string alphabet = "abc019.-_/@=+~,[]{}()'\"\\$:#&*! \n\t|>?%";
  std::uniform_int_distribution<int> op(0, 2);
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits && !s.empty(); ++e) {
    const std::size_t at = rng() % s.size();
    switch (op(rng)) {
      case 0: s.erase(at, 1 + rng() % 3); break;
      case 1: s.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
      default: s[at] = alphabet[rng() % alphabet.size()];
    }
  }
  return s;
}

template <class F>
void expect_parse_or_config_error(const std::string& input, F&& f) {
  try {
    f();
  } catch (const ConfigError&) {
  } catch (const std::exception& e) {
    FAIL("input " << std::quoted(input) << " threw a non-config error: " << e.what());
  }
}

}  // namespace

TEST_CASE("random override strings parse or give a ConfigError", "[fuzz]") {
  std::mt19937 rng(20261127);
  const std::vector<std::string> pieces = {"a", "b.c", "model/mixer", "@", "=", "+", "++", "~", ",", "[", "]", "{",
                                           "}", "(", ")", "'", "\"", "\\", "${", "}", "1", "3e-4", "true", "null",
                                           " ", ":", "range", "glob", "choice", "zip", "*", "inf", "-", "_", "."};
  const std::vector<std::string> valid = {"trainer.lr=3e-4", "+a.b=[1,2,{c: d}]", "~x", "model=vit", "seed=range(0,3)",
                                          "m=glob(attention/*)", "zip(a,b)=[1,2],[3,4]", "s='a,b'", "x=${y.z}"};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int n = 0;
  for (; n < 6000 && std::chrono::steady_clock::now() < deadline; ++n) {
    const std::string input = (n % 2) ? random_from(rng, pieces, 1 + static_cast<int>(rng() % 12))
                                      : mutate(rng, valid[rng() % valid.size()]);
    expect_parse_or_config_error(input, [&] {
      Override o = parse_override(input);
      if (o.is_sweep()) (void)o.sweep->values(o.source());
    });
  }
  CHECK(n >= 1000);
}

TEST_CASE("random YAML documents load, resolve and validate or give a ConfigError", "[fuzz]") {
  std::mt19937 rng(7);
  const std::vector<std::string> docs = {
      "a: 1\nb: [1, 2]\nc: {d: '${a}'}\n",
      "defaults:\n  - trainer: default\n  - _self_\nx: ${trainer.lr}\n",
      "width: 64\nheads: 4\ndropout: 0.1\n",
      "a:\n  b:\n    - x: 1\n      y: [1, {z: 2}]\n  c: \"q\\\"uote\"\n",
      "s: |\n  block text\n  more\nt: >\n  folded\n",
      "a: &anchor {x: 1}\nb: *anchor\n",
      "lr: ${oc.env:HOME}\nr: ${..up}\n",
      "? complex\n: value\n",
  };
  Schema schema;
  schema.add_int("width", 64, "").min = 1;
  schema.add_int("heads", 4, "").max = 64;
  schema.add_float("dropout", 0.0, "");
  schema.add_string("a", "", "");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int n = 0;
  for (; n < 4000 && std::chrono::steady_clock::now() < deadline; ++n) {
    std::string input = mutate(rng, docs[rng() % docs.size()]);
    if (n % 5 == 0) input = mutate(rng, input);
    expect_parse_or_config_error(input, [&] {
      ConfigNode c = parse_yaml(input, "fuzz.yaml");
      resolve_interpolations(c);
      DiagnosticSink sink;
      if (c.is_map()) validate(c, schema, "", {}, sink);
      (void)dump_yaml(c);
      (void)dump_json(c);
    });
  }
  CHECK(n >= 1000);
}

TEST_CASE("pathological inputs stay bounded", "[fuzz]") {
  const std::string long_digits(200000, '7');
  CHECK(resolve_plain_scalar(long_digits) == ScalarType::Int);
  expect_parse_or_config_error("deep list", [] { parse_override("a=" + std::string(2000, '[') + std::string(2000, ']')); });
  expect_parse_or_config_error("deep yaml", [] { parse_yaml(std::string(5000, '[') + std::string(5000, ']'), "deep"); });
  expect_parse_or_config_error("long key", [] { parse_override(std::string(100000, 'a') + "=1"); });
}

namespace {

// Random UTF-8: ASCII, 2-, 3- and 4-byte characters, and now and then a stray byte.
std::string random_utf8(std::mt19937& rng, int n) {
  static const std::vector<std::string> chars = {"a", "Z", "_", "é", "ü", "名", "前", "€", "😀", "\xC3", "\xFF", "-"};
  return random_from(rng, chars, n);
}

// A YAML document of anchors and aliases, some inside their own anchor (cycles), some
// repeating earlier anchors many times (bombs).
std::string random_alias_doc(std::mt19937& rng) {
  const bool bomb = rng() % 16 == 0;  // up to 12^12 values: must stop at the limit
  const int anchors = 1 + static_cast<int>(rng() % (bomb ? 12 : 6));
  std::string doc;
  for (int a = 0; a < anchors; ++a) {
    doc += "k" + std::to_string(a) + ": &a" + std::to_string(a) + " [";
    const int items = 1 + static_cast<int>(rng() % (bomb ? 12 : 6));
    for (int i = 0; i < items; ++i) {
      const int target = static_cast<int>(rng() % static_cast<unsigned>(a + 2));  // a+1: undefined, a: itself
      doc += (i ? ", " : "") + (target <= a ? "*a" + std::to_string(target) : std::string("x"));
    }
    doc += "]\n";
  }
  return doc;
}

std::string random_nesting(std::mt19937& rng, int depth) {
  std::string open, close;
  for (int d = 0; d < depth; ++d) {
    const bool list = rng() % 2;
    open += list ? "[" : "{k: ";
    close = (list ? "]" : "}") + close;
  }
  return open + "1" + close;
}

// Text with the characters whose escaping differs between parsers: \ quotes $ { } , and blanks.
std::string random_escapes(std::mt19937& rng, int n) {
  return random_from(rng, {"\\", "\\\\", "'", "\"", "${x}", "$", "{", "}", ",", " ", "a", ":", "=", "(", ")"}, n);
}

// What the command-line fuzzer draws from: every option of every command (and some that no
// command has), values that are malformed in every way the commands must catch, and
// positional arguments that are never a real run, sweep or experiment (so no fuzz case
// trains, writes results or reads data).
const std::vector<std::string> kOptions = {
    "--samples", "--layers", "--heads", "--tokens", "--split", "--checkpoint", "--svg", "--no-mixing",
    "--rows", "--cols", "--metric", "--format", "--best", "--precision", "--also", "--out", "--name",
    "--metrics", "--x", "--smooth", "--mean-over-seeds", "--jobs", "-j", "--launcher", "--parallel",
    "--cpus-per-task", "--time", "--partition", "--sbatch", "--root", "--dry-run", "--allow-large",
    "--retry-failed", "--index", "--threads", "--all", "-a", "--config-dir", "--provenance", "-p",
    "--no-validate", "--choices", "--force", "--resume", "--continue", "--record-dir", "--quiet", "-q",
    "--dim", "--depth", "--patch", "--batch", "--steps", "--warmup", "--rounds", "--mlp-ratio",
    "--breakdown", "--sample", "--tasks-per-job", "--", "-", "--=", "---x", "-zz"};
const std::vector<std::string> kValues = {
    "", "0", "1", "3", "-1", "5-2", "0-3", "2-2", "0,,1", ",", "0-", "-0", "1-2-3", "0x10", "1e3", "3.5", "+4",
    "99999999999999999999", "9223372036854775807", "-9223372036854775808", "abc", "nan", "inf", "md", "tex",
    "csv", "html", "max", "min", "best", "last", "step", "epoch", "local", "slurm", "test", "dev", "../x",
    "/etc", "a/b", "..", ".", "loss,,lr", "loss,loss", "test/acc", "model.mixer", "\x01\x02", "a\nb", "%s%n",
    "'", "${x}", "--mem=4G", "1:00:00\nrm -rf /", std::string(300, '7'), std::string(2000, 'a'), "0-999999999999",
    "seed=range(0,1e9)", "trainer.lr=1e-3,2e-3", "~trainer", "zip(a,b)=[1,2]"};
const std::vector<std::string> kPositionals = {
    "", "no/such/dir", "/nonexistent/run", "..", "no_such_experiment", "x=1", "seed=range(0,100000000)",
    "model.mixer.type=glob(*)", "fixtures/nowhere", std::string(500, 'r'), "\x7f", "-"};

std::vector<std::string> random_command_line(std::mt19937& rng) {
  std::vector<std::string> args;
  const int n = static_cast<int>(rng() % 7);
  for (int i = 0; i < n; ++i) {
    switch (rng() % 4) {
      case 0: args.push_back(kPositionals[rng() % kPositionals.size()]); break;
      case 1: args.push_back(kOptions[rng() % kOptions.size()]); break;
      case 2: args.push_back(kValues[rng() % kValues.size()]); break;
      default: args.push_back(kOptions[rng() % kOptions.size()] + "=" + mutate(rng, kValues[rng() % kValues.size()]));
    }
  }
  return args;
}

// Swaps std::cout and std::cerr for a buffer while a command runs in-process.
struct Silence {
  std::ostringstream sink;
  std::streambuf* out = std::cout.rdbuf(sink.rdbuf());
  std::streambuf* err = std::cerr.rdbuf(sink.rdbuf());
  ~Silence() {
    std::cout.rdbuf(out);
    std::cerr.rdbuf(err);
  }
};

// Runs in a fresh temporary directory, so relative paths a case names stay inside it.
struct InTempDir {
  blocklab::testing::TempDir tmp;
  std::filesystem::path before = std::filesystem::current_path();
  InTempDir() { std::filesystem::current_path(tmp.path); }
  ~InTempDir() { std::filesystem::current_path(before); }
};

std::string shown_args(const std::string& command, const std::vector<std::string>& args) {
  std::string out = command;
  for (const auto& a : args) out += " '" + printable(a) + "'";
  return out;
}

}  // namespace

TEST_CASE("issue 10 classes: cycles, bombs, depth, long lists, escapes, unicode", "[fuzz]") {
  std::mt19937 rng(20261203);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int n = 0;
  for (; n < 1500 && std::chrono::steady_clock::now() < deadline; ++n) {
    std::string yaml, override_text;
    switch (n % 6) {
      case 0: yaml = random_alias_doc(rng); break;
      case 1: {
        const int depth = 1 + static_cast<int>(rng() % 600);
        yaml = "a: " + random_nesting(rng, depth) + "\n";
        override_text = "+a=" + random_nesting(rng, depth);
        break;
      }
      case 2: {
        const int len = static_cast<int>(rng() % 20000);
        override_text = "+a=[";
        for (int i = 0; i < len; ++i) override_text += (i ? "," : "") + std::to_string(rng() % 1000);
        override_text += rng() % 4 ? "]" : "";
        break;
      }
      case 3:
        override_text = "+a=" + random_escapes(rng, 1 + static_cast<int>(rng() % 16));
        yaml = "x: 1\na: '" + random_escapes(rng, 1 + static_cast<int>(rng() % 16)) + "'\n";
        break;
      case 4:
        override_text = random_utf8(rng, 1 + static_cast<int>(rng() % 6)) + "=" + random_utf8(rng, 1 + static_cast<int>(rng() % 6));
        yaml = random_utf8(rng, 1 + static_cast<int>(rng() % 6)) + ": " + random_utf8(rng, 1 + static_cast<int>(rng() % 6)) + "\n";
        break;
      default:
        override_text = "+a={" + random_escapes(rng, 1 + static_cast<int>(rng() % 8)) + ": 1}";
        yaml = "a: ${oc.env:BLOCKLAB_NOPE," + random_escapes(rng, 1 + static_cast<int>(rng() % 8)) + "}\n";
    }
    if (!yaml.empty())
      expect_parse_or_config_error(yaml, [&] {
        ConfigNode c = parse_yaml(yaml, "fuzz.yaml");
        resolve_interpolations(c);
        (void)dump_yaml(c);
        (void)dump_json(c);
      });
    if (!override_text.empty())
      expect_parse_or_config_error(override_text, [&] {
        Override o = parse_override(override_text);
        ConfigNode root = ConfigNode::map();
        root.set("x", ConfigNode::integer(1));
        if (!o.is_sweep()) root.set("a", o.value);
        resolve_interpolations(root);
      });
  }
  CHECK(n >= 300);
}

TEST_CASE("random command lines for every command give a usage or config error, never a crash", "[fuzz]") {
  std::mt19937 rng(20261203);
  InTempDir here;
  const std::vector<std::string> commands = CommandRegistry::instance().names();
  REQUIRE(commands.size() >= 12);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int n = 0, errors = 0;
  for (; n < 3000 && std::chrono::steady_clock::now() < deadline; ++n) {
    const std::string& name = commands[static_cast<std::size_t>(n) % commands.size()];
    const std::vector<std::string> args = random_command_line(rng);
    const auto start = std::chrono::steady_clock::now();
    try {
      Silence quiet;
      const int status = CommandRegistry::instance().find(name)->run(args);
      if (status < 0 || status > 2) FAIL(shown_args(name, args) << " returned " << status);
    } catch (const UsageError&) {
      ++errors;
    } catch (const ConfigError&) {
      ++errors;
    } catch (const std::exception& e) {
      FAIL(shown_args(name, args) << " threw a non-usage error: " << e.what());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > 5) FAIL(shown_args(name, args) << " took " << seconds << " s");
  }
  CHECK(n >= 1000);
  CHECK(errors > n / 2);  // most random command lines are wrong, and say so
  // Nothing was written where the cases ran (no sweep, table or plot output from a bad line).
  CHECK(std::filesystem::is_empty(here.tmp.path));
}

TEST_CASE("random command lines through the executable exit 0, 1 or 2, never by a signal", "[fuzz]") {
  std::mt19937 rng(7);
  InTempDir here;
  const std::vector<std::string> commands = CommandRegistry::instance().names();
  for (int n = 0; n < 24; ++n) {
    std::vector<std::string> args = random_command_line(rng);
    args.insert(args.begin(), commands[rng() % commands.size()]);
    const int status = blocklab::testing::run_blocklab(args, here.tmp.path / "log.txt");
    INFO(shown_args("blocklab", args));
    CHECK((status >= 0 && status <= 2));
  }
}

}  // namespace BLOCKLAB_TEST_FILE
