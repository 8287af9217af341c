// Tasks: the training loops an experiment's `task:` key names (classify, forecast, sequence).
// A task entry's schema lists the top-level sections it reads (model, dataset, trainer, ...);
// together with the common keys it is the experiment's schema.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "registry/override.h"
#include "registry/registry.h"

namespace blocklab {

struct RunRequest {
  std::string experiment;       // config name
  ConfigNode config;            // composed, validated
  std::vector<Override> overrides;
  bool force = false;           // run again even if an identical run exists
  bool resume = false;          // continue from the last checkpoint
  bool quiet = false;           // no progress line (sweeps)
};

class Task {
 public:
  virtual ~Task() = default;
  // Returns the process exit status (0: finished; non-zero: diverged or failed).
  virtual int run() = 0;
};

using TaskRegistry = Registry<std::unique_ptr<Task>, const RunRequest&>;
TaskRegistry& task_registry();

}  // namespace blocklab
