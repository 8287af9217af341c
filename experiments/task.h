// Tasks: what an experiment's `task:` key names (classify, ...). A task entry's schema lists
// the top-level sections it reads (model, dataset, trainer, ...); together with the common
// keys it is the experiment's schema. Tasks that train supply hooks to the one training loop
// (experiments/training/loop.h: loop_task_factory) rather than a Task of their own.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "registry/config_error.h"
#include "registry/override.h"
#include "registry/registry.h"

namespace blocklab {

// Exit status of a run stopped by SIGTERM, SIGUSR1 or SIGINT after writing a checkpoint: it
// continues with --resume (sweeps run it again; Slurm requeues the task). 75 is EX_TEMPFAIL.
constexpr int kExitRequeue = 75;

struct RunRequest {
  std::string experiment;       // config name
  ConfigNode config;            // composed, validated
  std::vector<Override> overrides;
  bool force = false;           // run again even if an identical run exists
  bool resume = false;          // continue from the last checkpoint
  bool resume_if_any = false;   // resume when there is a checkpoint, else start (sweep jobs)
  std::string record_dir_file;  // write the run directory's path here once it is open
  bool quiet = false;           // no progress line (sweeps)
  std::string init_from;        // start from these weights (state_dict.h: a .pt file or a run)
};

class Task {
 public:
  virtual ~Task() = default;
  // Returns the process exit status (0: finished; non-zero: diverged or failed).
  virtual int run() = 0;
};

using TaskRegistry = Registry<std::unique_ptr<Task>, const RunRequest&>;
TaskRegistry& task_registry();

// A task's checks beyond the schema: rules between values that only building the model or
// planning the data reveals (heads divide the width, a batch larger than the training split).
// validate_experiment runs them, so `show`, `run` (before its run directory exists) and every
// sweep point (before any job is planned) refuse such configs. They add to `sink`.
using TaskCheck = std::function<void(const ConfigNode& config, DiagnosticSink& sink)>;
bool register_task_check(const std::string& task, TaskCheck check);
const TaskCheck* find_task_check(const std::string& task);

}  // namespace blocklab
