#include "experiments/task.h"

#include "registry/named_hooks.h"

namespace blocklab {

TaskRegistry& task_registry() {
  static TaskRegistry registry("task", "training loops that run an experiment");
  return registry;
}

namespace {
NamedHooks<TaskCheck>& task_checks() {
  static NamedHooks<TaskCheck> hooks;
  return hooks;
}
}  // namespace

bool register_task_check(const std::string& task, TaskCheck check) { return task_checks().add(task, std::move(check)); }

const TaskCheck* find_task_check(const std::string& task) { return task_checks().find(task); }

}  // namespace blocklab
