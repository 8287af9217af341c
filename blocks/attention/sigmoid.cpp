#include "blocks/attention/sigmoid.h"

#include <cmath>

namespace blocklab {

MixerCapabilities SigmoidAttentionImpl::capabilities() const {
  auto c = MultiHeadAttentionImpl::capabilities();
  c.weights = MixerCapabilities::Weights::unnormalised;  // elementwise: a zero-logit row sums to n/(n+1)
  return c;
}

SigmoidAttentionImpl::SigmoidAttentionImpl(std::int64_t dim, const SigmoidAttentionOptions& options)
    : SigmoidAttentionImpl(dim, options, multi_head_config(options)) {}

SigmoidAttentionImpl::SigmoidAttentionImpl(std::int64_t dim, const SigmoidAttentionOptions& options,
                                           const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options) {
  const auto& mode = options.bias_mode();
  TORCH_CHECK(mode == "neg_log_n" || mode == "constant" || mode == "learned", kKey,
              ": bias_mode must be neg_log_n, constant or learned, got ", mode);
  if (mode == "learned") {
    const double init = config.max_tokens > 0 ? -std::log(static_cast<double>(config.max_tokens)) : options.bias();
    learned_bias = register_parameter("learned_bias", torch::full({}, init));
  }
}

torch::Tensor SigmoidAttentionImpl::logit_bias(std::int64_t tokens) const {
  if (learned_bias.defined()) return learned_bias;
  const double b = options_.bias_mode() == "constant" ? options_.bias() : -std::log(static_cast<double>(tokens));
  return torch::scalar_tensor(b, torch::kFloat64);
}

torch::Tensor SigmoidAttentionImpl::normalise(const torch::Tensor& s, const MixerContext&) {
  // sigma(S + b) elementwise, b = -ln n by default; -inf (masked) logits give exactly 0.
  return torch::sigmoid(s + logit_bias(s.size(-1)).to(s.dtype()));
}

const OptionsSchema<SigmoidAttentionOptions>& sigmoid_attention_schema() {
  static const auto schema = [] {
    using O = SigmoidAttentionOptions;
    OptionsSchema<O> s;
    declare_multi_head_options(s);
    s.choice(
        "bias_mode", {"neg_log_n", "constant", "learned"},
        "logit bias b: -ln n for n tokens (neg_log_n, default), the constant `bias` (constant), or a learned scalar "
        "initialised at -ln max_tokens (learned)",
        [](O& o, const std::string& v) { o.bias_mode(v); }, [](const O& o) { return o.bias_mode(); });
    BLOCKLAB_OPTION(s, bias, "b for bias_mode constant (default -10, the official configs' value)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mixer_registry(),
    BLOCKLAB_ENTRY(SigmoidAttentionImpl::kKey)
        .summary("sigmoid self-attention: elementwise sigmoid with bias -ln n instead of the softmax")
        .paper("Theory, Analysis, and Best Practices for Sigmoid Self-Attention (Ramapuram et al., 2024), "
               "arXiv:2409.04431")
        .equation("sigmoid(Q K^T / sqrt(d) + b) V, b = -ln n, no normalisation over keys")
        .schema(sigmoid_attention_schema().schema())
        .example("{heads: 2}"),
    [](const ConfigNode& params, const MixerArgs& args) {
      return make_attention<SigmoidAttentionImpl>(sigmoid_attention_schema(), params, args);
    });

}  // namespace
}  // namespace blocklab
