// The training loop's contract (experiments/training/loop.h), tested per task: the same tests
// run for classify (the blocklab executable), for the test-only regression task
// (tests/tasks/regress_task.cpp, in blocklab_test_tasks) and for seqcls (ListOps), so what the
// loop promises holds whatever the hooks are: bit-identical reruns, exact resume after SIGKILL
// and after SIGTERM (exit 75), and a loss that is not finite ending the run as diverged (exit 3)
// with the last good checkpoint kept.
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <random>
#include <sstream>
#include <thread>

#include "tests/process_support.h"
#include "tests/tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;
using namespace blocklab::testing;

namespace {

// One task on the loop, as the contract runs it: a run of a few seconds, 48 steps of which
// the metrics lines (trainer.log_every=4) show every 4th.
struct LoopTaskCase {
  std::string name;
  std::string binary;
  std::string experiment;
  std::vector<std::string> base;       // overrides and options of the short run
  std::vector<std::string> diverging;  // overrides under which the loss stops being finite

  std::vector<std::string> args(const fs::path& out, const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> a = {"run", experiment, "-q", "output_dir=" + out.string()};
    a.insert(a.end(), base.begin(), base.end());
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  pid_t spawn(const fs::path& out, const std::vector<std::string>& extra, const fs::path& log) const {
    return spawn_program(binary, args(out, extra), log);
  }
  int run(const fs::path& out, const std::vector<std::string>& extra, const fs::path& log) const {
    return wait_status(spawn(out, extra, log));
  }
  fs::path dir(const fs::path& out) const { return run_dir(out, experiment); }
};

std::vector<LoopTaskCase> loop_tasks() {
  const LoopTaskCase classify{"classify", BLOCKLAB_BINARY, "vit_fmnist", tiny_overrides(),
                              {"optimizer=sgd", "trainer.lr=1e8", "trainer.clip_grad=0.0", "optimizer.momentum=0.99",
                               "trainer.warmup=0.0", "trainer.label_smoothing=0.0"}};
  const LoopTaskCase regress{"test/regress", BLOCKLAB_TEST_TASKS_BINARY, "regress",
                             {"--config-dir", std::string(BLOCKLAB_TEST_DIR) + "/tasks/conf"},
                             {"optimizer.type=sgd", "trainer.lr=1e8", "trainer.clip_grad=0.0", "trainer.warmup=0.0"}};
  const LoopTaskCase seqcls{"seqcls", BLOCKLAB_BINARY, "listops", tiny_listops_overrides(), classify.diverging};
  // forecast: Autoformer (slow enough per step to be signalled mid-run; its training path draws
  // the delays from the batch) on a synthetic series whose 520 training windows make 16 batches.
  std::vector<std::string> forecast_base = forecast_tiny_overrides();
  forecast_base.push_back("model=autoformer");
  const LoopTaskCase forecast{"forecast",
                              BLOCKLAB_BINARY,
                              "forecast_temps",
                              forecast_base,
                              {"optimizer=sgd", "trainer.lr=1e8", "trainer.clip_grad=0.0", "optimizer.momentum=0.99"}};
  const LoopTaskCase lm{
      "lm",
      BLOCKLAB_BINARY,
      "lm_kjv",
      tiny_lm_overrides(),
      {"optimizer=sgd", "trainer.lr=1e8", "trainer.clip_grad=0.0", "optimizer.momentum=0.99", "trainer.warmup=0.0"}};
  const LoopTaskCase recall{
      "recall",
      BLOCKLAB_BINARY,
      "mqar",
      {"model.dim=16", "model.stack.depth=1", "model.mixer.heads=2", "dataset.vocabulary=64",
       "dataset.train_seq_len=[16,32]", "dataset.train_kv_pairs=[2,4]", "dataset.train_examples=[64,64]",
       "dataset.val_examples=16", "dataset.test_seq_len=[16,32]", "dataset.test_kv_pairs=[2,8]",
       "dataset.test_examples=16", "trainer.batch_size=8", "trainer.epochs=3", "trainer.log_every=4",
       "trainer.eval_batch_size=32", "threads=1"},
      {"optimizer=sgd", "trainer.lr=1e8", "trainer.clip_grad=0.0", "optimizer.momentum=0.99", "trainer.warmup=0.0"}};
  // supernet: the sandwich rule's random subnets come from (seed, epoch, batch), so a resumed run
  // draws what the uninterrupted one drew.
  const LoopTaskCase supernet{
      "supernet",
      BLOCKLAB_BINARY,
      "fmnist_supernet",
      {"model.patch=7", "model.depths=[1,2]", "model.widths=[16,24]", "model.heads=[1,2]", "model.mlp_ratios=[1,2]",
       "model.head_dim=8", "dataset.limit_train=512", "dataset.limit_test=200", "dataset.val_size=0",
       "trainer.batch_size=32", "trainer.epochs=3", "trainer.log_every=4", "trainer.eval_batch_size=100", "threads=1"},
      classify.diverging};
  // performance_aware: what a step draws depends on the banks' memory too, which the checkpoint
  // keeps; a resumed run that lost it would draw other subnets and differ.
  LoopTaskCase supernet_memory = supernet;
  supernet_memory.name = "supernet_memory";
  for (const char* o : {"trainer.sampler=performance_aware", "trainer.mflops_banks=[0.01,0.02,0.03]",
                        "trainer.mflops_bound=0.005", "trainer.memory_rate=0.5", "trainer.random_subnets=3"})
    supernet_memory.base.push_back(o);
  return {classify, regress, seqcls, forecast, lm, recall, supernet, supernet_memory};
}

// Waits (up to a minute) until the run under `out` has logged training step `step`.
bool wait_for_step(const LoopTaskCase& task, const fs::path& out, long step) {
  for (int i = 0; i < 12000; ++i) {
    if (fs::exists(out / task.experiment) && !fs::is_empty(out / task.experiment) &&
        slurp(task.dir(out) / "metrics.jsonl").find("\"step\": " + std::to_string(step) + ",") != std::string::npos)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// Runs `task` until step `step`, sends `sig` and returns the exit status.
int interrupt_at(const LoopTaskCase& task, const fs::path& out, const std::vector<std::string>& extra, long step,
                 int sig, const fs::path& log) {
  const pid_t pid = task.spawn(out, extra, log);
  const bool reached = wait_for_step(task, out, step);
  if (reached) kill(pid, sig);
  const int status = wait_status(pid);
  REQUIRE(reached);
  return status;
}

// summary.json's "best" is the best epoch's evaluation line of metrics.jsonl, verbatim (after a
// resume too, when that epoch was evaluated before the interruption).
void check_best_is_logged(const fs::path& dir) {
  const std::string prefix = "{\"epoch\": " + summary_field(dir, "best_epoch") + ", \"step\": ";
  std::string line;
  std::istringstream metrics(slurp(dir / "metrics.jsonl"));
  for (std::string l; std::getline(metrics, l);)
    if (l.rfind(prefix, 0) == 0 && l.find("eval_time_s") != std::string::npos) line = l;
  REQUIRE_FALSE(line.empty());
  CHECK(slurp(dir / "summary.json").find("\"best\": " + line) != std::string::npos);
}

void check_same_run(const fs::path& a, const fs::path& b) {
  CHECK(metrics_without_timing(a) == metrics_without_timing(b));
  CHECK(!summary_field(a, "weights_fnv1a64").empty());
  CHECK(summary_field(a, "weights_fnv1a64") == summary_field(b, "weights_fnv1a64"));
  CHECK(summary_field(a, "best_epoch") == summary_field(b, "best_epoch"));
  check_best_is_logged(a);
  check_best_is_logged(b);
}

}  // namespace

TEST_CASE("loop contract: the same seed reruns bit for bit, another seed differs", "[loop]") {
  const LoopTaskCase task = GENERATE(from_range(loop_tasks()));
  INFO("task " << task.name);
  TempDir tmp;
  REQUIRE(task.run(tmp.path / "a", {}, tmp.path / "a.log") == 0);
  REQUIRE(task.run(tmp.path / "b", {}, tmp.path / "b.log") == 0);
  const fs::path a = task.dir(tmp.path / "a"), b = task.dir(tmp.path / "b");
  CHECK(a.filename() == b.filename());
  check_same_run(a, b);
  CHECK(summary_field(a, "steps") == "48");
  for (const char* f : {"config.yaml", "env.json", "log.txt", "checkpoints/last.ckpt", "checkpoints/best.ckpt"})
    CHECK(fs::exists(a / f));
  REQUIRE(task.run(tmp.path / "c", {"seed=1"}, tmp.path / "c.log") == 0);
  CHECK(summary_field(task.dir(tmp.path / "c"), "weights_fnv1a64") != summary_field(a, "weights_fnv1a64"));
}

TEST_CASE("loop contract: SIGKILL mid-run, then --resume equals the uninterrupted run", "[loop]") {
  const LoopTaskCase task = GENERATE(from_range(loop_tasks()));
  INFO("task " << task.name);
  TempDir tmp;
  const std::vector<std::string> every5 = {"trainer.checkpoint_every=5"};
  REQUIRE(task.run(tmp.path / "full", every5, tmp.path / "full.log") == 0);
  std::mt19937 rng(std::random_device{}());
  const long kill_at = 8 + 4 * static_cast<long>(rng() % 9);  // a logged step in 8..40
  INFO("SIGKILL after step " << kill_at);
  const fs::path out = tmp.path / "killed";
  CHECK(interrupt_at(task, out, every5, kill_at, SIGKILL, tmp.path / "killed.log") == 128 + SIGKILL);
  CHECK_FALSE(fs::exists(task.dir(out) / "summary.json"));
  REQUIRE(task.run(out, {"trainer.checkpoint_every=5", "--resume"}, tmp.path / "resume.log") == 0);
  check_same_run(task.dir(out), task.dir(tmp.path / "full"));
}

TEST_CASE("loop contract: SIGTERM checkpoints and exits 75, --resume equals the uninterrupted run", "[loop]") {
  const LoopTaskCase task = GENERATE(from_range(loop_tasks()));
  INFO("task " << task.name);
  TempDir tmp;
  REQUIRE(task.run(tmp.path / "full", {}, tmp.path / "full.log") == 0);
  const fs::path out = tmp.path / "stopped";
  CHECK(interrupt_at(task, out, {}, 12, SIGTERM, tmp.path / "stopped.log") == 75);
  const fs::path dir = task.dir(out);
  CHECK(fs::exists(dir / "checkpoints/last.ckpt"));  // no periodic checkpoints: the signal's
  CHECK_FALSE(fs::exists(dir / "summary.json"));
  CHECK(slurp(dir / "log.txt").find("after a checkpoint; continue with --resume") != std::string::npos);
  REQUIRE(task.run(out, {"--resume"}, tmp.path / "resume.log") == 0);
  check_same_run(dir, task.dir(tmp.path / "full"));
}

TEST_CASE("loop contract: a loss that is not finite ends the run as diverged, exit 3, last good checkpoint kept",
          "[loop]") {
  const LoopTaskCase task = GENERATE(from_range(loop_tasks()));
  INFO("task " << task.name);
  TempDir tmp;
  const fs::path out = tmp.path / "nan";
  std::vector<std::string> extra = task.diverging;
  extra.push_back("trainer.checkpoint_every=1");
  REQUIRE(task.run(out, extra, tmp.path / "nan.log") == 3);
  const fs::path dir = task.dir(out);
  INFO(slurp(tmp.path / "nan.log"));
  const std::string status = summary_field(dir, "status");
  REQUIRE(status.rfind("\"diverged at step ", 0) == 0);
  const long diverged_at = std::stol(status.substr(std::string("\"diverged at step ").size()));
  CHECK(diverged_at > 1);  // so that a good checkpoint came before it
  CHECK(slurp(dir / "checkpoints/last.ckpt").rfind("BLKCKPT1", 0) == 0);
  CHECK(slurp(dir / "metrics.jsonl").find("\"step\": " + std::to_string(diverged_at) + ", \"loss\": ") !=
        std::string::npos);
  CHECK(slurp(dir / "metrics.jsonl").find("\"diverged\": true") != std::string::npos);
  CHECK(slurp(tmp.path / "nan.log").find("the last good checkpoint is kept in " + dir.string()) != std::string::npos);
  // The same config again: reported as diverged, not retrained.
  CHECK(task.run(out, extra, tmp.path / "again.log") == 3);
  CHECK(slurp(tmp.path / "again.log").find("an identical run diverged at step") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
