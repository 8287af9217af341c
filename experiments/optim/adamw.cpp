// optimizer `adamw`: Adam with decoupled weight decay.
// Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019), arXiv:1711.05101.
#include "experiments/optim/optimizer.h"

namespace blocklab {
namespace {

Schema adamw_schema() {
  Schema s;
  auto& wd = s.add_float("weight_decay", 0.05, "decoupled weight decay (decayed group only)");
  wd.min = 0.0;
  auto& b1 = s.add_float("beta1", 0.9, "first-moment decay");
  b1.min = 0.0, b1.max = 0.999999;
  auto& b2 = s.add_float("beta2", 0.999, "second-moment decay");
  b2.min = 0.0, b2.max = 0.999999;
  auto& eps = s.add_float("eps", 1e-8, "denominator epsilon");
  eps.min = 0.0;
  return s;
}

std::unique_ptr<torch::optim::Optimizer> make_adamw(const ConfigNode& node, const OptimizerArgs& args) {
  static const Schema schema = adamw_schema();
  const ParamReader p(node, schema, "optimizer");
  return two_group_optimizer<torch::optim::AdamW>(args, p.get_float("weight_decay"), [&](double wd) {
    return torch::optim::AdamWOptions(args.lr)
        .betas({p.get_float("beta1"), p.get_float("beta2")})
        .eps(p.get_float("eps"))
        .weight_decay(wd);
  });
}

BLOCKLAB_REGISTER(optimizer_registry(),
                  BLOCKLAB_ENTRY("adamw")
                      .summary("AdamW: Adam with decoupled weight decay")
                      .paper("Decoupled Weight Decay Regularization (Loshchilov, Hutter, 2019), arXiv:1711.05101")
                      .equation("m=b1 m+(1-b1)g; v=b2 v+(1-b2)g^2; w -= lr (m^/(sqrt(v^)+eps) + wd w)")
                      .schema(adamw_schema())
                      .example("{weight_decay: 0.05}"),
                  make_adamw);

}  // namespace
}  // namespace blocklab
