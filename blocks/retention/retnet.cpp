#include "blocks/retention/retnet.h"

#include <cmath>

#include "blocks/common/init.h"

#include "blocks/common/heads_layout.h"
#include "blocks/common/rotary.h"
#include "blocks/common/srms_norm.h"
#include "blocks/masks/retnet_decay.h"

namespace blocklab {

namespace {

// Angles [N, d/2] (float64) of RetNet's relative position (torchscale's RetNetRelPos): channel
// pairs (2i, 2i+1) rotated by n theta_i with theta_i = 10000^(-i/(d/2-1)), i.e. the exponents
// spaced evenly over [0, 1] (RoFormer spaces them over [0, 1 - 2/d]).
torch::Tensor retnet_angles(const torch::Tensor& positions, std::int64_t key_dim) {
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(positions.device());
  const auto theta = torch::pow(10000.0, -torch::linspace(0.0, 1.0, key_dim / 2, f64));
  return positions.to(torch::kFloat64).unsqueeze(1) * theta.unsqueeze(0);
}

std::vector<double> gammas_of(const RetNetOptions& o) {
  return o.gammas().empty() ? retnet_gammas(o.heads()) : o.gammas();
}

}  // namespace

RetNetImpl::RetNetImpl(std::int64_t dim, const RetNetOptions& o)
    : LinearMixerImpl(kKey, linear_core_config(o, /*normalise=*/false, /*causal_only=*/true)),
      heads_(o.heads()),
      key_dim_(dim / o.heads()),
      value_dim_(static_cast<std::int64_t>(std::llround(o.value_factor() * dim)) / o.heads()),
      rotary_(o.rotary()),
      norm_eps_(o.norm_eps()) {
  const auto inner = value_dim_ * heads_;
  q = register_module("q", make_linear(dim, dim));
  k = register_module("k", make_linear(dim, dim));
  v = register_module("v", make_linear(dim, inner));
  g = register_module("g", make_linear(dim, inner));
  out = register_module("out", make_linear(inner, dim));
  if (o.norm() == "group")
    norm = register_module("norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(heads_, inner).eps(o.norm_eps())));
  std::vector<double> logs;
  for (double gamma : gammas_of(o)) logs.push_back(std::log(gamma));
  log_gammas_ = register_buffer("log_gammas", torch::tensor(logs, torch::kFloat64));
}

LinearTerms RetNetImpl::terms(const torch::Tensor& x, const MixerContext& ctx) {
  const auto n = x.size(1);
  const auto heads = [&](const torch::Tensor& t, std::int64_t width) { return heads_first(t, heads_, width); };
  auto qh = heads(q->forward(x), key_dim_);
  auto kh = heads(k->forward(x), key_dim_) / std::sqrt(static_cast<double>(key_dim_));
  if (rotary_) {
    const auto angles = retnet_angles(ctx.token_positions(n, x.device()), key_dim_);
    qh = apply_rotary(qh, angles);
    kh = apply_rotary(kh, angles);
  }
  return {qh, kh, heads(v->forward(x), value_dim_)};
}

torch::Tensor RetNetImpl::output(const torch::Tensor& o, const torch::Tensor& x) {
  const auto b = o.size(0), n = o.size(2);
  const auto heads_last = o.transpose(1, 2);                                                      // [B, N, h, e]
  const auto normed = norm ? norm->forward(heads_last.reshape({b * n, heads_ * value_dim_}))      // GroupNorm per token
                           : srms_norm(heads_last, norm_eps_);                                    // RMS per head
  return out->forward(torch::silu(g->forward(x)) * normed.reshape({b, n, heads_ * value_dim_}));  // eq. (8)
}

const OptionsSchema<RetNetOptions>& retnet_schema() {
  static const auto schema = [] {
    OptionsSchema<RetNetOptions> s;
    BLOCKLAB_OPTION(s, heads, "retention heads h, one decay each (default 4); dim must be divisible by h").min = 1;
    BLOCKLAB_OPTION(s, value_factor, "value and gate width / dim (default 2, the paper's 2d)").min = 0.0;
    BLOCKLAB_OPTION(s, gammas, "the per-head decays gamma_h in (0, 1) (default empty: 1 - 2^(-5-h))");
    BLOCKLAB_OPTION(s, rotary, "rotary positions on q and k (RetNet's xPos-like rotation; default true)");
    s.choice(
        "norm", {"group", "rms"},
        "the per-head norm of eq. (8): group (the paper's GroupNorm, affine) or rms (torchscale's current code: "
        "RMSNorm of each head, no parameters) (default group)",
        [](RetNetOptions& o, const std::string& v) { o.norm(v); }, [](const RetNetOptions& o) { return o.norm(); });
    BLOCKLAB_OPTION(s, norm_eps, "epsilon of the per-head norm (default 1e-6)").min = 0.0;
    declare_linear_core_options(s);
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_retnet(const ConfigNode& params, const MixerArgs& args) {
  const auto o = bind_options(retnet_schema(), params);
  if (args.dim % o.heads() != 0 || (args.dim / o.heads()) % 2 != 0)
    config_fail(params, "heads",
                "retention/retnet: dim " + std::to_string(args.dim) + " must split into " + std::to_string(o.heads()) +
                    " heads of even width (the rotary positions rotate channel pairs)",
                {"choose heads so that dim / heads is even"});
  const auto inner = static_cast<std::int64_t>(std::llround(o.value_factor() * args.dim));
  if (inner < o.heads() || inner % o.heads() != 0)
    config_fail(params, "value_factor",
                "retention/retnet: value_factor x dim = " + std::to_string(inner) + " must be a positive multiple of " +
                    std::to_string(o.heads()) + " heads",
                {"use value_factor 1 or 2"});
  if (!o.gammas().empty()) {
    if (static_cast<std::int64_t>(o.gammas().size()) != o.heads())
      config_fail(params, "gammas",
                  "retention/retnet: " + std::to_string(o.gammas().size()) + " gammas for " +
                      std::to_string(o.heads()) + " heads",
                  {"give one decay per head, or leave gammas out for 1 - 2^(-5-h)"});
    for (double gamma : o.gammas())
      if (!(gamma > 0.0 && gamma < 1.0))
        config_fail(params, "gammas", "retention/retnet: every gamma must lie in (0, 1), got " + std::to_string(gamma));
  }
  return std::make_shared<RetNetImpl>(args.dim, o);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(RetNetImpl::kKey)
                      .summary("multi-scale retention: per-head decayed linear attention, GroupNorm, swish gate")
                      .paper("Retentive Network (Sun et al., 2023), arXiv:2307.08621")
                      .equation("(swish(X W_G) ⊙ GroupNorm_h((Q K^T ⊙ D_h) V)) W_O, D_nm = gamma_h^(n-m) (n >= m), "
                                "gamma_h = 1 - 2^(-5-h)")
                      .schema(retnet_schema().schema())
                      .example("{heads: 2, chunk: 16}"),
                  make_retnet);

}  // namespace
}  // namespace blocklab
