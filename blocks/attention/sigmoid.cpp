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
  if (options.qk_norm()) {
    q_norm = register_module("q_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({head_dim()}).eps(1e-6)));
    k_norm = register_module("k_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({head_dim()}).eps(1e-6)));
  }
}

torch::Tensor SigmoidAttentionImpl::logit_bias(std::int64_t tokens) const {
  if (learned_bias.defined()) return learned_bias;
  const double b = options_.bias_mode() == "constant" ? options_.bias() : -std::log(static_cast<double>(tokens));
  return torch::scalar_tensor(b, torch::kFloat64);
}

torch::Tensor SigmoidAttentionImpl::scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx) {
  if (!q_norm) return MultiHeadAttentionImpl::scores(q, k, ctx);
  return torch::matmul(q_norm->forward(q) * scale(), k_norm->forward(k).transpose(-2, -1));
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
    BLOCKLAB_OPTION(s, qk_norm, "LayerNorm over the head width on q and k, the paper's stabiliser (default false)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  EntryInfo{SigmoidAttentionImpl::kKey,
                            "sigmoid self-attention: elementwise sigmoid with bias -ln n instead of the softmax",
                            "Theory, Analysis, and Best Practices for Sigmoid Self-Attention (Ramapuram et al., 2024), "
                            "arXiv:2409.04431",
                            "sigmoid(Q K^T / sqrt(d) + b) V, b = -ln n, no normalisation over keys",
                            sigmoid_attention_schema().schema(), "{heads: 2}", __FILE__},
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto options = bind_options(sigmoid_attention_schema(), params);
                    check_heads(args.dim, options.heads(), params);
                    return std::make_shared<SigmoidAttentionImpl>(args.dim, options,
                                                                  multi_head_config(options, params, args));
                  });

}  // namespace
}  // namespace blocklab
