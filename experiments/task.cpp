#include "experiments/task.h"

#include <map>

namespace blocklab {

TaskRegistry& task_registry() {
  static TaskRegistry registry("task", "training loops that run an experiment");
  return registry;
}

namespace {
std::map<std::string, TaskCheck>& task_checks() {
  static std::map<std::string, TaskCheck> checks;
  return checks;
}
}  // namespace

bool register_task_check(const std::string& task, TaskCheck check) {
  task_checks()[task] = std::move(check);
  return true;
}

const TaskCheck* find_task_check(const std::string& task) {
  const auto it = task_checks().find(task);
  return it == task_checks().end() ? nullptr : &it->second;
}

}  // namespace blocklab
