#include "experiments/optim/optimizer.h"

#include <cmath>

namespace blocklab {

OptimizerRegistry& optimizer_registry() {
  static OptimizerRegistry r("optimizer", "optimizers over two parameter groups (with and without weight decay)");
  return r;
}

ScheduleRegistry& schedule_registry() {
  static ScheduleRegistry r("scheduler", "learning-rate schedules: pure functions of the step");
  return r;
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

double warmup_factor(std::int64_t step, const ScheduleArgs& args) {
  const double warmup_steps = args.warmup_epochs * static_cast<double>(args.steps_per_epoch);
  if (warmup_steps <= 0 || static_cast<double>(step) >= warmup_steps) return 1.0;
  return (static_cast<double>(step) + 1.0) / warmup_steps;
}

}  // namespace blocklab
