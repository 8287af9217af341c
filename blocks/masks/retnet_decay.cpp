#include "blocks/masks/retnet_decay.h"

#include <cmath>
#include <limits>

namespace blocklab {

std::vector<double> retnet_gammas(std::int64_t heads) {
  std::vector<double> out;
  for (std::int64_t h = 0; h < heads; ++h) out.push_back(1.0 - std::pow(2.0, -5.0 - static_cast<double>(h)));
  return out;
}

std::vector<double> rmt_gammas(std::int64_t heads, double initial, double heads_range) {
  std::vector<double> out;
  for (std::int64_t h = 0; h < heads; ++h)
    out.push_back(1.0 - std::pow(2.0, -initial - heads_range * static_cast<double>(h) / static_cast<double>(heads)));
  return out;
}

RetnetDecayMaskImpl::RetnetDecayMaskImpl(std::int64_t heads, const RetnetDecayMaskOptions& options)
    : options_(options) {
  const auto& o = options;
  TORCH_CHECK(o.schedule() == "retnet" || o.schedule() == "rmt", kKey, ": schedule must be retnet or rmt");
  TORCH_CHECK(o.space() == "auto" || o.space() == "1d" || o.space() == "2d", kKey, ": space must be auto, 1d or 2d");
  TORCH_CHECK(o.apply() == "logits" || o.apply() == "weights", kKey, ": apply must be logits or weights");
  std::vector<double> g = !o.gammas().empty()     ? o.gammas()
                          : o.schedule() == "rmt" ? rmt_gammas(heads, o.initial(), o.heads_range())
                                                  : retnet_gammas(heads);
  TORCH_CHECK(static_cast<std::int64_t>(g.size()) == heads, kKey, ": ", g.size(), " gammas for ", heads, " heads");
  for (double v : g) TORCH_CHECK(v > 0.0 && v <= 1.0, kKey, ": every gamma must lie in (0, 1], got ", v);
  gammas = register_buffer("gammas", torch::tensor(g, torch::kFloat64));
}

torch::Tensor RetnetDecayMaskImpl::log_decay(std::int64_t tokens, const MixerContext& ctx) {
  const auto device = gammas.device();
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(device);
  const std::int64_t grid = tokens - ctx.prefix_tokens;
  TORCH_CHECK(grid >= 0, kKey, ": ", tokens, " tokens but ", ctx.prefix_tokens, " prefix tokens");
  torch::Tensor pos =
      options_.space() == "1d" ? torch::arange(grid, f64).unsqueeze(1) : token_positions(tokens, ctx, device);
  TORCH_CHECK(options_.space() != "2d" || pos.size(1) == 2, kKey,
              ": space 2d needs the tokens of an image grid (ctx grid ", ctx.grid_height, "x", ctx.grid_width, " + ",
              ctx.prefix_tokens, " prefix tokens, got ", tokens, " tokens); use space: auto or 1d for sequences");
  const auto log_gamma = gammas.to(torch::kFloat64).log().view({-1, 1, 1});  // [h, 1, 1]
  torch::Tensor out;
  if (pos.size(1) == 2) {
    out = log_gamma * pairwise_distance(pos, Metric::Manhattan);  // RMT: |dx| + |dy|
  } else {
    const auto diff = pos.unsqueeze(1).select(-1, 0) - pos.unsqueeze(0).select(-1, 0);  // i - j
    out = log_gamma * diff.abs();
    if (!options_.bidirectional())  // RetNet: D_ij = 0 for j > i
      out = out.masked_fill((diff < 0).unsqueeze(0), -std::numeric_limits<double>::infinity());
  }
  return with_prefix(out, ctx.prefix_tokens, 0.0);
}

torch::Tensor RetnetDecayMaskImpl::matrix(std::int64_t tokens, const MixerContext& ctx) {
  const auto log_d = log_decay(tokens, ctx);
  return mode() == Mode::AddLogits ? log_d : log_d.exp();
}

const OptionsSchema<RetnetDecayMaskOptions>& retnet_decay_mask_schema() {
  static const auto schema = [] {
    using O = RetnetDecayMaskOptions;
    OptionsSchema<O> s;
    s.choice(
        "schedule", {"retnet", "rmt"},
        "per-head decay: retnet gamma_h = 1 - 2^(-5-h) (default), rmt gamma_h = 1 - 2^(-initial - heads_range h/H)",
        [](O& o, const std::string& v) { o.schedule(v); }, [](const O& o) { return o.schedule(); });
    BLOCKLAB_OPTION(s, initial, "rmt schedule: initial value (default 2)");
    BLOCKLAB_OPTION(s, heads_range, "rmt schedule: range over the heads (default 4)");
    auto& gammas =
        BLOCKLAB_OPTION(s, gammas, "explicit per-head gammas in (0, 1], one per head (default none: the schedule)");
    gammas.min = 0.0;
    gammas.max = 1.0;
    s.choice(
        "space", {"auto", "1d", "2d"},
        "decay distance: Manhattan on the patch grid (2d), token order (1d), 2d when the context has a grid "
        "else 1d (auto, default)",
        [](O& o, const std::string& v) { o.space(v); }, [](const O& o) { return o.space(); });
    s.choice(
        "apply", {"logits", "weights"},
        "logits: softmax(s + log D) (RMT's code, default); weights: softmax(s) ⊙ D (RMT's paper, rows sum <= 1)",
        [](O& o, const std::string& v) { o.apply(v); }, [](const O& o) { return o.apply(); });
    BLOCKLAB_OPTION(s, bidirectional, "1-D: gamma^|i - j| both ways instead of RetNet's causal decay (default false)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mask_registry(),
    BLOCKLAB_ENTRY(RetnetDecayMaskImpl::kKey)
        .summary("RetNet exponential decay per head: causal gamma^(i-j) on sequences, Manhattan "
                 "gamma^(|dx|+|dy|) on grids (RMT)")
        .paper("Retentive Network: A Successor to Transformer for Large Language Models (Sun et al., 2023), "
               "arXiv:2307.08621; 2-D: RMT: Retentive Networks Meet Vision Transformers (Fan et al., 2024), "
               "arXiv:2309.11523")
        .equation("A = softmax(q k^T / sqrt(d) + log D), D_ij = gamma_h^(|x_i-x_j| + |y_i-y_j|) "
                  "(1-D: gamma_h^(i-j), 0 for j > i), gamma_h = 1 - 2^(-5-h)")
        .schema(retnet_decay_mask_schema().schema())
        .example("{}"),
    [](const ConfigNode& params, const MaskArgs& args) -> AttentionMask {
      const auto options = bind_options(retnet_decay_mask_schema(), params);
      if (!options.gammas().empty() && static_cast<std::int64_t>(options.gammas().size()) != args.heads)
        config_fail(params, "gammas",
                    "mask/retnet-decay: " + std::to_string(options.gammas().size()) + " gammas for an attention with " +
                        std::to_string(args.heads) + " heads",
                    {"give one gamma per head, or leave gammas out to use the schedule"});
      for (double g : options.gammas())
        if (g <= 0.0)
          config_fail(params, "gammas", "mask/retnet-decay: every gamma must be > 0 (log D = |Δ| log gamma)",
                      {"gammas in (0, 1], e.g. [0.9, 0.99]"});
      return std::make_shared<RetnetDecayMaskImpl>(args.heads, options);
    });

}  // namespace
}  // namespace blocklab
