#include "conformance/decay_recurrence.h"

namespace blocklab::conformance {

DecayRecurrenceImpl::DecayRecurrenceImpl(std::int64_t dim) {
  value = register_module("value", torch::nn::Linear(dim, dim));
  logit = register_parameter("logit", torch::randn({dim}));
}

MixerCapabilities DecayRecurrenceImpl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;
  c.recurrent = true;
  c.variable_lengths = true;  // causal: padding after a sequence never reaches its tokens
  return c;
}

torch::Tensor DecayRecurrenceImpl::forward(const torch::Tensor& x, const MixerContext&) {
  const auto n = x.size(1);
  const auto t = torch::arange(n, x.options());
  const auto lag = t.unsqueeze(1) - t.unsqueeze(0);                           // [N, N]: t - j
  const auto log_a = torch::log_sigmoid(logit).view({-1, 1, 1});              // [C, 1, 1]
  const auto decay = torch::exp(log_a * lag.clamp_min(0)) * (lag >= 0).to(x.dtype());  // [C, N, N]
  return torch::einsum("ctj,bjc->btc", {decay, value->forward(x)});
}

MixerState DecayRecurrenceImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  return MixerState{{torch::zeros({batch, logit.size(0)}, options)}, 0};
}

MixerStep DecayRecurrenceImpl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext&) {
  const auto h = torch::sigmoid(logit) * state.tensors.at(0) + value->forward(x_t);
  return MixerStep{h, MixerState{{h}, state.position + 1}};
}

}  // namespace blocklab::conformance
