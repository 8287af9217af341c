// Learning-rate schedules `constant`, `cosine` and `step`, each with linear warm-up
// (Goyal et al. 2017, "Accurate, Large Minibatch SGD", arXiv:1706.02677). The three share the
// warm-up and differ in the decay after it.
#include <cmath>

#include "experiments/optim/optimizer.h"

namespace blocklab {
namespace {

class ConstantSchedule : public LrSchedule {
 public:
  explicit ConstantSchedule(ScheduleArgs a) : a_(a) {}
  double lr_at(std::int64_t step) const override { return a_.base_lr * warmup_factor(step, a_); }

 private:
  ScheduleArgs a_;
};

// Cosine decay to min_lr_ratio * base_lr after warm-up (Loshchilov & Hutter 2017, SGDR,
// arXiv:1608.03983, without restarts).
class CosineSchedule : public LrSchedule {
 public:
  CosineSchedule(ScheduleArgs a, double min_ratio) : a_(a), min_ratio_(min_ratio) {}
  double lr_at(std::int64_t step) const override {
    const double warmup_steps = a_.warmup_epochs * static_cast<double>(a_.steps_per_epoch);
    if (static_cast<double>(step) < warmup_steps) return a_.base_lr * warmup_factor(step, a_);
    const double span = std::max(1.0, static_cast<double>(a_.total_steps) - warmup_steps);
    const double t = std::min(1.0, (static_cast<double>(step) - warmup_steps) / span);
    const double cosine = 0.5 * (1.0 + std::cos(M_PI * t));
    return a_.base_lr * (min_ratio_ + (1.0 - min_ratio_) * cosine);
  }

 private:
  ScheduleArgs a_;
  double min_ratio_;
};

// Multiply by gamma every `every` epochs (He et al. 2016, arXiv:1512.03385).
class StepSchedule : public LrSchedule {
 public:
  StepSchedule(ScheduleArgs a, std::int64_t every, double gamma) : a_(a), every_(every), gamma_(gamma) {}
  double lr_at(std::int64_t step) const override {
    const std::int64_t epoch = step / std::max<std::int64_t>(1, a_.steps_per_epoch);
    return a_.base_lr * warmup_factor(step, a_) * std::pow(gamma_, static_cast<double>(epoch / every_));
  }

 private:
  ScheduleArgs a_;
  std::int64_t every_;
  double gamma_;
};

Schema cosine_schema() {
  Schema s;
  auto& r = s.add_float("min_lr_ratio", 0.01, "final learning rate as a fraction of the peak");
  r.min = 0.0, r.max = 1.0;
  return s;
}

Schema step_schema() {
  Schema s;
  s.add_int("every", 30, "epochs between decays").min = 1;
  auto& g = s.add_float("gamma", 0.1, "decay factor");
  g.min = 0.0, g.max = 1.0;
  return s;
}

BLOCKLAB_REGISTER(schedule_registry(),
                  BLOCKLAB_ENTRY("constant")
                      .summary("constant learning rate after linear warm-up")
                      .paper("Accurate, Large Minibatch SGD (Goyal et al., 2017), arXiv:1706.02677")
                      .equation("lr(t) = lr * min(1, (t+1)/warmup)")
                      .example("{}"),
                  [](const ConfigNode&, const ScheduleArgs& a) -> std::unique_ptr<LrSchedule> {
                    return std::make_unique<ConstantSchedule>(a);
                  });

BLOCKLAB_REGISTER(schedule_registry(),
                  BLOCKLAB_ENTRY("cosine")
                      .summary("linear warm-up, then cosine decay to a floor")
                      .paper("SGDR: Stochastic Gradient Descent with Warm Restarts (Loshchilov, Hutter, 2017), "
                             "arXiv:1608.03983")
                      .equation("lr(t) = lr (r + (1-r)(1+cos(pi (t-w)/(T-w)))/2) after warm-up w")
                      .schema(cosine_schema())
                      .example("{min_lr_ratio: 0.01}"),
                  [](const ConfigNode& node, const ScheduleArgs& a) -> std::unique_ptr<LrSchedule> {
                    static const Schema schema = cosine_schema();
                    return std::make_unique<CosineSchedule>(
                        a, ParamReader(node, schema, "scheduler").get_float("min_lr_ratio"));
                  });

BLOCKLAB_REGISTER(schedule_registry(),
                  BLOCKLAB_ENTRY("step")
                      .summary("linear warm-up, then multiply by gamma every k epochs")
                      .paper("Deep Residual Learning for Image Recognition (He et al., 2016), arXiv:1512.03385")
                      .equation("lr(t) = lr * gamma^floor(epoch/k)")
                      .schema(step_schema())
                      .example("{every: 2, gamma: 0.5}"),
                  [](const ConfigNode& node, const ScheduleArgs& a) -> std::unique_ptr<LrSchedule> {
                    static const Schema schema = step_schema();
                    const ParamReader p(node, schema, "scheduler");
                    return std::make_unique<StepSchedule>(a, p.get_int("every"), p.get_float("gamma"));
                  });

}  // namespace
}  // namespace blocklab
