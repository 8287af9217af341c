#include <catch2/catch.hpp>

#include "experiments/optim/optimizer.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

std::unique_ptr<LrSchedule> schedule(const std::string& yaml, ScheduleArgs a) {
  return schedule_registry().create(parse_yaml(yaml, "test"), a);
}

}  // namespace

TEST_CASE("cosine schedule: linear warm-up, then cosine to the floor", "[optim]") {
  const ScheduleArgs a{1.0, 1000, 100, 1.0};  // 100 warm-up steps
  auto s = schedule("{type: cosine, min_lr_ratio: 0.1}", a);
  CHECK(s->lr_at(0) == Approx(0.01));
  CHECK(s->lr_at(49) == Approx(0.5));
  CHECK(s->lr_at(100) == Approx(1.0));
  CHECK(s->lr_at(550) == Approx(0.1 + 0.9 * 0.5));
  CHECK(s->lr_at(1000) == Approx(0.1));
  for (std::int64_t t = 101; t < 1000; ++t) CHECK(s->lr_at(t) <= s->lr_at(t - 1));
}

TEST_CASE("constant and step schedules", "[optim]") {
  auto c = schedule("{type: constant}", ScheduleArgs{0.5, 100, 10, 0.0});
  CHECK(c->lr_at(0) == 0.5);
  CHECK(c->lr_at(99) == 0.5);
  auto st = schedule("{type: step, every: 2, gamma: 0.5}", ScheduleArgs{1.0, 100, 10, 0.0});
  CHECK(st->lr_at(19) == 1.0);
  CHECK(st->lr_at(20) == 0.5);
  CHECK(st->lr_at(45) == 0.25);
}

TEST_CASE("adamw: one step equals the closed-form update; no decay on the no-decay group", "[optim]") {
  torch::Tensor w = torch::tensor({1.0, -2.0}, torch::kFloat64).requires_grad_();
  torch::Tensor b = torch::tensor({3.0}, torch::kFloat64).requires_grad_();
  OptimizerArgs args;
  args.decay = {w};
  args.no_decay = {b};
  args.lr = 0.1;
  auto opt = optimizer_registry().create(parse_yaml("{type: adamw, weight_decay: 0.5, eps: 1e-12}", "t"), args);
  w.mutable_grad() = torch::tensor({0.5, -0.25}, torch::kFloat64);
  b.mutable_grad() = torch::zeros({1}, torch::kFloat64);
  opt->step();
  // Step 1: m^ = g, v^ = g^2, so the Adam direction is sign(g); decay multiplies by (1 - lr wd).
  CHECK(w[0].item<double>() == Approx(1.0 * (1 - 0.1 * 0.5) - 0.1));
  CHECK(w[1].item<double>() == Approx(-2.0 * (1 - 0.1 * 0.5) + 0.1));
  CHECK(b.item<double>() == 3.0);  // zero gradient and no weight decay: unchanged
  set_learning_rate(*opt, 0.01);
  for (auto& g : opt->param_groups()) CHECK(g.options().get_lr() == 0.01);
}

TEST_CASE("sgd: momentum accumulates", "[optim]") {
  torch::Tensor w = torch::tensor({1.0}, torch::kFloat64).requires_grad_();
  OptimizerArgs args;
  args.decay = {w};
  args.lr = 0.1;
  auto opt = optimizer_registry().create(parse_yaml("{type: sgd, momentum: 0.9, weight_decay: 0.0}", "t"), args);
  for (int i = 0; i < 2; ++i) {
    w.mutable_grad() = torch::ones({1}, torch::kFloat64);
    opt->step();
  }
  CHECK(w.item<double>() == Approx(1.0 - 0.1 * 1.0 - 0.1 * 1.9));
}

}  // namespace BLOCKLAB_TEST_FILE
