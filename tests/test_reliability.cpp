// Reliability: bad input of every kind thrown at the CLI (issue 10). For each case the
// blocklab process must exit with status 1 or 2 (never a signal), say on its output which
// place is wrong (a file, a key, an option), finish within a few seconds, keep its memory
// bounded, and write nothing outside what the command owns.
//
// Every case runs in a sandbox: a copy of the experiment configs plus broken ones, a trained
// tiny run and a sweep directory, each corrupted as the case needs.
#include <catch2/catch.hpp>

#include <fstream>
#include <functional>
#include <map>
#include <random>

#include "process_support.h"
#include "tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;
using namespace blocklab::testing;

namespace {

constexpr double kTimeLimitSeconds = 15;  // generous for 2 busy cores; a hang is minutes
constexpr long kMemoryLimitKb = 2L * 1024 * 1024;  // LibTorch alone takes ~0.5 GB

struct BadInput {
  std::string what;               // what is wrong
  std::vector<std::string> args;  // "{s}" stands for the sandbox directory
  std::string names;              // the output must contain this (the place named)
  std::function<void(const fs::path& sandbox)> prepare = {};  // breaks something first
  std::vector<std::string> owned = {};  // sandbox-relative paths the command may write
};

// ---- The sandbox ------------------------------------------------------------------------

// A tiny trained run, made once per test process and copied into each sandbox.
const fs::path& trained_run() {
  static TempDir dir;
  static const fs::path run = [] {
    const fs::path out = dir.path / "runs";
    REQUIRE(run_blocklab(tiny(out.string(), {"trainer.max_steps=6"}), dir.path / "log") == 0);
    return run_dir(out);
  }();
  return run;
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

std::string nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::string alias_bomb() {
  std::string y = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    y += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) y += std::string(j ? ", " : "") + "*a" + std::to_string(i - 1);
    y += "]\n";
  }
  return y;
}

std::string long_list_override(int n) {
  std::string s = "+x=[";
  for (int i = 0; i < n; ++i) s += (i ? "," : "") + std::to_string(i);
  return s + "]";
}

// Broken experiment configs next to a copy of the real ones.
void make_configs(const fs::path& conf) {
  fs::copy(fs::path(BLOCKLAB_TEST_DIR) / ".." / "experiments" / "conf", conf, fs::copy_options::recursive);
  const std::string base = "defaults:\n  - vit_fmnist\n  - _self_\n";
  write(conf / "bad_syntax.yaml", "task: classify\ntrainer: {lr: 1\n");
  write(conf / "alias_cycle.yaml", "a: &x [*x]\n");
  write(conf / "alias_bomb.yaml", alias_bomb());
  write(conf / "deep_nesting.yaml", "a: " + nested(100000) + "\n");
  write(conf / "typo_key.yaml", base + "trainer:\n  lrr: 0.1\n");
  write(conf / "wrong_type.yaml", base + "trainer:\n  lr: fast\n");
  write(conf / "unknown_block.yaml", base + "model:\n  mixer:\n    type: attention/sofmax\n");
  write(conf / "missing_interpolation.yaml", base + "trainer:\n  lr: ${nope.lr}\n");
  write(conf / "interpolation_cycle.yaml", base + "seed: ${threads}\nthreads: ${seed}\n");
  write(conf / "duplicate_key.yaml", "task: classify\nseed: 1\nseed: 2\n");
  write(conf / "empty.yaml", "");
  write(conf / "list_top.yaml", "- 1\n- 2\n");
  write(conf / "binary.yaml", std::string("\x00\x01\xff\xfe task", 9));
  write(conf / "unknown_group_option.yaml", "defaults:\n  - model: nosuch\n  - _self_\ntask: classify\n");
  write(conf / "no_task.yaml", "seed: 1\n");
  write(conf / "patch_does_not_divide.yaml", base + "model:\n  patch: 5\n");
  fs::create_directories(conf / "directory.yaml");
}

// Each case gets its own sandbox: configs, a trained run, a sweep directory, a work dir.
struct Sandbox {
  TempDir tmp;
  fs::path root = tmp.path;
  Sandbox() {
    make_configs(root / "conf");
    fs::copy(trained_run(), root / "run", fs::copy_options::recursive);
    fs::copy(fs::path(BLOCKLAB_TEST_DIR) / "fixtures" / "table_runs" / "sweep", root / "sweep",
             fs::copy_options::recursive);
    fs::create_directories(root / "work");
  }
};

// Path, size and modification time of every entry under `root`.
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const auto rel = fs::relative(e.path(), root).string();
    std::error_code ec;
    const auto size = e.is_regular_file(ec) ? e.file_size(ec) : 0;
    out[rel] = std::to_string(size) + "@" + std::to_string(fs::last_write_time(e.path(), ec).time_since_epoch().count());
  }
  return out;
}

bool owned_by(const std::string& rel, const std::vector<std::string>& owned) {
  for (const auto& o : owned)
    if (rel == o || rel.rfind(o + "/", 0) == 0) return true;
  return false;
}

// The changes between two snapshots outside the owned paths.
std::vector<std::string> stray_writes(const std::map<std::string, std::string>& before,
                                      const std::map<std::string, std::string>& after,
                                      const std::vector<std::string>& owned) {
  std::vector<std::string> out;
  for (const auto& [rel, stamp] : after) {
    const auto it = before.find(rel);
    if ((it == before.end() || it->second != stamp) && !owned_by(rel, owned)) out.push_back(rel);
  }
  for (const auto& [rel, stamp] : before)
    if (!after.count(rel) && !owned_by(rel, owned)) out.push_back(rel + " (removed)");
  return out;
}

std::vector<std::string> expand(const std::vector<std::string>& args, const fs::path& sandbox) {
  std::vector<std::string> out;
  for (std::string a : args) {
    for (auto at = a.find("{s}"); at != std::string::npos; at = a.find("{s}")) a.replace(at, 3, sandbox.string());
    out.push_back(a);
  }
  return out;
}

// ---- Corruptions ------------------------------------------------------------------------

void truncate_half(const fs::path& p) {
  const std::string bytes = slurp(p);
  write(p, bytes.substr(0, bytes.size() / 2));
}

void flip_byte(const fs::path& p) {
  std::string bytes = slurp(p);
  bytes[bytes.size() / 2] ^= 0x5a;
  write(p, bytes);
}

// The trained run as an interrupted run under {s}/runs, so that `run ... --resume` finds it.
std::function<void(const fs::path&)> interrupted_with(std::function<void(const fs::path&)> corrupt) {
  return [corrupt](const fs::path& s) {
    const fs::path dir = s / "runs" / "vit_fmnist" / trained_run().filename();
    fs::create_directories(dir.parent_path());
    fs::copy(s / "run", dir, fs::copy_options::recursive);
    fs::remove(dir / "summary.json");
    corrupt(dir / "checkpoints" / "last.ckpt");
  };
}

std::vector<std::string> tiny_resume() {
  std::vector<std::string> args = tiny("{s}/runs", {"trainer.max_steps=6", "--resume"});
  return args;
}

std::vector<std::string> with_conf(std::vector<std::string> args) {
  args.insert(args.begin() + 2, {"--config-dir", "{s}/conf"});
  return args;
}

// ---- The cases --------------------------------------------------------------------------

std::vector<BadInput> config_cases() {
  const auto run = [](const std::string& exp) { return with_conf({"run", exp}); };
  return {
      {"YAML syntax error", run("bad_syntax"), "bad_syntax.yaml:"},
      {"self-referencing alias", run("alias_cycle"), "alias_cycle.yaml"},
      {"alias bomb", run("alias_bomb"), "alias_bomb.yaml"},
      {"100,000 nested brackets", run("deep_nesting"), "deep_nesting.yaml"},
      {"misspelt key", run("typo_key"), "lrr"},
      {"wrong type", run("wrong_type"), "trainer.lr"},
      {"unknown block", run("unknown_block"), "attention/sofmax"},
      {"missing interpolation target", run("missing_interpolation"), "nope.lr"},
      {"interpolation cycle", run("interpolation_cycle"), "interpolation_cycle.yaml"},
      {"duplicate key", run("duplicate_key"), "duplicate_key.yaml"},
      {"empty config", run("empty"), "task"},
      {"a list, not a mapping", run("list_top"), "list_top.yaml"},
      {"binary garbage", run("binary"), "binary.yaml"},
      {"unknown group option", run("unknown_group_option"), "nosuch"},
      {"no task", run("no_task"), "task"},
      {"config that is a directory", run("directory"), "directory"},
      {"patch does not divide the image", run("patch_does_not_divide"), "patch"},
      {"unknown experiment", run("vit_fmnst"), "vit_fmnist"},
      {"name leaving the config dir", run("../conf/vit_fmnist"), "experiment name '../conf/vit_fmnist'"},
      {"absolute name", run("/etc/passwd"), "experiment name '/etc/passwd'"},
      {"empty name", run(""), "experiment name ''"},
  };
}

std::vector<BadInput> override_cases() {
  const auto run = [](std::vector<std::string> overrides) {
    std::vector<std::string> args = {"run", "vit_fmnist", "output_dir={s}/out"};
    args.insert(args.end(), overrides.begin(), overrides.end());
    return args;
  };
  return {
      {"value of the wrong type", run({"trainer.lr=fast"}), "trainer.lr"},
      {"adding an existing key", run({"+trainer.lr=1"}), "trainer.lr"},
      {"unknown key", run({"nosuch.key=1"}), "nosuch"},
      {"unbalanced bracket", run({"trainer.lr=[1,2"}), "trainer.lr=[1,2"},
      {"no key", run({"=3"}), "=3"},
      {"sweep syntax in run", run({"seed=1,2"}), "seed=1,2"},
      {"negative seed", run({"seed=-1"}), "seed"},
      {"too many threads", run({"threads=100000"}), "threads"},
      {"cuda on a machine without a GPU", run({"device=cuda"}), "device"},
      {"heads do not divide the width", run({"model.dim=30", "model.mixer.heads=4"}), "heads"},
      {"batch larger than the training split", run({"dataset.limit_train=20"}), "trainer.batch_size"},
      {"interpolation to nothing", run({"trainer.lr=${nope}"}), "nope"},
      {"unknown group option", run({"model=nosuch"}), "nosuch"},
      {"20,000-element list", run({long_list_override(20000)}), "x"},
      {"missing dataset", run({"++dataset.root={s}/nodata"}), "nodata"},
      {"corrupt dataset files",
       run({"++dataset.root={s}/data"}),
       "train-images-idx3-ubyte.gz",
       [](const fs::path& s) {
         for (const char* f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                               "t10k-labels-idx1-ubyte.gz"})
           write(s / "data" / f, std::string("\x1f\x8b\x08\x00garbage", 11));
       }},
  };
}

std::vector<BadInput> argument_cases() {
  return {
      {"unknown command", {"trian"}, "trian"},
      {"run without an experiment", {"run"}, "experiment"},
      {"--resume with --force", {"run", "vit_fmnist", "--resume", "--force"}, "--force"},
      {"unknown option", {"run", "vit_fmnist", "--bogus"}, "--bogus"},
      {"unknown output format", {"show", "vit_fmnist", "--format", "xml"}, "xml"},
      {"describe an unknown block", {"describe", "attention/sofmax"}, "attention/sofmax"},
      {"list an unknown kind", {"list", "mixers_x"}, "mixers_x"},
      {"bench an unknown model", {"bench", "nosuch"}, "nosuch"},
      {"diff of missing runs", {"diff", "{s}/nope", "{s}/nope2"}, "nope"},
      {"status of a missing sweep", {"status", "{s}/nope"}, "nope"},
      {"table of a missing dir", {"table", "{s}/nope", "--rows", "seed", "--metric", "test/acc"}, "nope"},
      {"plot of a missing dir", {"plot", "{s}/nope"}, "nope"},
      {"attn of a missing run", {"attn", "{s}/nope"}, "nope"},
      {"job of a missing sweep", {"job", "{s}/nope", "--index", "0"}, "nope"},
      {"sweep with zero workers", {"sweep", "vit_fmnist", "seed=0,1", "--jobs", "0", "--root", "{s}/sweeps"}, "--jobs"},
      {"malformed sweep function", {"sweep", "vit_fmnist", "seed=range(0,", "--root", "{s}/sweeps"}, "range"},
      {"attn: reversed token range", {"attn", "{s}/run", "--tokens", "5-2"}, "--tokens"},
      {"attn: reversed sample range", {"attn", "{s}/run", "--samples", "3-1"}, "--samples"},
      {"attn: a layer the model lacks", {"attn", "{s}/run", "--layers", "7"}, "--layers"},
      {"attn: a head the model lacks", {"attn", "{s}/run", "--heads", "9"}, "--heads"},
      {"attn: unknown split", {"attn", "{s}/run", "--split", "nosuch"}, "nosuch"},
      {"table: unknown metric", {"table", "{s}/run", "--rows", "seed", "--metric", "nosuch"}, "nosuch"},
      {"table: negative precision", {"table", "{s}/run", "--rows", "seed", "--metric", "test/acc", "--precision", "-3"}, "--precision"},
      {"table: a name leaving its directory",
       {"table", "{s}/run", "--rows", "seed", "--metric", "test/acc", "--out", "{s}/tables", "--name", "../../evil"},
       "--name"},
      {"plot: negative smoothing", {"plot", "{s}/run", "--smooth", "-1"}, "--smooth"},
      {"plot: unknown metric", {"plot", "{s}/run", "--metrics", "nosuch"}, "nosuch"},
  };
}

std::vector<BadInput> corrupt_file_cases() {
  const std::string run_dir = "runs/vit_fmnist/" + trained_run().filename().string();
  return {
      {"resume from a truncated checkpoint", tiny_resume(), "last.ckpt", interrupted_with(truncate_half), {run_dir}},
      {"resume from a corrupted checkpoint", tiny_resume(), "last.ckpt", interrupted_with(flip_byte), {run_dir}},
      {"attn with a truncated checkpoint",
       {"attn", "{s}/run", "--no-mixing"},
       "best.ckpt",
       [](const fs::path& s) { truncate_half(s / "run" / "checkpoints" / "best.ckpt"); },
       {"run/attn"}},
      {"plot of garbage metrics", {"plot", "{s}/run"}, "metrics.jsonl",
       [](const fs::path& s) { write(s / "run" / "metrics.jsonl", "{\"step\": 1, \"loss\": \n\x01\x02 garbage\n"); },
       {"run/plots"}},
      {"attn with a garbage config.yaml", {"attn", "{s}/run"}, "config.yaml",
       [](const fs::path& s) { write(s / "run" / "config.yaml", "model: [unclosed\n"); }, {"run/attn"}},
      {"table with a garbage summary.json", {"table", "{s}/run", "--rows", "seed", "--metric", "test/acc"}, "summary.json",
       [](const fs::path& s) { write(s / "run" / "summary.json", "{\"status\": \"fini"); }},
      {"diff with a run without config.yaml", {"diff", "{s}/run", "{s}/run2"}, "run2",
       [](const fs::path& s) { fs::create_directories(s / "run2"); }},
      {"status of a garbage sweep.json", {"status", "{s}/sweep"}, "sweep.json",
       [](const fs::path& s) { write(s / "sweep" / "sweep.json", "{\"sweep_id\": "); }},
      {"status of a truncated manifest", {"status", "{s}/sweep"}, "manifest.jsonl",
       [](const fs::path& s) { truncate_half(s / "sweep" / "manifest.jsonl"); }},
      {"status of a garbage job state", {"status", "{s}/sweep"}, "state.json",
       [](const fs::path& s) {
         for (const auto& e : fs::directory_iterator(s / "sweep" / "jobs"))
           if (fs::exists(e.path() / "state.json")) return write(e.path() / "state.json", "\x01{{{");
       }},
      {"job index out of range", {"job", "{s}/sweep", "--index", "99"}, "99"},
      {"table of a sweep with a garbage state", {"table", "{s}/sweep", "--rows", "seed", "--metric", "test/acc"},
       "state.json",
       [](const fs::path& s) {
         for (const auto& e : fs::directory_iterator(s / "sweep" / "jobs"))
           if (fs::exists(e.path() / "state.json")) return write(e.path() / "state.json", "[1, 2");
       }},
  };
}

void check_bad_input(const BadInput& c) {
  Sandbox box;
  if (c.prepare) c.prepare(box.root);
  const auto before = snapshot(box.root);
  const fs::path log = box.root / ".." / (box.root.filename().string() + ".log");
  const BoundedRun r = run_blocklab_bounded(expand(c.args, box.root), log, box.root / "work", kTimeLimitSeconds);
  const std::string out = slurp(log);
  fs::remove(log);
  INFO("case: " << c.what << "\noutput:\n" << out.substr(0, 2000));
  CHECK_FALSE(r.timed_out);
  CHECK((r.status == 1 || r.status == 2));
  CHECK(r.max_rss_kb < kMemoryLimitKb);
  CHECK(out.find("error") != std::string::npos);
  CHECK(out.find(expand({c.names}, box.root)[0]) != std::string::npos);
  const auto stray = stray_writes(before, snapshot(box.root), c.owned);
  INFO("written outside what the command owns: " << (stray.empty() ? "" : stray.front()));
  CHECK(stray.empty());
}

void check_all(const std::vector<BadInput>& cases) {
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.what) { check_bad_input(c); }
  }
}

}  // namespace

TEST_CASE("bad configs: exit 1 or 2, the place named, bounded, nothing written", "[reliability]") {
  check_all(config_cases());
}

TEST_CASE("bad overrides: exit 1 or 2, the place named, bounded, nothing written", "[reliability]") {
  check_all(override_cases());
}

TEST_CASE("bad command arguments: exit 1 or 2, the place named, bounded, nothing written", "[reliability]") {
  check_all(argument_cases());
}

TEST_CASE("corrupted run and sweep files: exit 1 or 2, the file named, bounded", "[reliability]") {
  check_all(corrupt_file_cases());
}

TEST_CASE("the reliability group throws at least 60 bad inputs at the CLI", "[reliability]") {
  const std::size_t n =
      config_cases().size() + override_cases().size() + argument_cases().size() + corrupt_file_cases().size();
  CHECK(n >= 60);
}

}  // namespace BLOCKLAB_TEST_FILE
