#include "blocks/common/init.h"

#include <cmath>

namespace blocklab {

torch::Tensor trunc_normal_(torch::Tensor t, double std, double a, double b, double mean) {
  torch::NoGradGuard no_grad;
  const auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  const double lo = cdf((a - mean) / std), hi = cdf((b - mean) / std);
  t.uniform_(2.0 * lo - 1.0, 2.0 * hi - 1.0).erfinv_().mul_(std * std::sqrt(2.0)).add_(mean).clamp_(a, b);
  return t;
}

namespace {

void init_one(torch::nn::Module& m) {
  if (auto* linear = m.as<torch::nn::Linear>()) {
    trunc_normal_(linear->weight, 0.02);
    if (linear->bias.defined()) linear->bias.zero_();
  } else if (auto* norm = m.as<torch::nn::LayerNorm>()) {
    if (norm->weight.defined()) norm->weight.fill_(1.0);
    if (norm->bias.defined()) norm->bias.zero_();
  }
}

// Pre-order, as Module::modules(): a module, then each child's subtree in registration order.
void init_tree(torch::nn::Module& m) {
  if (dynamic_cast<const KeepsOwnInit*>(&m) != nullptr) return;
  init_one(m);
  for (const auto& child : m.children()) init_tree(*child);
}

}  // namespace

void init_vit_weights(torch::nn::Module& root) {
  torch::NoGradGuard no_grad;
  // By reference: `root` may still be under construction (not yet in a shared_ptr).
  init_tree(root);
}

torch::Tensor drop_path(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  const double keep = 1.0 - p;
  std::vector<std::int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  auto mask = torch::empty(shape, x.options()).bernoulli_(keep);
  if (keep > 0.0) mask.div_(keep);
  return x * mask;
}

}  // namespace blocklab
