#include "process_support.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <thread>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace blocklab::testing {

TempDir::TempDir() {
  path = fs::temp_directory_path() /
         ("blocklab_test_" + std::to_string(::getpid()) + "_" + std::to_string(std::random_device{}()));
  fs::create_directories(path);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

pid_t spawn_blocklab(const std::vector<std::string>& args, const fs::path& log, const fs::path& cwd) {
  return spawn_program(BLOCKLAB_BINARY, args, log, cwd);
}

pid_t spawn_program(const std::string& binary, const std::vector<std::string>& args, const fs::path& log,
                    const fs::path& cwd) {
  std::vector<std::string> full = {binary};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  const std::string log_path = fs::absolute(log).string();
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, binary.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + binary);
  return pid;
}

int wait_status(pid_t pid) {
  int raw = 0;
  while (waitpid(pid, &raw, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
}

int run_blocklab(const std::vector<std::string>& args, const fs::path& log, const fs::path& cwd) {
  return wait_status(spawn_blocklab(args, log, cwd));
}

BoundedRun run_blocklab_bounded(const std::vector<std::string>& args, const fs::path& log, const fs::path& cwd,
                                double timeout_seconds) {
  BoundedRun r;
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = spawn_blocklab(args, log, cwd);
  int raw = 0;
  struct rusage usage {};
  for (;;) {
    const pid_t done = wait4(pid, &raw, WNOHANG, &usage);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (done == pid) break;
    if (done < 0 && errno != EINTR) throw std::runtime_error("wait4 failed");
    if (r.seconds > timeout_seconds && !r.timed_out) {
      r.timed_out = true;
      kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(r.seconds < 1 ? 2 : 10));
  }
  r.status = r.timed_out ? -1 : WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.max_rss_kb = usage.ru_maxrss;
  return r;
}

CommandResult blocklab_command(const std::string& args, const std::string& cwd, bool merge) {
  TempDir tmp;
  const std::string err_file = (tmp.path / "stderr").string();
  const std::string cmd = "cd '" + cwd + "' && '" + BLOCKLAB_BINARY + "' " + args +
                          (merge ? std::string(" 2>&1") : " 2>'" + err_file + "'");
  CommandResult r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + cmd);
  std::array<char, 4096> buf{};
  while (std::size_t n = fread(buf.data(), 1, buf.size(), pipe)) r.out.append(buf.data(), n);
  const int raw = pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  if (!merge) r.err = slurp(err_file);
  return r;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace blocklab::testing
