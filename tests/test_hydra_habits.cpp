// Hydra's habits on the command line (issue 18): `blocklab run -m` is `blocklab sweep`, and
// `blocklab run <run dir>` runs a past run's recorded config again. Multi-select composition
// (group=[a,b]) is tested in test_compose.cpp and against Hydra in tests/hydra_diff.
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "golden.h"
#include "process_support.h"
#include "tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;
using namespace blocklab::testing;

namespace {

void habits_golden(const std::string& name, const std::string& text) {
  const std::string mismatch = golden_mismatch(name, text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

// The log with the temp directory as <tmp> and run ids as <id>.
std::string habits_log(const fs::path& log, const fs::path& tmp) {
  std::string text = slurp(log);
  for (std::string::size_type at; (at = text.find(tmp.string())) != std::string::npos;)
    text.replace(at, tmp.string().size(), "<tmp>");
  return std::regex_replace(text, std::regex("/[0-9a-f]{12}"), "/<id>");
}

// The run directories under <out>/vit_fmnist other than `known`.
std::vector<fs::path> habits_other_runs(const fs::path& out, const fs::path& known) {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(out / "vit_fmnist"))
    if (e.path() != known) dirs.push_back(e.path());
  return dirs;
}

}  // namespace

TEST_CASE("blocklab run -m (or --multirun) is blocklab sweep with the other arguments", "[hydra-habits]") {
  TempDir tmp;
  std::vector<std::string> rest = {"--dry-run", "--root", (tmp.path / "sweeps").string(), "seed=0,1"};
  rest.insert(rest.end(), tiny_overrides().begin(), tiny_overrides().end());
  const auto with = [&](std::vector<std::string> head) {
    head.insert(head.end(), rest.begin(), rest.end());
    return head;
  };
  REQUIRE(run_blocklab(with({"sweep", "vit_fmnist"}), tmp.path / "sweep.log") == 0);
  const std::string planned = slurp(tmp.path / "sweep.log");
  INFO(planned);
  CHECK(planned.find("2 jobs planned and validated") != std::string::npos);
  // The same sweep (the same content-addressed directory, the same jobs) either way.
  CHECK(run_blocklab(with({"run", "-m", "vit_fmnist"}), tmp.path / "m.log") == 0);
  CHECK(slurp(tmp.path / "m.log") == planned);
  CHECK(run_blocklab(with({"run", "vit_fmnist", "--multirun"}), tmp.path / "multirun.log") == 0);
  CHECK(slurp(tmp.path / "multirun.log") == planned);
  // Without -m a comma list is still refused by run; -m with nothing else is sweep's usage error.
  CHECK(run_blocklab({"run", "vit_fmnist", "seed=0,1"}, tmp.path / "plain.log") == 2);
  CHECK(slurp(tmp.path / "plain.log").find("is a sweep: a single run takes one value per key") != std::string::npos);
  CHECK(run_blocklab({"run", "-m"}, tmp.path / "bare.log") == 2);
  CHECK(slurp(tmp.path / "bare.log").find("blocklab sweep: name an experiment") != std::string::npos);
}

TEST_CASE("blocklab run <run dir> runs the recorded config again: the same run, or new overrides on it",
          "[hydra-habits]") {
  TempDir tmp;
  const fs::path out = tmp.path / "out";
  REQUIRE(run_blocklab(tiny(out.string()), tmp.path / "first.log") == 0);
  const fs::path dir = run_dir(out);
  const std::string metrics = slurp(dir / "metrics.jsonl");

  // No new overrides: the same config and code give the same run id, so the finished run is
  // reported (without -q), not trained again; from any directory, by any path to it.
  CHECK(run_blocklab({"run", dir.string()}, tmp.path / "again.log") == 0);
  const std::string again = slurp(tmp.path / "again.log");
  INFO(again);
  CHECK(again.find("an identical run has already finished: ") != std::string::npos);
  CHECK(again.find(dir.filename().string()) != std::string::npos);
  CHECK(run_blocklab({"run", "vit_fmnist/" + dir.filename().string() + "/"}, tmp.path / "relative.log", out) == 0);
  CHECK(slurp(tmp.path / "relative.log").find("already finished") != std::string::npos);
  CHECK(run_blocklab({"run", "."}, tmp.path / "dot.log", dir) == 0);
  CHECK(slurp(tmp.path / "dot.log").find("already finished") != std::string::npos);
  CHECK(slurp(dir / "metrics.jsonl") == metrics);
  CHECK(habits_other_runs(out, dir).empty());

  // New value overrides apply to the recorded config: a new run beside it.
  REQUIRE(run_blocklab({"run", dir.string(), "-q", "trainer.epochs=1"}, tmp.path / "changed.log") == 0);
  const auto others = habits_other_runs(out, dir);
  REQUIRE(others.size() == 1);
  const std::string config = slurp(others[0] / "config.yaml");
  INFO(config);
  CHECK(config.find("epochs: 1  # command line 'trainer.epochs=1'") != std::string::npos);
  CHECK(config.find("dim: 16  # " + dir.string() + "/config.yaml:") != std::string::npos);
  const std::string overrides = slurp(others[0] / "overrides.yaml");
  INFO(overrides);
  const auto recorded = overrides.find("model.dim=16"), added = overrides.find("trainer.epochs=1");
  CHECK(recorded != std::string::npos);
  CHECK(added != std::string::npos);
  CHECK(recorded < added);  // the recorded overrides first, then the new ones
  CHECK(metric_steps(others[0]).size() < metric_steps(dir).size());
}

TEST_CASE("golden: blocklab run <run dir> refuses group choices and directories that are not runs",
          "[hydra-habits][golden]") {
  TempDir tmp;
  const fs::path out = tmp.path / "out";
  REQUIRE(run_blocklab(tiny(out.string(), {"trainer.epochs=1"}), tmp.path / "first.log") == 0);
  const fs::path dir = run_dir(out);
  // A recorded config has no defaults list: choosing an option needs the experiment again.
  CHECK(run_blocklab({"run", dir.string(), "optimizer=sgd"}, tmp.path / "group.log") == 2);
  habits_golden("run_dir_group_override", habits_log(tmp.path / "group.log", tmp.path));

  fs::create_directories(tmp.path / "empty");
  fs::create_directories(tmp.path / "half");
  std::ofstream(tmp.path / "half" / "config.yaml") << "task: classify\n";
  std::string refused;
  for (const fs::path& bad : {tmp.path / "empty", tmp.path / "half", tmp.path / "nowhere" / "abc"}) {
    const fs::path log = tmp.path / (bad.filename().string() + ".log");
    CHECK(run_blocklab({"run", bad.string()}, log) == 2);
    refused += habits_log(log, tmp.path);
  }
  habits_golden("run_dir_not_a_run", refused);
  CHECK(habits_other_runs(out, dir).empty());
}

}  // namespace BLOCKLAB_TEST_FILE
