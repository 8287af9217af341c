#include "blocks/attention/selective.h"

namespace blocklab {

SelectiveAttentionImpl::SelectiveAttentionImpl(std::int64_t dim, const SelectiveAttentionOptions& options)
    : SelectiveAttentionImpl(dim, options, multi_head_config(options)) {}

SelectiveAttentionImpl::SelectiveAttentionImpl(std::int64_t dim, const SelectiveAttentionOptions& options,
                                               const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options) {
  if (options.position_temperature()) beta = register_parameter("beta", torch::full({}, options.beta()));
  if (options.query_temperature()) query_gate = register_parameter("query_gate", torch::zeros({heads(), head_dim()}));
  if (options.value_temperature()) value_gate = register_parameter("value_gate", torch::zeros({heads(), head_dim()}));
}

MixerCapabilities SelectiveAttentionImpl::capabilities() const {
  auto c = MultiHeadAttentionImpl::capabilities();
  c.variable_lengths = false;  // the temperature counts every key, padding included (ln n_i)
  return c;
}

torch::Tensor SelectiveAttentionImpl::query_temperatures(const torch::Tensor& q, bool causal) const {
  const auto n = q.size(-2);
  auto tau = torch::ones({1, 1, n, 1}, q.options());
  if (beta.defined()) {
    // Position-aware temperature of the official code: 1 + exp(-exp(beta)) ln n_i, n_i the
    // number of visible keys (1-based query position when causal).
    const auto visible = causal ? torch::arange(1, n + 1, q.options()).view({1, 1, n, 1})
                                : torch::full({1, 1, n, 1}, static_cast<double>(n), q.options());
    tau = tau + torch::exp(-torch::exp(beta)).to(q.dtype()) * visible.log();
  }
  if (query_gate.defined()) {
    // Token-aware query temperature (paper; [verify] form): + tanh(u_h . q_i).
    const auto u = query_gate.to(q.dtype()).view({1, heads(), head_dim(), 1});
    tau = tau + torch::tanh(torch::matmul(q, u));  // [B, h, N, 1]
  }
  return tau;
}

torch::Tensor SelectiveAttentionImpl::scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx) {
  // Temperature on the query: S_ij = tau_i q_i . k_j / sqrt(d).
  return torch::matmul(q * (query_temperatures(q, ctx.causal) * scale()), k.transpose(-2, -1));
}

torch::Tensor SelectiveAttentionImpl::values(const torch::Tensor& v, const MixerContext&) {
  if (!value_gate.defined()) return v;
  // Value temperature (paper; [verify] form): v_j (1 + tanh(w_h . v_j)), identity at init.
  const auto w = value_gate.to(v.dtype()).view({1, heads(), head_dim(), 1});
  return v * (1.0 + torch::tanh(torch::matmul(v, w)));
}

const OptionsSchema<SelectiveAttentionOptions>& selective_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<SelectiveAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, position_temperature,
                    "position-aware query temperature 1 + exp(-exp(beta)) ln n_i, n_i the visible keys (default true)");
    BLOCKLAB_OPTION(s, beta,
                    "initial beta of the position-aware temperature; larger is closer to softmax (default 1.5)");
    BLOCKLAB_OPTION(s, query_temperature, "token-aware query temperature + tanh(u_h . q_i), zero init (default false)");
    BLOCKLAB_OPTION(s, value_temperature, "value temperature v_j (1 + tanh(w_h . v_j)), zero init (default false)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mixer_registry(),
    BLOCKLAB_ENTRY(SelectiveAttentionImpl::kKey)
        .summary("selective self-attention: softmax with learned per-query (position, token) and per-value "
                 "temperatures")
        .paper("Selective Attention: Enhancing Transformer through Principled Context Control (Zhang et "
               "al., 2024), arXiv:2411.12892")
        .equation("softmax(tau_i q_i . k_j / sqrt(d)) (tau^v ⊙ V), tau_i = 1 + exp(-exp(beta)) ln n_i "
                  "[+ tanh(u . q_i)]")
        .schema(selective_attention_schema().schema())
        .example("{heads: 2, query_temperature: true, value_temperature: true}"),
    [](const ConfigNode& params, const MixerArgs& args) {
      return make_attention<SelectiveAttentionImpl>(selective_attention_schema(), params, args);
    });

}  // namespace
}  // namespace blocklab
