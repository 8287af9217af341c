#include "experiments/launch.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <thread>

#include "experiments/distributed.h"
#include "experiments/task.h"

namespace blocklab {

namespace {

std::atomic<int> g_forward_signal{0};
extern "C" void on_launcher_signal(int sig) { g_forward_signal.store(sig); }

// The rank's process: this binary again, with the rank's environment.
[[noreturn]] void exec_rank(int rank, int nproc, const std::string& rendezvous, const std::vector<std::string>& args,
                            pid_t launcher) {
  // A rank does not outlive its launcher (also after a kill -9 of the launcher).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != launcher) ::_exit(1);
  ::setenv(kRankVariable, std::to_string(rank).c_str(), 1);
  ::setenv(kWorldSizeVariable, std::to_string(nproc).c_str(), 1);
  ::setenv(kRendezvousVariable, rendezvous.c_str(), 1);
  std::vector<std::string> words = {"blocklab", "run"};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", argv.data());
  std::cerr << "blocklab run --nproc: cannot start rank " << rank << ": " << std::strerror(errno) << "\n";
  ::_exit(127);
}

std::string describe_end(int status) {
  if (WIFSIGNALED(status)) return std::string("was killed by ") + strsignal(WTERMSIG(status));
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

class RankGroup {
 public:
  explicit RankGroup(int nproc) : pids_(static_cast<std::size_t>(nproc), -1), status_(pids_.size(), -1) {}

  void start(const std::string& rendezvous, const std::vector<std::string>& args) {
    for (std::size_t r = 0; r < pids_.size(); ++r) {
      const pid_t launcher = ::getpid();
      const pid_t pid = ::fork();
      if (pid < 0) throw std::runtime_error(std::string("blocklab run --nproc: fork failed: ") + std::strerror(errno));
      if (pid == 0) exec_rank(static_cast<int>(r), static_cast<int>(pids_.size()), rendezvous, args, launcher);
      pids_[r] = pid;
    }
  }

  // Waits for every rank; the first that dies or fails stops the others.
  int supervise() {
    std::size_t running = pids_.size();
    auto stop_others_at = std::chrono::steady_clock::time_point::max();
    while (running > 0) {
      if (const int sig = g_forward_signal.exchange(0)) signal_all(sig);
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) {
        if (std::chrono::steady_clock::now() >= stop_others_at) signal_all(SIGKILL);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      const std::size_t rank = rank_of(pid);
      if (rank >= pids_.size()) continue;
      status_[rank] = status, pids_[rank] = -1, --running;
      // 0: finished, 2: refused (bad input, a run in progress: rank 0 has said why and the others
      // follow it), 3: diverged (all ranks agree), 75: stopped by a signal after a checkpoint.
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      const bool crashed = WIFSIGNALED(status) || (code != 0 && code != 2 && code != 3 && code != kExitRequeue);
      if (crashed && running > 0 && first_failure_ < 0) {
        first_failure_ = static_cast<int>(rank);
        std::cerr << "blocklab run --nproc: rank " << rank << " " << describe_end(status)
                  << "; stopping the other ranks\n";
      }
      // A killed rank cannot answer any more: stop the rest now. Otherwise the others end on
      // their own (they follow rank 0, or notice the broken group), or are killed after 10 s.
      if (code != 0 && code != kExitRequeue && running > 0)
        stop_others_at =
            std::min(stop_others_at, std::chrono::steady_clock::now() +
                                         (WIFSIGNALED(status) ? std::chrono::seconds(0) : std::chrono::seconds(10)));
    }
    return exit_status();
  }

 private:
  std::size_t rank_of(pid_t pid) const {
    for (std::size_t r = 0; r < pids_.size(); ++r)
      if (pids_[r] == pid) return r;
    return pids_.size();
  }
  void signal_all(int sig) {
    for (pid_t p : pids_)
      if (p > 0) ::kill(p, sig);
  }
  int exit_status() const {
    if (first_failure_ >= 0) {
      const int s = status_[static_cast<std::size_t>(first_failure_)];
      std::cerr << "blocklab run --nproc: the run stopped; its last checkpoint is kept: continue it with --resume\n";
      return WIFSIGNALED(s) ? 128 + WTERMSIG(s) : WEXITSTATUS(s);
    }
    for (int s : status_)  // rank 0 speaks for the run; any other failure shows too
      if (!WIFEXITED(s) || WEXITSTATUS(s) != 0) return WIFSIGNALED(s) ? 128 + WTERMSIG(s) : WEXITSTATUS(s);
    return 0;
  }

  std::vector<pid_t> pids_;
  std::vector<int> status_;
  int first_failure_ = -1;
};

}  // namespace

int launch_ranks(int nproc, const std::vector<std::string>& run_args) {
  char dir_template[] = "/tmp/blocklab-rendezvous-XXXXXX";
  if (!::mkdtemp(dir_template))
    throw std::runtime_error(std::string("blocklab run --nproc: cannot make a rendezvous directory in /tmp: ") +
                             std::strerror(errno));
  const std::string dir = dir_template;
  struct sigaction action {};
  action.sa_handler = on_launcher_signal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) sigaction(sig, &action, nullptr);
  RankGroup ranks(nproc);
  int status = 1;
  try {
    ranks.start("file:" + dir + "/store", run_args);
    status = ranks.supervise();
  } catch (...) {
    std::filesystem::remove_all(dir);
    throw;
  }
  std::filesystem::remove_all(dir);
  return status;
}

}  // namespace blocklab
