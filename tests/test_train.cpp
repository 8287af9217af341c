// End-to-end training runs of the blocklab executable at a tiny size: reproducibility,
// exact resume after SIGKILL, atomic checkpoints, corrupt checkpoints, divergence.
#include <catch2/catch.hpp>

#include "process_support.h"
#include "tiny_run.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;
using namespace blocklab::testing;

namespace {

pid_t spawn(const std::vector<std::string>& args, const fs::path& log) { return spawn_blocklab(args, log); }
int run(const std::vector<std::string>& args, const fs::path& log) { return run_blocklab(args, log); }

}  // namespace

TEST_CASE("same config, seed and threads: bit-identical metrics and weights", "[train]") {
  TempDir tmp;
  REQUIRE(run(tiny((tmp.path / "a").string()), tmp.path / "a.log") == 0);
  REQUIRE(run(tiny((tmp.path / "b").string()), tmp.path / "b.log") == 0);
  const fs::path a = run_dir(tmp.path / "a"), b = run_dir(tmp.path / "b");
  CHECK(a.filename() == b.filename());  // content-addressed id, output_dir excluded
  CHECK(metrics_without_timing(a) == metrics_without_timing(b));
  CHECK(!summary_field(a, "weights_fnv1a64").empty());
  CHECK(summary_field(a, "weights_fnv1a64") == summary_field(b, "weights_fnv1a64"));
  for (const char* f : {"config.yaml", "overrides.yaml", "env.json", "log.txt", "checkpoints/last.ckpt",
                        "checkpoints/best.ckpt"})
    CHECK(fs::exists(a / f));
  // A different seed trains differently.
  REQUIRE(run(tiny((tmp.path / "c").string(), {"seed=1"}), tmp.path / "c.log") == 0);
  CHECK(summary_field(run_dir(tmp.path / "c"), "weights_fnv1a64") != summary_field(a, "weights_fnv1a64"));
  // Running the identical config again reports the finished run and changes nothing.
  const std::string before = slurp(a / "summary.json");
  CHECK(run(tiny((tmp.path / "a").string()), tmp.path / "a2.log") == 0);
  CHECK(slurp(a / "summary.json") == before);
}

TEST_CASE("trainer.val_every and trainer.keep_checkpoints, as mmengine's hooks do", "[train]") {
  TempDir tmp;
  // 5 epochs, evaluated every 2nd and at the last; the checkpoints of the last 2 epochs kept.
  REQUIRE(
      run(tiny((tmp.path / "a").string(), {"trainer.epochs=5", "trainer.val_every=2", "trainer.keep_checkpoints=2"}),
          tmp.path / "a.log") == 0);
  const fs::path a = run_dir(tmp.path / "a");
  std::vector<std::string> evaluated;
  std::istringstream metrics(slurp(a / "metrics.jsonl"));
  for (std::string line; std::getline(metrics, line);)
    if (line.find("\"eval_time_s\"") != std::string::npos) evaluated.push_back(line.substr(0, line.find(", \"step\"")));
  CHECK(evaluated == std::vector<std::string>{"{\"epoch\": 2", "{\"epoch\": 4", "{\"epoch\": 5"});
  std::vector<std::string> kept;
  for (const auto& e : fs::directory_iterator(a / "checkpoints")) kept.push_back(e.path().filename().string());
  std::sort(kept.begin(), kept.end());
  CHECK(kept == std::vector<std::string>{"best.ckpt", "epoch_4.ckpt", "epoch_5.ckpt", "last.ckpt"});
  // The default evaluates every epoch and keeps last and best only; val_every changes no weight.
  REQUIRE(run(tiny((tmp.path / "b").string(), {"trainer.epochs=5"}), tmp.path / "b.log") == 0);
  const fs::path b = run_dir(tmp.path / "b");
  CHECK(summary_field(a, "weights_fnv1a64") == summary_field(b, "weights_fnv1a64"));
  CHECK(!fs::exists(b / "checkpoints" / "epoch_5.ckpt"));
  CHECK(summary_field(a, "best_epoch") != "1");
}

TEST_CASE("SIGKILL at a random step, then --resume: equal to an uninterrupted run", "[runs]") {
  TempDir tmp;
  const std::vector<std::string> extra = {"trainer.checkpoint_every=5"};
  REQUIRE(run(tiny((tmp.path / "full").string(), extra), tmp.path / "full.log") == 0);
  const fs::path full = run_dir(tmp.path / "full");

  std::mt19937 rng(std::random_device{}());
  const int kill_after_step = 8 + static_cast<int>(rng() % 36);  // 48 steps; a checkpoint every 5
  const fs::path out = tmp.path / "killed";
  const pid_t pid = spawn(tiny(out.string(), extra), tmp.path / "killed.log");
  // Wait until metrics.jsonl shows the chosen step (a line every 4 steps), then SIGKILL.
  bool killed = false;
  for (int i = 0; i < 3000 && !killed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!has_run_dir(out)) continue;
    const fs::path dir = run_dir(out);
    const std::string m = slurp(dir / "metrics.jsonl");
    if (m.find("\"step\": " + std::to_string(kill_after_step / 4 * 4) + ",") != std::string::npos) {
      kill(pid, SIGKILL);
      killed = true;
    }
  }
  const int status = wait_status(pid);
  REQUIRE(killed);
  CHECK(status == 128 + SIGKILL);
  const fs::path dir = run_dir(out);
  CHECK_FALSE(fs::exists(dir / "summary.json"));
  // Without --resume the unfinished run is not silently redone.
  CHECK(run(tiny(out.string(), extra), tmp.path / "again.log") == 2);
  CHECK(slurp(tmp.path / "again.log").find("--resume") != std::string::npos);
  REQUIRE(run(tiny(out.string(), {"trainer.checkpoint_every=5", "--resume"}), tmp.path / "resume.log") == 0);
  CHECK(metrics_without_timing(dir) == metrics_without_timing(full));
  CHECK(summary_field(dir, "weights_fnv1a64") == summary_field(full, "weights_fnv1a64"));
}

TEST_CASE("a kill during a checkpoint write leaves a loadable checkpoint", "[runs]") {
  TempDir tmp;
  const fs::path out = tmp.path / "k";
  // A checkpoint after every step: a SIGKILL at a random instant often lands inside a write.
  const std::vector<std::string> every_step = {"trainer.checkpoint_every=1", "trainer.epochs=2"};
  auto args_now = [&] {
    std::vector<std::string> args = tiny(out.string(), every_step);
    const bool has_checkpoint = has_run_dir(out) && fs::exists(run_dir(out) / "checkpoints" / "last.ckpt");
    if (has_checkpoint) args.push_back("--resume");
    return args;
  };
  std::mt19937 rng(12345);
  int kills = 0;
  // The run has written a checkpoint (start-up can take seconds on a loaded machine).
  auto wait_for_checkpoint = [&] {
    for (int i = 0; i < 6000; ++i) {
      if (has_run_dir(out) && fs::exists(run_dir(out) / "checkpoints" / "last.ckpt")) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  for (int attempt = 0; attempt < 4; ++attempt) {
    const pid_t pid = spawn(args_now(), tmp.path / "k.log");
    const bool started = wait_for_checkpoint();
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 900));
    kills += kill(pid, SIGKILL) == 0;
    wait_status(pid);
    REQUIRE(started);
    // Never a temp file under a real name: what is there must verify.
    for (const auto& e : fs::directory_iterator(run_dir(out) / "checkpoints"))
      if (e.path().extension() == ".ckpt") CHECK(slurp(e.path()).rfind("BLKCKPT1", 0) == 0);
  }
  CHECK(kills > 0);
  // Whatever instant the kills hit, the run resumes from an intact checkpoint and finishes.
  INFO(slurp(tmp.path / "k.log"));
  REQUIRE(run(args_now(), tmp.path / "k.log") == 0);
  CHECK(summary_field(run_dir(out), "status") == "\"finished\"");
}

TEST_CASE("truncated or corrupted checkpoints: clear error, non-zero exit", "[runs]") {
  TempDir tmp;
  const fs::path out = tmp.path / "t";
  const std::vector<std::string> short_run = {"trainer.max_steps=8", "trainer.checkpoint_every=4"};
  const pid_t pid = spawn(tiny(out.string(), short_run), tmp.path / "t.log");
  wait_status(pid);
  const fs::path ckpt = run_dir(out) / "checkpoints" / "last.ckpt";
  REQUIRE(fs::exists(ckpt));
  fs::remove(run_dir(out) / "summary.json");  // pretend the run was interrupted
  const std::string bytes = slurp(ckpt);

  std::ofstream(ckpt, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);
  CHECK(run(tiny(out.string(), {"trainer.max_steps=8", "trainer.checkpoint_every=4", "--resume"}),
            tmp.path / "trunc.log") == 1);
  const std::string trunc = slurp(tmp.path / "trunc.log");
  CHECK(trunc.find("last.ckpt is truncated: expected " + std::to_string(bytes.size()) + " bytes, found " +
                   std::to_string(bytes.size() / 2)) != std::string::npos);

  std::string corrupt = bytes;
  corrupt[corrupt.size() / 2] ^= 0x5a;
  std::ofstream(ckpt, std::ios::binary | std::ios::trunc) << corrupt;
  CHECK(run(tiny(out.string(), {"trainer.max_steps=8", "trainer.checkpoint_every=4", "--resume"}),
            tmp.path / "corrupt.log") == 1);
  CHECK(slurp(tmp.path / "corrupt.log").find("last.ckpt is corrupt: checksum mismatch") != std::string::npos);
}

TEST_CASE("a NaN loss stops the run as diverged, keeping the last good checkpoint", "[runs]") {
  TempDir tmp;
  const fs::path out = tmp.path / "nan";
  const int status = run(tiny(out.string(), {"optimizer=sgd", "trainer.lr=1e8", "trainer.clip_grad=0.0",
                                             "optimizer.momentum=0.99", "trainer.warmup=0.0",
                                             "trainer.checkpoint_every=1", "trainer.label_smoothing=0.0"}),
                         tmp.path / "nan.log");
  CHECK(status == 3);
  const fs::path dir = run_dir(out);
  const std::string st = summary_field(dir, "status");
  CHECK(st.find("diverged at step") != std::string::npos);
  CHECK(fs::exists(dir / "checkpoints" / "last.ckpt"));
  CHECK(slurp(dir / "metrics.jsonl").find("\"diverged\": true") != std::string::npos);
  // Strict JSON: the non-finite loss is null with a flag (experiments/json_io.h), never NaN.
  CHECK(slurp(dir / "metrics.jsonl").find("\"loss\": null, \"loss_nonfinite\": \"") != std::string::npos);
  CHECK(slurp(dir / "metrics.jsonl").find("NaN") == std::string::npos);
  CHECK(slurp(dir / "metrics.jsonl").find("Infinity") == std::string::npos);
  CHECK(slurp(tmp.path / "nan.log").find("the last good checkpoint is kept") != std::string::npos);
}

TEST_CASE("SIGTERM or SIGUSR1 mid-run: checkpoint, exit 75, --resume equals an uninterrupted run", "[runs]") {
  TempDir tmp;
  REQUIRE(run(tiny((tmp.path / "full").string()), tmp.path / "full.log") == 0);
  const fs::path full = run_dir(tmp.path / "full");
  for (int sig : {SIGTERM, SIGUSR1}) {
    const fs::path out = tmp.path / ("stopped" + std::to_string(sig));
    const pid_t pid = spawn(tiny(out.string()), tmp.path / "stopped.log");
    bool sent = false;
    for (int i = 0; i < 3000 && !sent; ++i) {  // no periodic checkpoints: the signal's is the only one
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (has_run_dir(out) && slurp(run_dir(out) / "metrics.jsonl").find("\"step\": 8,") != std::string::npos)
        sent = kill(pid, sig) == 0;
    }
    REQUIRE(sent);
    CHECK(wait_status(pid) == 75);
    const fs::path dir = run_dir(out);
    CHECK(fs::exists(dir / "checkpoints/last.ckpt"));
    CHECK_FALSE(fs::exists(dir / "summary.json"));
    CHECK(slurp(dir / "log.txt").find("after a checkpoint; continue with --resume") != std::string::npos);
    REQUIRE(run(tiny(out.string(), {"--resume"}), tmp.path / "resume.log") == 0);
    CHECK(metrics_without_timing(dir) == metrics_without_timing(full));
    CHECK(summary_field(dir, "weights_fnv1a64") == summary_field(full, "weights_fnv1a64"));
  }
}

}  // namespace BLOCKLAB_TEST_FILE
