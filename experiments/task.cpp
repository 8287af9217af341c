#include "experiments/task.h"

namespace blocklab {

TaskRegistry& task_registry() {
  static TaskRegistry registry("task", "training loops that run an experiment");
  return registry;
}

}  // namespace blocklab
