// Helpers for tests that run the blocklab executable: temp directories, spawning with the
// output captured in a log, exit statuses, reading files.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace blocklab::testing {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir {
  fs::path path;
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// Starts `blocklab <args...>` with stdout and stderr appended to `log`; returns its pid.
pid_t spawn_blocklab(const std::vector<std::string>& args, const fs::path& log, const fs::path& cwd = {});
// The same for another executable (e.g. blocklab_test_tasks).
pid_t spawn_program(const std::string& binary, const std::vector<std::string>& args, const fs::path& log,
                    const fs::path& cwd = {});
// Waits for `pid`; returns its exit status, or 128 + signal when killed.
int wait_status(pid_t pid);
// spawn_blocklab + wait_status.
int run_blocklab(const std::vector<std::string>& args, const fs::path& log, const fs::path& cwd = {});
// A bounded run: exit status (128 + signal when killed; -1 when it ran past the limit and was
// killed), wall time and the peak resident memory of the process.
struct BoundedRun {
  int status = -1;
  bool timed_out = false;
  double seconds = 0;
  long max_rss_kb = 0;
};
BoundedRun run_blocklab_bounded(const std::vector<std::string>& args, const fs::path& log, const fs::path& cwd,
                                double timeout_seconds);

// `blocklab <args>` through the shell in `cwd` (default: the tests directory, so paths in
// messages are stable): exit status, stdout, and stderr (merged into out when `merge`).
struct CommandResult {
  int status = -1;
  std::string out, err;
};
CommandResult blocklab_command(const std::string& args, const std::string& cwd = BLOCKLAB_TEST_DIR,
                               bool merge = false);

// A whole file ("" when missing).
std::string slurp(const fs::path& p);

}  // namespace blocklab::testing
