// What every task does before training: pin threads and device, derive seeds, and open the
// run directory (content-addressed; an identical finished run is reported, not redone).
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>

#include "experiments/distributed.h"
#include "experiments/run_files.h"
#include "experiments/task.h"

namespace blocklab {

// The default LibTorch CPU thread count when the config says threads: 0 (see README,
// "Threads": measured on the 2-core machines).
constexpr int kDefaultThreads = 2;

class RunFiles {
 public:
  std::string dir;  // results/runs/<experiment>/<id>
  std::string id;
  AppendFile metrics;  // metrics.jsonl
  AppendFile log;      // log.txt
  FileLock lock;       // run.lock, held while this process writes the directory
  bool quiet = false;
  bool writer = true;  // false on data-parallel ranks other than 0: they write nothing

  std::string checkpoint(const std::string& which) const { return dir + "/checkpoints/" + which + ".ckpt"; }
  // weights/{final,best}.pt: the state dict Python's torch.load reads (state_dict.h).
  std::string weights(const std::string& which) const { return dir + "/weights/" + which + ".pt"; }
  // A line for the terminal (unless quiet) and log.txt.
  void say(const std::string& line);
  // A line for the terminal even when quiet (failures), and log.txt.
  void warn(const std::string& line);
  // A line for log.txt only.
  void log_line(const std::string& line);
  // A line for metrics.jsonl.
  void metric(const JsonObject& line);
  // Writes summary.json (atomically).
  void finish(const JsonObject& summary);
};

struct RunSetup {
  std::uint64_t seed = 0;
  int threads = 1;
  torch::Device device = torch::kCPU;
  bool resuming = false;
  std::optional<WorldSpec> world;  // a data-parallel rank's world (distributed.h); none: one process
  RunFiles files;
};

// Threads, device, determinism and the global seed, from the config's common keys; the world
// from the environment (threads: 0 gives each of a machine's ranks its share of the cores).
RunSetup configure_runtime(const RunRequest& request);

// SIGTERM, SIGUSR1 (Slurm's warning before the time limit) and SIGINT ask a run to stop: the
// training loop checks stop_signal() after each step, checkpoints and exits kExitRequeue.
void install_stop_handlers();
int stop_signal();  // 0 while no stop was asked for

// Thrown when an identical run has already ended (and --force was not given): the task
// reports it and exits with exit_status() (0 when it finished, 3 when it diverged).
struct RunAlreadyDone {
  std::string dir;
  std::string summary;
  std::string status;  // "finished" or "diverged at step k"
  bool diverged() const { return status.rfind("diverged", 0) == 0; }
  int exit_status() const { return diverged() ? 3 : 0; }
  // The line the task prints.
  std::string message() const;
};

// Opens (or resumes) the run directory; the id hashes the resolved config, the code version,
// the data fingerprint, threads, device and the world size (when above 1). Takes the directory's lock first: a run
// another live process is writing is refused (ConfigError naming its pid and host), whatever the flags. Throws
// RunAlreadyDone, or ConfigError for an unfinished run without --resume, or --resume with
// nothing to resume.
void open_run_directory(const RunRequest& request, const std::string& data_fingerprint, RunSetup& setup);

}  // namespace blocklab
