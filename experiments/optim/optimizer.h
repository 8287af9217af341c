// Optimizers and learning-rate schedules, by registry key.
//
// The task splits parameters into a decayed group (weights of linear/conv layers) and a
// group without weight decay (norms, biases, position tables, class tokens: every tensor
// with fewer than 2 dimensions, plus those the model names). Schedules are pure functions
// of the step, so a resumed run needs no scheduler state beyond the step counter.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "registry/registry.h"

namespace blocklab {

struct OptimizerArgs {
  std::vector<torch::Tensor> decay;     // weight decay applies
  std::vector<torch::Tensor> no_decay;  // weight decay 0
  double lr = 1e-3;                     // initial learning rate (the schedule sets it per step)
};
using OptimizerRegistry = Registry<std::unique_ptr<torch::optim::Optimizer>, const OptimizerArgs&>;
OptimizerRegistry& optimizer_registry();

// Builds optimizer Opt over the decayed and the no-decay group: `options(wd)` returns the
// Opt options (e.g. AdamWOptions) with weight decay wd; the no-decay group gets wd = 0.
template <class Opt, class MakeOptions>
std::unique_ptr<torch::optim::Optimizer> two_group_optimizer(const OptimizerArgs& args, double weight_decay,
                                                             MakeOptions options) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  using Options = decltype(options(0.0));
  groups.emplace_back(args.decay, std::make_unique<Options>(options(weight_decay)));
  if (!args.no_decay.empty()) groups.emplace_back(args.no_decay, std::make_unique<Options>(options(0.0)));
  return std::make_unique<Opt>(std::move(groups), options(weight_decay));
}

// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // Learning rate for the 0-based optimizer step `step`.
  virtual double lr_at(std::int64_t step) const = 0;
};

struct ScheduleArgs {
  double base_lr = 1e-3;
  std::int64_t total_steps = 1;
  std::int64_t steps_per_epoch = 1;
  double warmup_epochs = 0;  // linear warm-up from ~0 to base_lr
};
using ScheduleRegistry = Registry<std::unique_ptr<LrSchedule>, const ScheduleArgs&>;
ScheduleRegistry& schedule_registry();

// Linear warm-up factor in (0, 1] for `step` (1 once warm-up is over).
double warmup_factor(std::int64_t step, const ScheduleArgs& args);

}  // namespace blocklab
