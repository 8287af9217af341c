// Running one sweep job: claim it, run it as a child process, record the outcome; on the other
// ranks of a multi-task Slurm step, follow rank 0's word and join its run.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "experiments/run_files.h"
#include "experiments/sweep.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace fs = std::filesystem;

namespace blocklab {
namespace {

// Children of run_job, for signal forwarding from a handler (plain atomics: signal-safe).
std::array<std::atomic<pid_t>, 256> g_children{};

void remember_child(pid_t pid) {
  for (auto& slot : g_children) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pid)) return;
  }
}
void forget_child(pid_t pid) {
  for (auto& slot : g_children) {
    pid_t p = pid;
    if (slot.compare_exchange_strong(p, 0)) return;
  }
}

std::string hostname() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return host;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string slurm_task() {
  const char* job = std::getenv("SLURM_ARRAY_JOB_ID");
  const char* task = std::getenv("SLURM_ARRAY_TASK_ID");
  return job && task ? std::string(job) + "_" + task : "";
}

// A held claim: the kernel's flock on jobs/<job>/claim (released when this worker dies, also
// on another host over NFS, so a dead worker's claim never blocks the job), plus the file,
// which says who holds it and is removed on release.
struct Claim {
  Claim(std::string claim_path, FileLock held) : path(std::move(claim_path)), lock(std::move(held)) {}
  Claim(const Claim&) = delete;
  Claim& operator=(const Claim&) = delete;
  ~Claim() { ::unlink(path.c_str()); }  // unlink first, then the lock drops
  std::string path;
  FileLock lock;
};

std::string claim_owner() {
  const std::string task = slurm_task();
  return lock_owner_text() + (task.empty() ? "" : " (Slurm task " + task + ")") + "\n";
}

std::string tail_lines(const std::string& path, std::uint64_t from, int lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(static_cast<std::streamoff>(from));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  while (!text.empty() && text.back() == '\n') text.pop_back();
  std::size_t pos = text.size();
  for (int n = 0; n < lines && pos != std::string::npos && pos > 0; ++n) pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos || pos == 0 ? text : text.substr(pos + 1);
}

// The line that says why a run failed: the last "error:" line of its log, else its last line.
std::string failure_line(const std::string& text) {
  std::istringstream in(text);
  std::string line, last, error;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    last = line;
    if (line.rfind("error", 0) == 0 || line.find("Error") != std::string::npos) error = line;
  }
  return error.empty() ? last : error;
}

std::string self_executable() {
  std::error_code ec;
  const auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("blocklab") : p.string();
}

// Runs argv with stdout/stderr appended to `log` (kept as this process's when `log` is empty);
// returns the waitpid status. The child gets SIGKILL when the thread that started it dies, so
// a killed driver leaves no orphan runs.
int spawn_and_wait(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int out = log.empty() ? -1 : ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (!log.empty() && out < 0) throw std::runtime_error("cannot open " + log + ": " + std::strerror(errno));
  const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {  // only async-signal-safe calls until exec
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(devnull, 0);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  remember_child(pid);
  if (out >= 0) ::close(out);
  ::close(devnull);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  forget_child(pid);
  return status;
}

// The `blocklab run` command line of a job: what run_job starts, and every other rank too.
std::vector<std::string> run_argv(const SweepDirectory& sweep, const SweepJob& job, const JobRunOptions& options) {
  const std::string dir = job_dir(sweep, job);
  std::vector<std::string> argv = {options.binary.empty() ? self_executable() : options.binary,
                                   "run", sweep.experiment, "--config-dir", sweep.config_dir, "--quiet", "--continue",
                                   "--record-dir", dir + "/run_dir.txt", "--"};
  bool user_threads = false;
  for (const auto& o : job.overrides) {
    argv.push_back(o);
    user_threads = user_threads || o.rfind("threads=", 0) == 0;
  }
  argv.push_back(override_text("output_dir", ConfigNode::string(sweep.dir + "/runs")));
  if (options.threads > 0 && !user_threads) argv.push_back("threads=" + std::to_string(options.threads));
  return argv;
}

int exit_status_of(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

// Rank 0's word on the job: "run" or "exit <status>", waited for on the shared file system.
std::string wait_for_word(const std::string& word_file, const SweepJob& job) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kStepWordTimeoutSeconds);
  while (!file_exists(word_file)) {
    if (std::chrono::steady_clock::now() >= deadline)
      throw ConfigError("rank 0 of this Slurm step did not say within " + std::to_string(kStepWordTimeoutSeconds) +
                            " s whether it runs job " + std::to_string(job.index) + " (" + job.id + "): no " +
                            word_file,
                        Source{}, "",
                        {"rank 0's output (the step's Slurm output file) says what stopped it",
                         "every task of the step must see the same sweep directory (a shared file system)"});
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string word = read_file(word_file);
  while (!word.empty() && word.back() == '\n') word.pop_back();
  return word;
}

}  // namespace

void tell_step_ranks(const std::string& word_file, const std::string& word) {
  fs::create_directories(fs::path(word_file).parent_path());
  write_file_atomic(word_file, word + "\n");
}

int follow_job(const SweepDirectory& sweep, const SweepJob& job, const JobRunOptions& options,
               const std::string& word_file) {
  const std::string word = wait_for_word(word_file, job);
  if (word.rfind("exit ", 0) == 0) return std::atoi(word.c_str() + 5);
  if (word != "run")
    throw ConfigError("unexpected word '" + word + "' from rank 0 in " + word_file, Source{}, "",
                      {"it is written by `blocklab job` (rank 0 of the step): \"run\" or \"exit <status>\""});
  return exit_status_of(spawn_and_wait(run_argv(sweep, job, options), ""));
}

std::string claim_state(const SweepDirectory& sweep, const SweepJob& job) {
  const std::string path = job_dir(sweep, job) + "/claim";
  if (!file_exists(path)) return "none";
  return FileLock::is_held(path) ? "live" : "stale";
}

void signal_running_jobs(int signal) {
  for (auto& slot : g_children)
    if (const pid_t p = slot.load(); p > 0) ::kill(p, signal);
}

JobOutcome run_job(const SweepDirectory& sweep, const SweepJob& job, const JobRunOptions& options) {
  JobOutcome outcome;
  auto finished = [&](const JobState& s) {
    return s.state == "done" || s.state == "diverged" || (s.state == "failed" && !options.retry_failed);
  };
  outcome.state = read_job_state(sweep, job);
  if (finished(outcome.state)) return outcome.kind = JobOutcome::Kind::Skipped, outcome;
  const std::string dir = job_dir(sweep, job);
  fs::create_directories(dir);
  std::optional<FileLock> lock = FileLock::try_acquire(dir + "/claim", claim_owner());
  if (!lock) return outcome.kind = JobOutcome::Kind::Busy, outcome;
  const Claim claim(dir + "/claim", std::move(*lock));
  JobState st = read_job_state(sweep, job);  // another worker may have finished it meanwhile
  if (finished(st)) return outcome.state = st, outcome.kind = JobOutcome::Kind::Skipped, outcome;

  st.state = "running";
  st.attempts += 1;
  st.host = hostname();
  st.pid = ::getpid();
  st.updated = utc_now();
  st.reason = st.log_tail = "";
  st.exit_code = 0;
  write_job_state(sweep, job, st);

  const std::vector<std::string> argv = run_argv(sweep, job, options);
  const std::string log = dir + "/log.txt";
  const std::uint64_t log_start = fs::exists(log) ? fs::file_size(log) : 0;
  const auto t0 = std::chrono::steady_clock::now();
  if (options.on_start) options.on_start();
  const int status = spawn_and_wait(argv, log);
  outcome.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (file_exists(dir + "/run_dir.txt")) {
    std::string run_dir = read_file(dir + "/run_dir.txt");
    while (!run_dir.empty() && run_dir.back() == '\n') run_dir.pop_back();
    st.run_dir = fs::path(run_dir).lexically_relative(sweep.dir).string();
  }
  st.log_tail = tail_lines(log, log_start, 20);
  st.updated = utc_now();
  if (WIFEXITED(status)) {
    st.exit_code = WEXITSTATUS(status);
    switch (st.exit_code) {
      case 0: st.state = "done"; break;
      case 3: st.state = "diverged", st.reason = failure_line(st.log_tail); break;
      case kExitRequeue: st.state = "pending", st.reason = "stopped by a signal after a checkpoint"; break;
      case 127: st.state = "failed", st.reason = "could not start " + argv[0]; break;
      default: st.state = "failed", st.reason = "exit status " + std::to_string(st.exit_code) + ": " + failure_line(st.log_tail);
    }
  } else if (WIFSIGNALED(status) && (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGINT ||
                                      WTERMSIG(status) == SIGUSR1)) {
    // Asked to stop before its training loop could checkpoint: nothing is lost, run it again.
    st.exit_code = 128 + WTERMSIG(status);
    st.state = "pending";
    st.reason = "stopped by a signal before its first step";
  } else {
    const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    st.exit_code = 128 + sig;
    st.state = "failed";
    st.reason = std::string("killed by signal ") + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  write_job_state(sweep, job, st);
  outcome.state = st;
  return outcome;
}

}  // namespace blocklab
