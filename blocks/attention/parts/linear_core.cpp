#include "blocks/attention/parts/linear_core.h"

#include <limits>
#include <utility>

#include "blocks/attention/parts/dense_core.h"

namespace blocklab {

torch::Tensor linear_decay_powers(const torch::Tensor& log_decay, const torch::Tensor& powers) {
  std::vector<std::int64_t> shape(1 + powers.dim(), 1);
  shape[0] = log_decay.size(0);
  return torch::exp(log_decay.view(shape) * powers.unsqueeze(0));
}

torch::Tensor linear_decay_matrix(const torch::Tensor& log_decay, std::int64_t tokens, bool causal) {
  const auto t = torch::arange(tokens, log_decay.options());
  const auto lag = t.unsqueeze(1) - t.unsqueeze(0);  // i - j
  if (!causal) return linear_decay_powers(log_decay, lag.abs());
  return linear_decay_powers(log_decay, lag.clamp_min(0)) * (lag >= 0).to(log_decay.dtype());
}

torch::Tensor linear_token_decay_matrix(const torch::Tensor& log_decay) {
  const auto sums = log_decay.cumsum(-1);  // Lambda_i = sum_{l <= i} log a_l
  const auto n = log_decay.size(-1);
  const auto above = torch::ones({n, n}, log_decay.options().dtype(torch::kBool)).triu(1);
  return (sums.unsqueeze(-1) - sums.unsqueeze(-2)).masked_fill(above, -std::numeric_limits<double>::infinity()).exp();
}

torch::Tensor linear_weights(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& log_decay,
                             bool causal) {
  auto a = torch::matmul(q, k.transpose(-1, -2));
  const auto n = q.size(2);
  if (log_decay.defined() && log_decay.dim() == 3) {
    TORCH_CHECK(causal, "linear attention: per-token decays are causal only");
    return a * linear_token_decay_matrix(log_decay.to(q.dtype()));
  }
  if (log_decay.defined()) return a * linear_decay_matrix(log_decay.to(q.dtype()), n, causal);
  if (causal) return a.masked_fill(causal_mask(n, q.device()), 0.0);
  return a;
}

torch::Tensor linear_parallel(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& log_decay, bool causal) {
  return torch::matmul(linear_weights(q, k, log_decay, causal), v);
}

std::pair<torch::Tensor, torch::Tensor> linear_recurrent_step(const torch::Tensor& q_t, const torch::Tensor& k_t,
                                                              const torch::Tensor& v_t, const torch::Tensor& state,
                                                              const torch::Tensor& log_decay) {
  auto s = k_t.unsqueeze(-1) * v_t.unsqueeze(-2);  // k_t v_t^T [B, h, d, e]
  if (log_decay.defined())                         // [h] constant, or [B, h] this step's
    s = s +
        torch::exp(log_decay.to(state.dtype())).view({log_decay.dim() == 2 ? log_decay.size(0) : 1, -1, 1, 1}) * state;
  else
    s = s + state;
  return {torch::matmul(q_t.unsqueeze(-2), s).squeeze(-2), s};
}

LinearCore::LinearCore(std::string key, LinearCoreConfig config) : key_(std::move(key)), config_(std::move(config)) {}

MixerCapabilities LinearCore::core_capabilities() const {
  MixerCapabilities c;
  c.causal = true;
  c.recurrent = true;
  c.variable_lengths = true;
  c.weights = config_.normalise ? MixerCapabilities::Weights::normalised : MixerCapabilities::Weights::unnormalised;
  return c;
}

torch::Tensor LinearCore::with_normaliser(const torch::Tensor& v) const {
  if (!config_.normalise) return v;
  auto ones_shape = v.sizes().vec();
  ones_shape.back() = 1;
  return torch::cat({v, torch::ones(ones_shape, v.options())}, -1);
}

torch::Tensor LinearCore::normalised(const torch::Tensor& o) const {
  if (!config_.normalise) return o;
  const auto e = o.size(-1) - 1;
  return o.narrow(-1, 0, e) / (o.narrow(-1, e, 1) + config_.eps);
}

void LinearCore::record(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx) {
  torch::NoGradGuard no_grad;
  auto a = linear_weights(q, k, log_decay(), causal(ctx));
  if (config_.normalise) {  // rows that sum to 1; a row with no weight at all (ReLU features) stays 0
    const auto rows = a.sum(-1, true);
    a = torch::where(rows > 0, a / rows, torch::zeros_like(a));
  }
  ctx.probe->record(ctx.layer, key_, a);
}

torch::Tensor LinearCore::attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const MixerContext& ctx) {
  auto keys = k;
  auto values = with_normaliser(v);
  if (ctx.lengths.defined()) {  // padded keys add nothing, to the sums or the normaliser
    const auto valid = padding_mask(ctx.lengths, q.size(2), q.device()).logical_not().transpose(-1, -2);  // [B,1,N,1]
    keys = keys * valid.to(keys.dtype());
    values = values * valid.to(values.dtype());
  }
  if (capturing(ctx.probe)) record(q, keys, ctx);
  const bool is_causal = causal(ctx);
  const auto o = config_.form == "parallel" ? linear_parallel(q, keys, values, log_decay(), is_causal)
                                            : linear_chunked(q, keys, values, log_decay(), is_causal, config_.chunk);
  return normalised(o);
}

torch::Tensor LinearCore::initial_state(std::int64_t batch, std::int64_t heads, std::int64_t key_dim,
                                        std::int64_t value_dim, const torch::TensorOptions& options) const {
  return torch::zeros({batch, heads, key_dim, value_dim + (config_.normalise ? 1 : 0)}, options);
}

std::pair<torch::Tensor, torch::Tensor> LinearCore::attend_step(const torch::Tensor& q_t, const torch::Tensor& k_t,
                                                                const torch::Tensor& v_t, const torch::Tensor& state) {
  auto [o, s] = linear_recurrent_step(q_t, k_t, with_normaliser(v_t), state, log_decay());
  return {normalised(o), s};
}

}  // namespace blocklab
