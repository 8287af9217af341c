// Guards around runs (issue 10): one writer per run directory, no silent success, errors before
// side effects, names that stay in their directory, failures recorded in one clear line, and
// a full disk that loses nothing silently.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <regex>
#include <thread>
#include <utility>
#include <vector>

#include "experiments/run_files.h"
#include "golden.h"
#include "process_support.h"
#include "tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;
using namespace blocklab::testing;

namespace {

void check_golden(const std::string& name, const std::string& text) {
  const std::string mismatch = golden_mismatch(name, text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

// Replaces what differs between runs and machines: temp paths, pids, host names, run ids.
std::string normalised(std::string text, const fs::path& tmp) {
  std::string::size_type at;
  while ((at = text.find(tmp.string())) != std::string::npos) text.replace(at, tmp.string().size(), "<tmp>");
  text = std::regex_replace(text, std::regex("pid [0-9]+ on host [^)\\s;]+"), "pid <pid> on host <host>");
  return std::regex_replace(text, std::regex("/[0-9a-f]{12}"), "/<id>");
}

// Polls until `pred` holds (every 5 ms, up to `seconds`).
template <class Pred>
bool eventually(Pred&& pred, double seconds = 30) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

bool strictly_increasing(const std::vector<long>& steps) {
  for (std::size_t i = 1; i < steps.size(); ++i)
    if (steps[i] <= steps[i - 1]) return false;
  return true;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Every file under `dir` whose name holds ".tmp." (a temp file left behind).
std::vector<std::string> temp_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
  return out;
}

// Whether a run under <out>/vit_fmnist has written a training line.
bool has_metrics(const fs::path& out) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out / "vit_fmnist", ec))
    if (slurp(e.path() / "metrics.jsonl").find("\"lr\"") != std::string::npos) return true;
  return false;
}

// Whether a run under <out>/vit_fmnist has written its first checkpoint.
bool has_checkpoint(const fs::path& out) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out / "vit_fmnist", ec))
    if (fs::exists(e.path() / "checkpoints" / "last.ckpt")) return true;
  return false;
}

// Starts a run and waits until it has written its first checkpoint; returns its pid.
pid_t start_until_checkpoint(const std::vector<std::string>& args, const fs::path& log, const fs::path& out) {
  const pid_t pid = spawn_blocklab(args, log);
  REQUIRE(eventually([&] { return has_checkpoint(out); }));
  return pid;
}

}  // namespace

TEST_CASE("two identical runs started at the same instant: one trains, the other refuses", "[runs]") {
  TempDir tmp;
  const auto args = tiny((tmp.path / "out").string(), {"trainer.epochs=6"});
  const pid_t a = spawn_blocklab(args, tmp.path / "a.log");
  const pid_t b = spawn_blocklab(args, tmp.path / "b.log");
  const int sa = wait_status(a), sb = wait_status(b);
  INFO(slurp(tmp.path / "a.log") << slurp(tmp.path / "b.log"));
  CHECK(((sa == 0 && sb == 2) || (sa == 2 && sb == 0)));
  const std::string refused = slurp(tmp.path / (sa == 2 ? "a.log" : "b.log"));
  CHECK(refused.find("is in progress (pid ") != std::string::npos);
  CHECK(refused.find("wait for it or stop it") != std::string::npos);
  const fs::path dir = run_dir(tmp.path / "out");
  const auto steps = metric_steps(dir);
  CHECK(steps.size() > 10);
  CHECK(strictly_increasing(steps));
  CHECK(count(slurp(dir / "log.txt"), "finished in") == 1);
}

TEST_CASE("--resume, --force or a plain run on a live run are refused, and it finishes untouched", "[runs]") {
  TempDir tmp;
  const std::string out = (tmp.path / "out").string();
  // Long enough that the four refusals, each a process start, end before it does on a loaded machine.
  const std::vector<std::string> long_run = {"trainer.epochs=200", "trainer.checkpoint_every=2"};
  const pid_t live = start_until_checkpoint(tiny(out, long_run), tmp.path / "live.log", out);
  std::string messages;
  for (const std::string flag : {"--resume", "--force", "--continue", ""}) {
    const fs::path log = tmp.path / ("refused" + flag + ".log");
    auto args = tiny(out, long_run);
    if (!flag.empty()) args.push_back(flag);
    CHECK(run_blocklab(args, log) == 2);
    messages += normalised(slurp(log), tmp.path);
  }
  check_golden("run_in_progress", messages);
  REQUIRE(wait_status(live) == 0);
  const fs::path dir = run_dir(out);
  CHECK(strictly_increasing(metric_steps(dir)));
  CHECK(summary_field(dir, "status") == "\"finished\"");
  // The lock went with the process: the finished run is reported, not refused.
  CHECK(run_blocklab(tiny(out, long_run), tmp.path / "after.log") == 0);
  CHECK(slurp(tmp.path / "after.log").find("in progress") == std::string::npos);
}

TEST_CASE("the lock of a run killed with SIGKILL does not block --resume", "[runs]") {
  TempDir tmp;
  const std::string out = (tmp.path / "out").string();
  const std::vector<std::string> extra = {"trainer.epochs=8", "trainer.checkpoint_every=2"};
  const pid_t pid = start_until_checkpoint(tiny(out, extra), tmp.path / "killed.log", out);
  kill(pid, SIGKILL);
  wait_status(pid);
  CHECK(fs::exists(run_dir(out) / "run.lock"));
  auto resumed = extra;
  resumed.push_back("--resume");
  CHECK(run_blocklab(tiny(out, resumed), tmp.path / "resume.log") == 0);
}

TEST_CASE("a diverged config run again says it diverged and exits 3", "[runs]") {
  TempDir tmp;
  const std::string out = (tmp.path / "nan").string();
  // No checkpoint before the divergence: the message must not claim one is kept.
  const auto args = tiny(out, {"optimizer=sgd", "trainer.lr=1e8", "trainer.clip_grad=0.0", "optimizer.momentum=0.99",
                               "trainer.warmup=0.0", "trainer.label_smoothing=0.0"});
  REQUIRE(run_blocklab(args, tmp.path / "first.log") == 3);
  const std::string first = slurp(tmp.path / "first.log");
  CHECK(first.find("no checkpoint was written before it") != std::string::npos);
  CHECK(first.find("last good checkpoint") == std::string::npos);
  CHECK(run_blocklab(args, tmp.path / "again.log") == 3);
  const std::string again = slurp(tmp.path / "again.log");
  CHECK(again.find("an identical run diverged at step") != std::string::npos);
  CHECK(again.find("already finished") == std::string::npos);
}

TEST_CASE("a run stopped by trainer.max_steps is evaluated; no sentinel numbers in summary.json", "[runs]") {
  TempDir tmp;
  const std::string out = (tmp.path / "out").string();
  REQUIRE(run_blocklab(tiny(out, {"trainer.max_steps=5"}), tmp.path / "log") == 0);
  const fs::path dir = run_dir(out);
  const std::string summary = slurp(dir / "summary.json");
  INFO(summary);
  CHECK(summary.find("\"final\": {\"epoch\": 1, \"step\": 5, \"test/acc\": ") != std::string::npos);
  CHECK(summary_field(dir, "best_epoch") == "1");
  CHECK(summary.find("e+300") == std::string::npos);
  CHECK(summary.find("\"best/test_acc\": 0.") != std::string::npos);
}

TEST_CASE("rules between values fail before any side effect: run, show and sweep", "[runs]") {
  TempDir tmp;
  const std::string out = (tmp.path / "out").string();
  const auto check_refused = [&](const std::vector<std::string>& args, const std::string& golden) {
    const fs::path log = tmp.path / (golden + ".log");
    CHECK(run_blocklab(args, log) == 2);
    check_golden(golden, normalised(slurp(log), tmp.path));
    CHECK_FALSE(fs::exists(out));  // no run directory, not even an empty one
  };
  // heads must divide the width: the model's own rule, found by building it.
  check_refused(tiny(out, {"model.dim=30", "model.mixer.heads=4"}), "run_heads_do_not_divide");
  check_refused({"show", "vit_fmnist", "model.dim=30", "model.mixer.heads=4"}, "show_heads_do_not_divide");
  // A batch larger than the training split would take no optimizer step.
  check_refused(tiny(out, {"dataset.limit_train=20"}), "run_batch_larger_than_split");
  // A sweep is checked point by point before any job is planned.
  check_refused({"sweep", "vit_fmnist", "model.dim=30", "model.mixer.heads=4,5", "--dry-run",
                 "--root", (tmp.path / "sweeps").string()},
                "sweep_heads_do_not_divide");
  CHECK_FALSE(fs::exists(tmp.path / "sweeps"));
}

TEST_CASE("experiment names cannot leave the config directory", "[runs]") {
  TempDir tmp;
  // A config outside the config directory that a traversal would reach.
  fs::create_directories(tmp.path / "conf");
  fs::create_directories(tmp.path / "x");
  std::ofstream(tmp.path / "x" / "evil.yaml") << "task: classify\n";
  fs::create_symlink(tmp.path / "x" / "evil.yaml", tmp.path / "conf" / "linked.yaml");
  const std::string conf = (tmp.path / "conf").string();
  for (const std::string name : {"../x/evil", "/etc/passwd", "a/../../x/evil", "linked", "", "a b"}) {
    const fs::path log = tmp.path / "log";
    fs::remove(log);
    INFO(name);
    CHECK(run_blocklab({"run", name, "--config-dir", conf, "output_dir=" + (tmp.path / "out").string()}, log) == 2);
    const std::string text = slurp(log);
    INFO(text);
    CHECK((text.find("experiment name") != std::string::npos ||
           text.find("lies outside the config directory") != std::string::npos));
  }
  CHECK_FALSE(fs::exists(tmp.path / "out"));
}

TEST_CASE("append and atomic writes on a full device name the file and leave nothing behind", "[runs]") {
  blocklab::AppendFile full("/dev/full");
  try {
    full.append_line("{\"step\": 1}");
    FAIL("no error on /dev/full");
  } catch (const blocklab::FileWriteError& e) {
    CHECK(std::string(e.what()) == "cannot write /dev/full: No space left on device (free some space, or set "
                                   "output_dir to another disk)");
  }
}

TEST_CASE("a full disk: the run stops with the file named, no temp files, metrics not silently empty", "[runs]") {
  if (::geteuid() != 0) {
    WARN("not root: the tmpfs disk-full case is skipped");
    return;
  }
  TempDir tmp;
  const fs::path disk = tmp.path / "disk";
  fs::create_directories(disk);
  REQUIRE(::mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=1m") == 0);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{disk.string()};
  // Leave `free_kb` of the 1 MiB free, then run.
  const auto run_with_free = [&](int free_kb, const std::string& name) {
    for (const auto& e : fs::directory_iterator(disk)) fs::remove_all(e.path());
    std::ofstream(disk / "filler", std::ios::binary) << std::string(static_cast<std::size_t>(1024 - free_kb) * 1024, 'x');
    const fs::path log = tmp.path / (name + ".log");
    const int status = run_blocklab(tiny((disk / "out").string(), {"trainer.checkpoint_every=4"}), log);
    return std::make_pair(status, slurp(log));
  };
  {  // Nothing free: the first file of the run fails.
    const auto [status, log] = run_with_free(0, "none");
    INFO(log);
    CHECK(status == 1);
    CHECK(log.find("No space left on device") != std::string::npos);
    CHECK(log.find("cannot write " + (disk / "out" / "vit_fmnist").string()) != std::string::npos);
    CHECK(temp_files(disk).empty());
  }
  {  // Room for the small files and some lines, not for the checkpoints.
    const auto [status, log] = run_with_free(24, "some");
    INFO(log);
    CHECK(status == 1);
    CHECK(log.find("No space left on device") != std::string::npos);
    CHECK(temp_files(disk).empty());
    const fs::path dir = run_dir(disk / "out");
    const std::string metrics = slurp(dir / "metrics.jsonl");
    // Either lines were written, or the error named metrics.jsonl: never silently empty.
    CHECK((!metrics.empty() || log.find("metrics.jsonl") != std::string::npos));
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename() != "run.lock" && e.path().filename() != "metrics.jsonl" &&
          e.path().filename() != "log.txt")
        CHECK(fs::file_size(e.path()) > 0);
  }
}

namespace {

// The peak virtual memory of a live process (VmPeak, kB), 0 when it is gone.
long vm_peak_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmPeak:", 0) == 0) return std::stol(line.substr(7));
  return 0;
}

// Sets environment variables for its lifetime (children inherit them) and restores them after.
class ScopedEnvironment {
 public:
  explicit ScopedEnvironment(std::vector<std::pair<std::string, std::string>> values) {
    for (const auto& [name, value] : values) {
      const char* before = std::getenv(name.c_str());
      saved_.push_back({name, before ? std::optional<std::string>(before) : std::nullopt});
      setenv(name.c_str(), value.c_str(), 1);
    }
  }
  ~ScopedEnvironment() {
    for (const auto& [name, before] : saved_)
      before ? setenv(name.c_str(), before->c_str(), 1) : unsetenv(name.c_str());
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// `blocklab <args>` under `ulimit -v <kb>`, output to `log`; returns the exit status.
int run_with_memory_limit(long kb, const std::vector<std::string>& args, const fs::path& log,
                          const std::string& env = "") {
  std::string cmd = "ulimit -v " + std::to_string(kb) + "; exec " + env + " '" + BLOCKLAB_BINARY + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  const int raw = std::system(("bash -c \"" + cmd + "\" > '" + log.string() + "' 2>&1").c_str());
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

}  // namespace

TEST_CASE("out of memory inside a block: one line naming the layer, recorded in summary.json", "[runs]") {
  TempDir tmp;
  // Virtual memory that depends on the machine would make the calibration below miss: one
  // 64 MB malloc arena per thread, and an OpenMP pool with a stack per core (CI machines have
  // many cores). Without them the calibrated run and the limited runs start alike.
  const ScopedEnvironment single_arena({{"MALLOC_ARENA_MAX", "1"}, {"OMP_NUM_THREADS", "1"}, {"MKL_NUM_THREADS", "1"}});
  // Calibrate: the peak virtual memory of a tiny run while it trains.
  const std::string probe_out = (tmp.path / "probe").string();
  const pid_t probe = spawn_blocklab(tiny(probe_out, {"trainer.epochs=20"}), tmp.path / "probe.log");
  REQUIRE(eventually([&] { return has_metrics(probe_out); }));
  const long peak = vm_peak_kb(probe);
  kill(probe, SIGKILL);
  wait_status(probe);
  REQUIRE(peak > 0);
  // The same run with 4096 images a batch: its stem's output (4096 x 49 x 64 floats, 51 MB)
  // fits in 256 MB above that peak, block 0's attention logits (4096 x 16 x 49 x 49, 629 MB)
  // do not. The margins (~190 MB below, ~570 MB above) absorb calibration noise.
  const auto args = tiny((tmp.path / "out").string(), {"dataset.limit_train=4096", "trainer.batch_size=4096",
                                                       "model.dim=64", "model.mixer.heads=16", "model.patch=4"});
  const long limit = peak + 256 * 1024;
  REQUIRE(run_with_memory_limit(limit, args, tmp.path / "oom.log") == 1);
  const std::string log = slurp(tmp.path / "oom.log");
  INFO(log);
  CHECK(log.rfind("error: out of memory in model.blocks.0 (attention/softmax) during training step 1: ", 0) == 0);
  CHECK(log.find("try a smaller trainer.batch_size") != std::string::npos);
  CHECK(count(log, "\n") == 1);  // one line, no stack trace
  const fs::path dir = run_dir(tmp.path / "out");
  CHECK(summary_field(dir, "status") == "\"failed\"");
  CHECK(summary_field(dir, "error").find("out of memory in model.blocks.0") != std::string::npos);
  // BLOCKLAB_TRACE=1 adds LibTorch's raw message.
  REQUIRE(run_with_memory_limit(limit, args, tmp.path / "trace.log", "env BLOCKLAB_TRACE=1") == 1);
  CHECK(slurp(tmp.path / "trace.log").find("raw error (BLOCKLAB_TRACE):") != std::string::npos);
}

TEST_CASE("a sweep claim left by a dead worker on another host is taken over; a live one is not", "[runs]") {
  TempDir tmp;
  std::vector<std::string> args = {"sweep", "vit_fmnist", "seed=0", "--launcher", "slurm", "--dry-run",
                                   "--root", (tmp.path / "sweeps").string()};
  for (const auto& o : tiny_overrides()) args.push_back(o);
  args.push_back("trainer.epochs=40");
  REQUIRE(run_blocklab(args, tmp.path / "plan.log") == 0);
  const fs::path sweep = fs::directory_iterator(tmp.path / "sweeps")->path();
  const fs::path job_dir = fs::directory_iterator(sweep / "jobs")->path();
  // A claim file whose writer is gone (no lock held): before flock claims, one from another
  // host was respected forever.
  std::ofstream(job_dir / "claim") << "pid 4242 on host node-that-died\n";
  const pid_t worker = spawn_blocklab({"job", sweep.string(), "--index", "0"}, tmp.path / "job.log");
  REQUIRE(eventually([&] { return slurp(job_dir / "claim").find("pid " + std::to_string(worker)) != std::string::npos; }));
  // While that worker lives, a second one leaves the job alone.
  CHECK(run_blocklab({"job", sweep.string(), "--index", "0"}, tmp.path / "second.log") == 0);
  CHECK(slurp(tmp.path / "second.log").find("is held by another live worker") != std::string::npos);
  CHECK(wait_status(worker) == 0);
  CHECK(slurp(job_dir / "state.json").find("\"state\": \"done\"") != std::string::npos);
  CHECK_FALSE(fs::exists(job_dir / "claim"));
}

}  // namespace BLOCKLAB_TEST_FILE
