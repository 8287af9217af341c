#include "blocks/common/rep_batch_norm.h"

namespace blocklab {

RepBatchNormImpl::RepBatchNormImpl(std::int64_t channels) {
  bn = register_module("bn", torch::nn::BatchNorm1d(channels));
  alpha = register_parameter("alpha", torch::ones({1}));
}

torch::Tensor RepBatchNormImpl::forward(const torch::Tensor& x) {
  const auto flat = x.reshape({-1, x.size(-1)});  // statistics over batch x tokens
  return (bn->forward(flat) + alpha * flat).view(x.sizes());
}

ProgressiveRepBatchNormImpl::ProgressiveRepBatchNormImpl(std::int64_t channels, std::int64_t steps, std::int64_t warm_)
    : steps_(steps) {
  TORCH_CHECK(steps > 0, "prepbn: steps must be positive");
  ln = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({channels}).eps(1e-6)));
  rep = register_module("rep", RepBatchNorm(channels));
  warm = register_buffer("warm", torch::tensor(warm_, torch::kLong));
  iter = register_buffer("iter", torch::tensor(steps, torch::kLong));
}

double ProgressiveRepBatchNormImpl::lambda() const {
  if (warm.item<std::int64_t>() > 0) return 1.0;
  return static_cast<double>(iter.item<std::int64_t>()) / static_cast<double>(steps_);
}

torch::Tensor ProgressiveRepBatchNormImpl::forward(const torch::Tensor& x) {
  if (!is_training()) return rep->forward(x);
  if (warm.item<std::int64_t>() > 0) {
    warm.sub_(1);
    return ln->forward(x);
  }
  const double l = lambda();
  if (iter.item<std::int64_t>() > 0) iter.sub_(1);
  if (l == 0.0) return rep->forward(x);
  return l * ln->forward(x) + (1.0 - l) * rep->forward(x);
}

}  // namespace blocklab
