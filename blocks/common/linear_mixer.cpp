#include "blocks/common/linear_mixer.h"

#include <utility>

namespace blocklab {

LinearMixerImpl::LinearMixerImpl(std::string key, LinearCoreConfig core)
    : LinearCore(std::move(key), std::move(core)) {}

torch::Tensor LinearMixerImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const LinearTerms t = terms(x, ctx);
  return output(attend(t.q, t.k, t.v, ctx), x);
}

MixerState LinearMixerImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  const StateDims dims = state_dims();
  return MixerState{{initial_state(batch, dims.heads, dims.key_dim, dims.value_dim, options)}, 0};
}

MixerStep LinearMixerImpl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) {
  MixerContext one = ctx.without_probe();
  one.positions = torch::full({1}, state.position, torch::TensorOptions(torch::kLong).device(x_t.device()));
  one.causal = true;
  one.lengths = torch::Tensor();
  const auto x = x_t.unsqueeze(1);
  const LinearTerms t = terms(x, one);
  auto [o, s] = attend_step(t.q.squeeze(2), t.k.squeeze(2), t.v.squeeze(2), state.tensors.at(0));
  return MixerStep{output(o.unsqueeze(2), x).squeeze(1), MixerState{{s}, state.position + 1}};
}

}  // namespace blocklab
