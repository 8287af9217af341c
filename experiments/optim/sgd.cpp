// optimizer `sgd`: stochastic gradient descent with (Nesterov) momentum.
// Sutskever, Martens, Dahl, Hinton, "On the importance of initialization and momentum in deep
// learning" (ICML 2013).
#include "experiments/optim/optimizer.h"

namespace blocklab {
namespace {

Schema sgd_schema() {
  Schema s;
  auto& m = s.add_float("momentum", 0.9, "momentum factor");
  m.min = 0.0, m.max = 1.0;
  s.add_bool("nesterov", false, "Nesterov momentum");
  auto& wd = s.add_float("weight_decay", 5e-4, "L2 weight decay (decayed group only)");
  wd.min = 0.0;
  return s;
}

std::unique_ptr<torch::optim::Optimizer> make_sgd(const ConfigNode& node, const OptimizerArgs& args) {
  static const Schema schema = sgd_schema();
  const ParamReader p(node, schema, "optimizer");
  return two_group_optimizer<torch::optim::SGD>(args, p.get_float("weight_decay"), [&](double wd) {
    return torch::optim::SGDOptions(args.lr)
        .momentum(p.get_float("momentum"))
        .nesterov(p.get_bool("nesterov"))
        .weight_decay(wd);
  });
}

BLOCKLAB_REGISTER(
    optimizer_registry(),
    BLOCKLAB_ENTRY("sgd")
        .summary("SGD with momentum (optionally Nesterov)")
        .paper("On the importance of initialization and momentum in deep learning (Sutskever et al., 2013)")
        .equation("b = mu b + g + wd w; w -= lr b")
        .schema(sgd_schema())
        .example("{momentum: 0.9}"),
    make_sgd);

}  // namespace
}  // namespace blocklab
