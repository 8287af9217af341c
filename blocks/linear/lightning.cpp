#include "blocks/linear/lightning.h"

#include <cmath>

#include "blocks/common/init.h"

#include "blocks/common/heads_layout.h"
#include "blocks/common/multi_head.h"
#include "blocks/common/srms_norm.h"
#include "blocks/masks/alibi.h"

namespace blocklab {

std::vector<double> lightning_decay_rates(std::int64_t heads, std::int64_t layer, std::int64_t layers,
                                          const std::string& schedule) {
  std::vector<double> rates;
  if (schedule == "alibi_layerwise") {
    // lightning-attention's tnl_attn.py: slopes * (1 - l / (L - 1) + 1e-5); one layer: the slopes.
    const double factor = layers > 1 ? 1.0 - static_cast<double>(layer) / static_cast<double>(layers - 1) + 1e-5 : 1.0;
    for (double slope : alibi_slopes(heads)) rates.push_back(slope * factor);
  } else if (schedule == "paper_text") {
    for (std::int64_t h = 1; h <= heads; ++h)
      rates.push_back(8.0 * static_cast<double>(h) / static_cast<double>(heads) *
                      (1.0 - static_cast<double>(layer) / static_cast<double>(layers)));
  } else {
    TORCH_CHECK(schedule == "none", "linear/lightning: unknown decay schedule ", schedule);
  }
  return rates;
}

LightningImpl::LightningImpl(std::int64_t dim, const LightningOptions& o, std::int64_t layer, std::int64_t layers)
    : LinearMixerImpl(kKey, linear_core_config(o, /*normalise=*/false, /*causal_only=*/true)),
      options_(o),
      dim_(dim),
      head_dim_(dim / o.heads()) {
  qkv = register_module("qkv", make_linear(dim, 3 * dim));
  if (o.variant() == "tnl") {
    u = register_module("u", make_linear(dim, dim));
  } else {
    const auto rank = o.gate_rank() > 0 ? o.gate_rank() : head_dim_;
    gate_down = register_module("gate_down", make_linear(dim, rank));
    gate_up = register_module("gate_up", make_linear(rank, dim));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(o.norm_eps())));
  }
  out = register_module("out", make_linear(dim, dim));
  if (o.lrpe()) {  // theta_c = 10000^(-2c/E), c = 0..E-1, split over the heads
    const auto c = torch::arange(dim, torch::kFloat64);
    theta = register_parameter(
        "theta",
        torch::pow(10000.0, -2.0 * c / static_cast<double>(dim)).to(torch::kFloat32).view({o.heads(), 1, head_dim_}));
  }
  std::vector<double> logs;
  for (double s : lightning_decay_rates(o.heads(), layer, layers, o.decay())) logs.push_back(-s);
  if (!logs.empty()) log_decay_ = register_buffer("log_decay", torch::tensor(logs, torch::kFloat64));
}

torch::Tensor LightningImpl::lrpe(const torch::Tensor& x, const torch::Tensor& positions) const {
  const auto angle = theta * positions.to(theta.dtype()).view({-1, 1});  // [h, N, d]
  return torch::cat({x * angle.cos(), x * angle.sin()}, -1);
}

LinearTerms LightningImpl::terms(const torch::Tensor& x, const MixerContext& ctx) {
  const auto n = x.size(1);
  const auto y = qkv->forward(x);
  const auto heads = [&](std::int64_t part) {
    return heads_first(y.narrow(-1, part * dim_, dim_), options_.heads(), head_dim_);
  };
  auto q = torch::silu(heads(0)), k = torch::silu(heads(1));
  auto v = options_.variant() == "tnl" ? heads(2) : torch::silu(heads(2));
  if (theta.defined()) {
    const auto positions = ctx.token_positions(n, x.device());
    q = lrpe(q, positions);
    k = lrpe(k, positions);
  }
  return {q, k, v};
}

torch::Tensor LightningImpl::output(const torch::Tensor& o, const torch::Tensor& x) {
  const auto merged = o.transpose(1, 2).reshape({o.size(0), o.size(2), dim_});
  if (options_.variant() == "tnl") return out->forward(u->forward(x) * srms_norm(merged, options_.norm_eps()));
  return out->forward(norm->forward(merged) * torch::sigmoid(gate_up->forward(gate_down->forward(x))));
}

LinearMixerImpl::StateDims LightningImpl::state_dims() const {
  return {options_.heads(), theta.defined() ? 2 * head_dim_ : head_dim_, head_dim_};
}

const OptionsSchema<LightningOptions>& lightning_schema() {
  static const auto schema = [] {
    OptionsSchema<LightningOptions> s;
    BLOCKLAB_OPTION(s, heads, "heads h, one decay each (default 4); dim must be divisible by h").min = 1;
    s.choice(
        "variant", {"tnl", "tnl2"},
        "tnl: TransNormerLLM's gated linear attention (SiLU q, k; u ⊙ SRMSNorm(o)); tnl2: lightning-attention's "
        "2024 TNL mixer (SiLU q, k, v; LayerNorm(o) ⊙ low-rank sigmoid gate) (default tnl)",
        [](LightningOptions& o, const std::string& v) { o.variant(v); },
        [](const LightningOptions& o) { return o.variant(); });
    s.choice(
        "decay", {"alibi_layerwise", "paper_text", "none"},
        "per-head decay lambda = exp(-s): alibi_layerwise (ALiBi slopes x (1 - l/(L-1) + 1e-5), the code's), "
        "paper_text ((8h/H)(1 - l/L)), none (default alibi_layerwise)",
        [](LightningOptions& o, const std::string& v) { o.decay(v); },
        [](const LightningOptions& o) { return o.decay(); });
    BLOCKLAB_OPTION(s, lrpe, "LRPE-d on q and k: learnable per-channel rotations theta (default false)");
    BLOCKLAB_OPTION(s, gate_rank, "tnl2: width of the low-rank output gate (default 0 = the head width)").min = 0;
    BLOCKLAB_OPTION(s, norm_eps, "epsilon of the output norm (default 1e-6)").min = 0.0;
    declare_linear_core_options(s);
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(LightningImpl::kKey)
                      .summary("TransNormerLLM's gated linear attention on Lightning Attention (decayed, causal)")
                      .paper("TransNormerLLM (Qin et al., 2023), arXiv:2307.14995; Lightning Attention-2 (Qin et "
                             "al., 2024), arXiv:2401.04658")
                      .equation("(u ⊙ SRMSNorm(sum_{j<=i} lambda_h^(i-j) (silu(q_i).silu(k_j)) v_j)) W_o, "
                                "lambda_h = exp(-s_h^(l))")
                      .schema(lightning_schema().schema())
                      .example("{heads: 2, chunk: 16, lrpe: true}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto options = bind_options(lightning_schema(), params);
                    check_heads(args.dim, options.heads(), params);
                    return std::make_shared<LightningImpl>(args.dim, options, args.layer, args.layers);
                  });

}  // namespace
}  // namespace blocklab
