// Sweeps: grid expansion and validation, the sweep directory and ledger, the local launcher
// (parallel jobs, resume after the driver is killed, failing jobs), `blocklab job`, and the
// Slurm array script.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "experiments/experiment.h"
#include "experiments/sweep.h"
#include "golden.h"
#include "process_support.h"
#include "registry/config_error.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::testing;

namespace {

// A tiny ViT on a slice of Fashion-MNIST: about a second per job.
const std::vector<std::string> kTinyJob = {
    "model.dim=16",           "model.depth=1",          "model.patch=7",        "dataset.limit_train=256",
    "dataset.limit_test=100", "dataset.val_size=0",     "trainer.batch_size=32", "trainer.epochs=1",
    "trainer.log_every=4",    "trainer.eval_batch_size=100"};

std::vector<std::string> with_tiny(std::vector<std::string> swept) {
  std::vector<std::string> all = kTinyJob;
  all.insert(all.end(), swept.begin(), swept.end());
  return all;
}

SweepPlan plan(const std::vector<std::string>& overrides) {
  return plan_sweep(default_config_dir(), "vit_fmnist", overrides);
}

std::string param(const SweepJob& job, const std::string& key) {
  for (const auto& [k, v] : job.params)
    if (k == key) return v.text();
  return "<absent>";
}

std::vector<std::string> sweep_args(const fs::path& root, std::vector<std::string> overrides,
                                    std::vector<std::string> options) {
  std::vector<std::string> args = {"sweep", "vit_fmnist", "-q", "--root", root.string()};
  args.insert(args.end(), options.begin(), options.end());
  args.insert(args.end(), overrides.begin(), overrides.end());
  return args;
}

// The one sweep directory under `root`.
fs::path only_sweep(const fs::path& root) {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root)) dirs.push_back(e.path());
  REQUIRE(dirs.size() == 1);
  return dirs[0];
}

std::vector<std::string> states(const fs::path& sweep_dir) {
  const SweepDirectory s = read_sweep_directory(sweep_dir.string());
  std::vector<std::string> out;
  for (const auto& job : s.jobs) out.push_back(read_job_state(s, job).state);
  return out;
}

int count(const std::vector<std::string>& v, const std::string& x) {
  return static_cast<int>(std::count(v.begin(), v.end(), x));
}

// Whether any process's command line mentions `text` (orphaned job runs).
bool process_mentions(const std::string& text) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = slurp(e.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(text) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("sweep expansion: products in order, ranges, globs over registry names and groups", "[sweep]") {
  // glob(?l?): glu and mlp (not monarch-glu)
  const SweepPlan p = plan({"trainer.lr=1e-3,2e-3", "seed=range(0,3)", "model.channel.type=glob(?l?)"});
  REQUIRE(p.jobs.size() == 12);
  CHECK(p.axes == std::vector<std::string>{"trainer.lr", "seed", "model.channel.type"});
  // Last axis fastest; glob matches come sorted (glu before mlp).
  CHECK(param(p.jobs[0], "model.channel.type") == "glu");
  CHECK(param(p.jobs[1], "model.channel.type") == "mlp");
  CHECK(param(p.jobs[2], "seed") == "1");
  CHECK(param(p.jobs[6], "trainer.lr") == "2e-3");
  for (std::size_t i = 0; i < p.jobs.size(); ++i) {
    const SweepJob& j = p.jobs[i];
    CHECK(j.index == static_cast<int>(i));
    CHECK(j.id.size() == 12);
    // The resolved config has the job's values.
    CHECK(j.config.find_path("model.channel.type")->text() == param(j, "model.channel.type"));
    CHECK(j.config.find_path("seed")->text() == param(j, "seed"));
  }
  std::set<std::string> ids;
  for (const auto& j : p.jobs) ids.insert(j.id);
  CHECK(ids.size() == 12);

  const SweepPlan groups = plan({"optimizer=glob(*)"});
  REQUIRE(groups.jobs.size() == 2);
  CHECK(groups.jobs[0].config.find_path("optimizer.type")->text() == "adamw");
  CHECK(groups.jobs[1].config.find_path("optimizer.type")->text() == "sgd");
}

TEST_CASE("sweep expansion: zip pairs values instead of a product", "[sweep]") {
  const SweepPlan p = plan({"zip(trainer.lr,seed)=[1e-3,0],[2e-3,5]", "trainer.epochs=1,2"});
  REQUIRE(p.jobs.size() == 4);
  CHECK(param(p.jobs[0], "trainer.lr") == "1e-3");
  CHECK(param(p.jobs[0], "seed") == "0");
  CHECK(param(p.jobs[2], "trainer.lr") == "2e-3");
  CHECK(param(p.jobs[2], "seed") == "5");
  CHECK(param(p.jobs[3], "trainer.epochs") == "2");
}

TEST_CASE("job and sweep ids are stable and ignore where and with how many threads a job runs", "[sweep]") {
  const SweepPlan a = plan({"seed=0,1", "threads=1", "output_dir=/tmp/a"});
  const SweepPlan b = plan({"seed=0,1", "threads=2", "output_dir=/tmp/b"});
  const SweepPlan again = plan({"seed=0,1", "threads=1", "output_dir=/tmp/a"});
  REQUIRE(a.jobs.size() == 2);
  CHECK(a.jobs[0].id == b.jobs[0].id);
  CHECK(a.jobs[1].id == b.jobs[1].id);
  CHECK(a.id == again.id);
  CHECK(a.jobs[0].id == again.jobs[0].id);
  CHECK(a.id != b.id);  // a different command is a different sweep
}

TEST_CASE("every invalid point is reported before anything runs, each problem once", "[sweep][golden]") {
  const std::string text = error_text([] { plan({"trainer.lr=1e-3,-1", "trainer.batch_size=0,64"}); });
  const std::string mismatch = golden_mismatch("sweep_invalid_points", text);
  CHECK(mismatch.empty());
  if (!mismatch.empty()) FAIL(mismatch);
  CHECK_THROWS_WITH(plan({"trainer.lr=1e-3,0.001"}), Catch::Contains("give the same config"));
  CHECK_THROWS_WITH(plan({"model.channel.type=glob(nothing*)"}), Catch::Contains("matches no channel name"));
  CHECK_THROWS_WITH(plan({"trainer.lr=glob(a*)"}), Catch::Contains("neither"));
}

TEST_CASE("override_text round-trips values through the override parser", "[sweep]") {
  for (const std::string v : {"1e-3", "attention/softmax", "'3'", "'a b'", "[1,2]", "null", "true", "'x,y'"}) {
    const ConfigNode value = parse_override_value(v);
    const std::string text = override_text("k", value);
    INFO(v << " -> " << text);
    CHECK(parse_override(text).value.same_value(value));
  }
}

TEST_CASE("Slurm array script: golden, valid bash, compact array spec", "[sweep][golden]") {
  CHECK(array_spec({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8");
  CHECK(array_spec({3}) == "3");
  SlurmOptions o;
  o.binary = "/opt/blocklab/build/blocklab";
  o.sweep_dir = "/home/me/results/sweeps/0123456789ab";
  o.job_name = "blocklab-vit_fmnist-0123456789ab";
  o.indices = {0, 1, 2, 3, 5};
  o.parallel = 2;
  o.cpus_per_task = 4;
  o.time = "1:00:00";
  o.partition = "gpu";
  o.extra = {"--mem=8G"};
  const std::string script = slurm_script(o);
  const std::string mismatch = golden_mismatch("sweep_sbatch", script);
  CHECK(mismatch.empty());
  if (!mismatch.empty()) FAIL(mismatch);
  TempDir tmp;
  std::ofstream(tmp.path / "s.sbatch") << script;
  CHECK(std::system(("bash -n " + (tmp.path / "s.sbatch").string()).c_str()) == 0);
}

TEST_CASE("a 3 x 2 x 3 sweep runs with --jobs 2 and gives a table of 6 cells with n=3", "[sweep]") {
  TempDir tmp;
  const auto args = sweep_args(tmp.path / "sweeps",
                               with_tiny({"model.mixer.heads=1,2,4", "trainer.lr=1e-3,3e-3", "seed=0,1,2"}),
                               {"--jobs", "2"});
  const int status = run_blocklab(args, tmp.path / "sweep.log");
  INFO(slurp(tmp.path / "sweep.log"));
  REQUIRE(status == 0);
  const fs::path dir = only_sweep(tmp.path / "sweeps");
  CHECK(count(states(dir), "done") == 18);
  const std::string log = slurp(tmp.path / "sweep.log");
  CHECK(log.find("2 workers x 1 threads") != std::string::npos);  // 2 jobs x 1 thread on 2 cores
  // Every job's run exists and ran with the launcher's thread count.
  const SweepDirectory s = read_sweep_directory(dir.string());
  for (const auto& job : s.jobs) {
    const JobState st = read_job_state(s, job);
    CHECK(fs::exists(dir / st.run_dir / "summary.json"));
    CHECK(slurp(dir / st.run_dir / "config.yaml").find("threads: 1") != std::string::npos);
  }

  REQUIRE(run_blocklab({"table", dir.string(), "--rows", "model.mixer.heads", "--cols", "trainer.lr", "--metric",
                        "test/acc", "--format", "csv"},
                       tmp.path / "table.csv") == 0);
  std::istringstream csv(slurp(tmp.path / "table.csv"));
  std::string header, line;
  std::getline(csv, header);
  std::vector<std::string> columns;
  std::istringstream h(header);
  for (std::string c; std::getline(h, c, ',');) columns.push_back(c);
  const auto n_column = std::find(columns.begin(), columns.end(), "n") - columns.begin();
  REQUIRE(n_column < static_cast<long>(columns.size()));
  int cells = 0;
  while (std::getline(csv, line)) {
    if (line.empty() || line.rfind("wrote ", 0) == 0) continue;  // stderr: where the files went
    std::vector<std::string> fields;
    std::istringstream l(line);
    for (std::string f; std::getline(l, f, ',');) fields.push_back(f);
    REQUIRE(fields.size() == columns.size());
    CHECK(fields[static_cast<std::size_t>(n_column)] == "3");
    ++cells;
  }
  CHECK(cells == 6);
  // The table and the plot were written into the sweep directory.
  bool md = false, png = false;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    md = md || e.path().extension() == ".md";
    png = png || e.path().extension() == ".png";
  }
  CHECK(md);
  CHECK(png);
}

TEST_CASE("killing the sweep driver midway: the same command runs only the unfinished jobs", "[sweep]") {
  TempDir tmp;
  // Four jobs of a few seconds each, one at a time.
  const auto args = sweep_args(tmp.path / "sweeps",
                               with_tiny({"dataset.limit_train=1024", "trainer.epochs=2",
                                          "trainer.checkpoint_every=8", "seed=0,1,2,3"}),
                               {"--jobs", "1"});
  const pid_t driver = spawn_blocklab(args, tmp.path / "first.log");
  fs::path dir;
  bool killed = false;
  // Polls for up to 3 minutes: on a loaded machine the first job alone can take a minute.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  while (!killed && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!fs::exists(tmp.path / "sweeps") || fs::is_empty(tmp.path / "sweeps")) continue;
    dir = only_sweep(tmp.path / "sweeps");
    if (!fs::exists(dir / "manifest.jsonl")) continue;
    const auto st = states(dir);
    if (count(st, "done") != 1 || count(st, "running") != 1) continue;
    // The second job is running: kill the driver once its run has written a checkpoint.
    std::string run = slurp(dir / "jobs" / read_sweep_directory(dir.string()).jobs[1].id / "run_dir.txt");
    if (!run.empty() && run.back() == '\n') run.pop_back();
    if (!run.empty() && fs::exists(fs::path(run) / "checkpoints" / "last.ckpt")) killed = kill(driver, SIGKILL) == 0;
  }
  REQUIRE(killed);
  CHECK(wait_status(driver) == 128 + SIGKILL);
  const SweepDirectory s = read_sweep_directory(dir.string());
  const std::string first_state = slurp(dir / "jobs" / s.jobs[0].id / "state.json");
  // The driver's job processes die with it (no orphan keeps writing into the sweep).
  bool orphans = true;
  for (int i = 0; i < 100 && orphans; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    orphans = process_mentions(dir.string());
  }
  CHECK_FALSE(orphans);
  CHECK(read_job_state(s, s.jobs[1]).state == "running");  // its worker is gone, the ledger says so

  REQUIRE(run_blocklab(args, tmp.path / "second.log") == 0);
  const std::string second = slurp(tmp.path / "second.log");
  CHECK(second.find("(1 done already)") != std::string::npos);
  CHECK(second.find("running 3 with") != std::string::npos);
  CHECK(count(states(dir), "done") == 4);
  CHECK(slurp(dir / "jobs" / s.jobs[0].id / "state.json") == first_state);  // not run again
  CHECK(read_job_state(s, s.jobs[1]).attempts == 2);
  CHECK(read_job_state(s, s.jobs[2]).attempts == 1);
  // The interrupted job continued from its checkpoint rather than starting over.
  CHECK(slurp(dir / read_job_state(s, s.jobs[1]).run_dir / "log.txt").find("resumed at step") != std::string::npos);
}

TEST_CASE("a job that always fails: the others finish, the status is non-zero, the table marks it", "[sweep]") {
  TempDir tmp;
  const auto args = sweep_args(tmp.path / "sweeps",
                               with_tiny({"++dataset.root=/nonexistent,/usr/share/datasets/fashion-mnist", "seed=0,1"}),
                               {"--jobs", "2"});
  CHECK(run_blocklab(args, tmp.path / "sweep.log") == 1);
  const fs::path dir = only_sweep(tmp.path / "sweeps");
  const auto st = states(dir);
  CHECK(count(st, "done") == 2);
  CHECK(count(st, "failed") == 2);
  const SweepDirectory s = read_sweep_directory(dir.string());
  const JobState failed = read_job_state(s, s.jobs[0]);
  CHECK(failed.state == "failed");
  CHECK(failed.reason.find("/nonexistent/train-images-idx3-ubyte.gz") != std::string::npos);
  CHECK(failed.exit_code == 2);
  CHECK(slurp(tmp.path / "sweep.log").find("2 done, 2 failed") != std::string::npos);

  CHECK(run_blocklab({"status", dir.string()}, tmp.path / "status.log") == 1);
  CHECK(slurp(tmp.path / "status.log").find("file is missing") != std::string::npos);

  REQUIRE(run_blocklab({"table", dir.string(), "--rows", "dataset.root", "--cols", "seed", "--metric", "test/acc"},
                       tmp.path / "table.md") == 0);
  CHECK(slurp(tmp.path / "table.md").find("failed") != std::string::npos);

  // Without --retry-failed nothing runs again; with it the failed jobs get another attempt.
  CHECK(run_blocklab(args, tmp.path / "again.log") == 1);
  CHECK(slurp(tmp.path / "again.log").find("running 0 with") != std::string::npos);
  auto retry = args;
  retry.push_back("--retry-failed");
  CHECK(run_blocklab(retry, tmp.path / "retry.log") == 1);
  CHECK(read_job_state(s, s.jobs[0]).attempts == 2);
  CHECK(read_job_state(s, s.jobs[1]).attempts == 2);
  CHECK(read_job_state(s, s.jobs[2]).attempts == 1);
}

TEST_CASE("blocklab job runs one job by index, idempotently", "[sweep]") {
  TempDir tmp;
  REQUIRE(run_blocklab(sweep_args(tmp.path / "sweeps", with_tiny({"seed=0,1"}), {"--dry-run"}),
                       tmp.path / "plan.log") == 0);
  const fs::path dir = only_sweep(tmp.path / "sweeps");
  CHECK(count(states(dir), "pending") == 2);
  CHECK(run_blocklab({"job", dir.string(), "--index", "1", "--threads", "1"}, tmp.path / "job.log") == 0);
  CHECK(states(dir) == std::vector<std::string>{"pending", "done"});
  CHECK(run_blocklab({"job", dir.string(), "--index", "1"}, tmp.path / "again.log") == 0);
  CHECK(slurp(tmp.path / "again.log").find("done already") != std::string::npos);
  CHECK(run_blocklab({"job", dir.string(), "--index", "2"}, tmp.path / "bad.log") == 2);
  CHECK(run_blocklab({"status", (tmp.path / "nowhere").string()}, tmp.path / "nowhere.log") == 2);
  CHECK(slurp(tmp.path / "nowhere.log").find("is not a sweep directory") != std::string::npos);
}

TEST_CASE("two drivers on the same sweep never run the same job", "[sweep]") {
  TempDir tmp;
  const auto args = sweep_args(tmp.path / "sweeps", with_tiny({"seed=0,1,2,3,4,5"}), {"--jobs", "1"});
  const pid_t a = spawn_blocklab(args, tmp.path / "a.log");
  const pid_t b = spawn_blocklab(args, tmp.path / "b.log");
  const int status_a = wait_status(a), status_b = wait_status(b);
  INFO(slurp(tmp.path / "a.log") << slurp(tmp.path / "b.log"));
  CHECK(status_a == 0);
  CHECK(status_b == 0);
  const fs::path dir = only_sweep(tmp.path / "sweeps");
  const SweepDirectory s = read_sweep_directory(dir.string());
  for (const auto& job : s.jobs) {
    const JobState st = read_job_state(s, job);
    CHECK(st.state == "done");
    CHECK(st.attempts == 1);  // claimed and run exactly once
    CHECK_FALSE(fs::exists(dir / "jobs" / job.id / "claim"));
  }
  // Each job was run by one driver: the "done" lines of both add up to the six jobs.
  auto done_lines = [](const std::string& log) {
    int n = 0;
    for (std::size_t at = 0; (at = log.find("] done ", at)) != std::string::npos; ++at) ++n;
    return n;
  };
  CHECK(done_lines(slurp(tmp.path / "a.log")) + done_lines(slurp(tmp.path / "b.log")) == 6);
}

TEST_CASE("Ctrl-C on the driver: runs checkpoint, their jobs stay pending, the next call finishes them", "[sweep]") {
  TempDir tmp;
  const auto args = sweep_args(tmp.path / "sweeps",
                               with_tiny({"dataset.limit_train=2048", "trainer.epochs=2", "seed=0,1"}), {"--jobs", "2"});
  const pid_t driver = spawn_blocklab(args, tmp.path / "first.log");
  bool sent = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);  // a loaded machine
  while (!sent && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!fs::exists(tmp.path / "sweeps") || fs::is_empty(tmp.path / "sweeps")) continue;
    const fs::path dir = only_sweep(tmp.path / "sweeps");
    if (!fs::exists(dir / "manifest.jsonl")) continue;
    const SweepDirectory s = read_sweep_directory(dir.string());
    std::string run = slurp(dir / "jobs" / s.jobs[0].id / "run_dir.txt");
    if (!run.empty() && run.back() == '\n') run.pop_back();
    if (!run.empty() && slurp(fs::path(run) / "metrics.jsonl").find("\"step\": 8,") != std::string::npos)
      sent = kill(driver, SIGINT) == 0;
  }
  REQUIRE(sent);
  CHECK(wait_status(driver) == 130);
  const fs::path dir = only_sweep(tmp.path / "sweeps");
  CHECK(count(states(dir), "pending") == 2);
  CHECK(slurp(tmp.path / "first.log").find("run the same command again to continue") != std::string::npos);
  REQUIRE(run_blocklab(args, tmp.path / "second.log") == 0);
  const SweepDirectory s = read_sweep_directory(dir.string());
  CHECK(count(states(dir), "done") == 2);
  CHECK(slurp(dir / read_job_state(s, s.jobs[0]).run_dir / "log.txt").find("resumed at step") != std::string::npos);
}

TEST_CASE("sweeps over 10,000 points need --allow-large; the count comes before any composing", "[sweep][golden]") {
  const std::string dir = default_config_dir();
  // Ranges are counted, not made: a billion values are refused at once.
  CHECK(SweepPlanner({dir, "vit_fmnist", {"seed=range(0,10000)"}}).size() == 10000);
  CHECK(SweepPlanner({dir, "vit_fmnist", {"seed=range(0,7,3)", "trainer.lr=1e-3,2e-3"}}).size() == 6);
  for (const char* r : {"trainer.lr=range(0.1,0.4,0.1)", "trainer.lr=range(1e-3,2e-3,2.5e-4)", "seed=range(5,0,-2)",
                        "trainer.epochs=range(1,2)"}) {
    INFO(r);
    CHECK(SweepPlanner({dir, "vit_fmnist", {r}}).size() == plan({r}).jobs.size());
  }
  const std::string text = error_text([&] {
    SweepPlanner({dir, "vit_fmnist", {"seed=range(0,1000)", "trainer.lr=1e-3,2e-3,3e-3,4e-3,5e-3,6e-3,7e-3,8e-3,9e-3,1e-2,2e-2"}});
  });
  const std::string mismatch = golden_mismatch("sweep_too_large", text);
  INFO(mismatch);
  CHECK(mismatch.empty());
  CHECK(SweepPlanner({dir, "vit_fmnist", {"seed=range(0,11000)"}, /*allow_large=*/true}).size() == 11000);
  const std::string eleven = "trainer.lr=1e-3,2e-3,3e-3,4e-3,5e-3,6e-3,7e-3,8e-3,9e-3,1e-2,2e-2";
  CHECK_THROWS_WITH(SweepPlanner({dir, "vit_fmnist", {"seed=range(0,100000)", eleven}, true}),
                    Catch::Contains("the sweep has 1,100,000 points") &&
                        Catch::Contains("at most 1,000,000 points: split the sweep"));
  // A product too large to count is said as such (no overflow), before any value is made.
  CHECK_THROWS_WITH(SweepPlanner({dir, "vit_fmnist",
                                  {"seed=range(0,100000)", "trainer.epochs=range(0,100000)", "model.dim=range(0,100000)",
                                   "model.depth=range(0,100000)"},
                                  true}),
                    Catch::Contains("the sweep has more than 10^18 points"));

  // The command says the same and exits 2 at once, writing nothing.
  TempDir tmp;
  const auto start = std::chrono::steady_clock::now();
  CHECK(run_blocklab(sweep_args(tmp.path / "sweeps", {"seed=range(0,100000)"}, {"--dry-run"}), tmp.path / "big.log") == 2);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
  CHECK_THAT(slurp(tmp.path / "big.log"), Catch::Contains("the sweep has 100,000 points, more than 10,000") &&
                                              Catch::Contains("need --allow-large"));
  CHECK_FALSE(fs::exists(tmp.path / "sweeps"));
}

TEST_CASE("planning streams into the sweep directory: same ids as in memory, nothing left on failure", "[sweep]") {
  TempDir tmp;
  const fs::path root = tmp.path / "sweeps";
  const std::vector<std::string> overrides = {"seed=0,1,2", "trainer.lr=1e-3,2e-3"};
  std::size_t jobs = 0;
  const fs::path dir = plan_sweep_directory({default_config_dir(), "vit_fmnist", overrides}, root.string(), &jobs);
  const SweepPlan in_memory = plan(overrides);
  CHECK(jobs == 6);
  CHECK(dir.filename() == in_memory.id);  // the streamed hash equals the hash of the whole key
  CHECK(only_sweep(root) == dir);          // no staging directory left behind
  const SweepDirectory read = read_sweep_directory(dir.string());
  REQUIRE(read.jobs.size() == 6);
  for (std::size_t i = 0; i < 6; ++i) {
    CHECK(read.jobs[i].id == in_memory.jobs[i].id);
    CHECK(fs::exists(dir / "jobs" / read.jobs[i].id / "config.yaml"));
  }
  // A deleted sweep.json comes back when the same sweep is planned again; the ledger stays.
  JobState done;
  done.state = "done";
  write_job_state(read, read.jobs[0], done);
  fs::remove(dir / "sweep.json");
  CHECK(plan_sweep_directory({default_config_dir(), "vit_fmnist", overrides}, root.string()) == dir.string());
  CHECK(read_sweep_directory(dir.string()).id == in_memory.id);
  CHECK(read_job_state(read, read.jobs[0]).state == "done");
  // So does a deleted manifest.
  fs::remove(dir / "manifest.jsonl");
  CHECK(plan_sweep_directory({default_config_dir(), "vit_fmnist", overrides}, root.string()) == dir.string());
  CHECK(read_sweep_directory(dir.string()).jobs.size() == 6);
  CHECK(only_sweep(root) == dir);
  // An invalid point: the report, and no directory at all.
  const fs::path other = tmp.path / "other";
  CHECK_THROWS_AS(plan_sweep_directory({default_config_dir(), "vit_fmnist", {"trainer.lr=1e-3,-1"}}, other.string()),
                  ConfigError);
  CHECK_FALSE(fs::exists(other));
}

TEST_CASE("status on a corrupt ledger names the file and the fix, exit 2", "[sweep][golden]") {
  TempDir tmp;
  const fs::path dir = plan_sweep_directory({default_config_dir(), "vit_fmnist", {"seed=0,1"}}, (tmp.path / "s").string());
  const SweepDirectory sweep = read_sweep_directory(dir.string());
  int calls = 0;
  auto status = [&] {
    const fs::path log = tmp.path / ("status" + std::to_string(++calls) + ".log");
    const int code = run_blocklab({"status", dir.string()}, log);
    std::string text = slurp(log);
    for (const auto& [from, to] : {std::pair{dir.string(), std::string("<sweep>")}, std::pair{sweep.jobs[1].id, std::string("<job>")}})
      for (std::size_t at; (at = text.find(from)) != std::string::npos;) text.replace(at, from.size(), to);
    return std::make_pair(code, text);
  };
  CHECK(status().first == 0);
  std::string report;
  const fs::path state = dir / "jobs" / sweep.jobs[1].id / "state.json";
  const fs::path manifest = dir / "manifest.jsonl", info = dir / "sweep.json";
  const std::string manifest_text = slurp(manifest), info_text = slurp(info);
  const std::vector<std::pair<fs::path, std::string>> damage = {
      {state, "{\"job\": \"x\", \"state\": \"do"},  // truncated
      {state, "garbage\n"},
      {state, "{\"state\": \"finished\"}\n"},
      {state, "{\"state\": [1, 2]}\n"},
      {manifest, manifest_text.substr(0, manifest_text.find('\n') + 1)},   // a whole line lost
      {manifest, manifest_text.substr(0, manifest_text.find('\n') + 20)},  // cut mid-line
      {manifest, "{\"index\": 0, \"job\": \"../../etc\"}\n"},
      {info, info_text.substr(0, 20)},
      {info, "[]\n"},
  };
  for (const auto& [file, text] : damage) {
    std::ofstream(file, std::ios::binary) << text;
    const auto [code, out] = status();
    INFO(out);
    CHECK(code == 2);
    report += out;
    std::ofstream(manifest, std::ios::binary) << manifest_text;  // repaired for the next case
    std::ofstream(info, std::ios::binary) << info_text;
    fs::remove(state);
  }
  const std::string mismatch = golden_mismatch("status_corrupt_ledger", report);
  INFO(mismatch);
  CHECK(mismatch.empty());
  CHECK(status().first == 0);
}

TEST_CASE("Slurm array script with tasks per job: --ntasks, srun starts every rank, valid bash", "[sweep]") {
  SlurmOptions o;
  o.binary = "/opt/blocklab/build/blocklab";
  o.sweep_dir = "/home/me/results/sweeps/0123456789ab";
  o.job_name = "blocklab-vit_fmnist-0123456789ab";
  o.indices = {0, 1};
  o.cpus_per_task = 2;
  o.tasks_per_job = 4;
  const std::string script = slurm_script(o);
  INFO(script);
  CHECK_THAT(script,
             Catch::Contains("\n#SBATCH --ntasks=4\n#SBATCH --cpus-per-task=2\n") &&
                 Catch::Contains("\nsrun --ntasks=4 --cpus-per-task=\"${SLURM_CPUS_PER_TASK:-1}\" "
                                 "'/opt/blocklab/build/blocklab' job '/home/me/results/sweeps/0123456789ab' "
                                 "--index \"$SLURM_ARRAY_TASK_ID\" --threads \"${SLURM_CPUS_PER_TASK:-1}\" &\n") &&
                 Catch::Contains("rm -f '/home/me/results/sweeps/0123456789ab/slurm/steps/'\"$SLURM_JOB_ID\".* "
                                 "'/home/me/results/sweeps/0123456789ab/runs/.rendezvous/slurm-'"
                                 "\"$SLURM_JOB_ID\".*\n"));
  TempDir tmp;
  std::ofstream(tmp.path / "ranks.sbatch") << script;
  CHECK(std::system(("bash -n " + (tmp.path / "ranks.sbatch").string()).c_str()) == 0);
  o.tasks_per_job = 1;  // one task per job: the batch shell runs the job itself
  const std::string one = slurm_script(o);
  CHECK(one.find("srun") == std::string::npos);
  CHECK(one.find("--ntasks") == std::string::npos);
}

TEST_CASE("--tasks-per-job: with Slurm only, and every point's batch splits into the ranks", "[sweep]") {
  TempDir tmp;
  const std::vector<std::string> slurm = {"--launcher", "slurm", "--tasks-per-job", "4", "--dry-run"};
  CHECK(run_blocklab(sweep_args(tmp.path / "odd", {"trainer.batch_size=30,32"}, slurm), tmp.path / "odd.log") == 2);
  CHECK_THAT(slurp(tmp.path / "odd.log"),
             Catch::Contains("trainer.batch_size 30 does not split into 4 equal shards, one per data-parallel rank") &&
                 Catch::Contains("another --tasks-per-job") && Catch::Contains("in 1 of 2 sweep points"));
  CHECK_FALSE(fs::exists(tmp.path / "odd"));  // refused while planning: nothing written

  REQUIRE(run_blocklab(sweep_args(tmp.path / "even", {"trainer.batch_size=32,64"}, slurm), tmp.path / "even.log") == 0);
  const std::string script = slurp(only_sweep(tmp.path / "even") / "slurm" / "sweep.sbatch");
  CHECK_THAT(script, Catch::Contains("#SBATCH --ntasks=4\n") && Catch::Contains("\nsrun --ntasks=4 "));

  CHECK(run_blocklab(sweep_args(tmp.path / "local", {"seed=0,1"}, {"--tasks-per-job", "2", "--dry-run"}),
                     tmp.path / "local.log") == 2);
  CHECK_THAT(slurp(tmp.path / "local.log"), Catch::Contains("--tasks-per-job is for --launcher slurm"));
  CHECK(run_blocklab(sweep_args(tmp.path / "zero", {"seed=0,1"}, {"--launcher", "slurm", "--tasks-per-job", "0"}),
                     tmp.path / "zero.log") == 2);
  CHECK_FALSE(fs::exists(tmp.path / "local"));
}

TEST_CASE("blocklab job as two ranks of a Slurm step: rank 0 keeps the ledger, rank 1 joins its run", "[sweep]") {
  TempDir tmp;
  REQUIRE(run_blocklab(sweep_args(tmp.path / "sweeps", with_tiny({"seed=0,1"}), {"--dry-run"}),
                       tmp.path / "plan.log") == 0);
  const fs::path dir = only_sweep(tmp.path / "sweeps");
  // The environment srun gives each task (no Slurm needed): the ranks meet in a file store in
  // the sweep's runs directory, Gloo over loopback.
  auto rank = [&](int r, const std::string& step, const std::string& log) {
    std::vector<std::string> args = {"-u",
                                     "MASTER_ADDR",
                                     "-u",
                                     "MASTER_PORT",
                                     "-u",
                                     "SLURM_RESTART_COUNT",
                                     "-u",
                                     "BLOCKLAB_WORLD_SIZE",
                                     "SLURM_STEP_NUM_TASKS=2",
                                     "SLURM_JOB_ID=4242",
                                     "SLURM_STEP_TASKS_PER_NODE=2",
                                     "GLOO_SOCKET_IFNAME=lo"};
    args.push_back("SLURM_PROCID=" + std::to_string(r));
    args.push_back("SLURM_STEP_ID=" + step);
    for (const char* a : {BLOCKLAB_BINARY, "job", dir.c_str(), "--index", "0", "--threads", "1"}) args.push_back(a);
    return spawn_program("/usr/bin/env", args, tmp.path / log);
  };
  const pid_t follower = rank(1, "0", "rank1.log");  // first: it waits for rank 0's word
  const pid_t leader = rank(0, "0", "rank0.log");
  const int follower_status = wait_status(follower), leader_status = wait_status(leader);
  INFO(slurp(tmp.path / "rank0.log") << slurp(tmp.path / "rank1.log"));
  CHECK(leader_status == 0);
  CHECK(follower_status == 0);
  const SweepDirectory s = read_sweep_directory(dir.string());
  const JobState st = read_job_state(s, s.jobs[0]);
  CHECK(st.state == "done");
  CHECK(st.attempts == 1);  // claimed and recorded once, by rank 0
  CHECK(read_job_state(s, s.jobs[1]).state == "pending");
  CHECK(slurp(dir / "slurm" / "steps" / "4242.0") == "run\n");
  CHECK_THAT(slurp(dir / st.run_dir / "summary.json"), Catch::Contains("\"world_size\": 2"));
  CHECK_THAT(slurp(tmp.path / "rank1.log"), Catch::Contains("rank 1 of 2: exit status 0"));

  // The next step finds the job done: rank 0 says so, rank 1 runs nothing.
  const pid_t follower2 = rank(1, "1", "again1.log");
  const pid_t leader2 = rank(0, "1", "again0.log");
  CHECK(wait_status(follower2) == 0);
  CHECK(wait_status(leader2) == 0);
  CHECK(slurp(dir / "slurm" / "steps" / "4242.1") == "exit 0\n");
  CHECK_THAT(slurp(tmp.path / "again0.log"), Catch::Contains("done already"));
  CHECK(read_job_state(s, s.jobs[0]).attempts == 1);
}

}  // namespace BLOCKLAB_TEST_FILE
