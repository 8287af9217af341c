#include "blocks/linear/agent.h"

#include <cmath>

#include "blocks/common/init.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

namespace {

// sqrt(n) when n is a positive square, else 0.
std::int64_t square_side(std::int64_t n) {
  if (n < 1) return 0;
  const auto s = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  return s * s == n ? s : 0;
}

ProjectionConfig projection_config(std::int64_t dim, const AgentAttentionOptions& o) {
  TORCH_CHECK(o.heads() >= 1 && dim % o.heads() == 0, AgentAttentionImpl::kKey, ": heads ", o.heads(),
              " must divide dim ", dim);
  ProjectionConfig c;
  c.heads = o.heads();
  c.qkv_bias = o.qkv_bias();
  return c;
}

// A bias table, trunc-normal std 0.02 as in the official code.
torch::Tensor bias_table(torch::nn::Module& owner, const std::string& name, torch::IntArrayRef shape) {
  auto t = owner.register_parameter(name, torch::empty(shape));
  trunc_normal_(t, 0.02);
  return t;
}

// t [a, b, h, w] resized bilinearly to [a, b, height, width]; align_corners false and no
// antialiasing, F.interpolate's defaults in the official code. The identity at the same size.
torch::Tensor resize(const torch::Tensor& t, std::int64_t height, std::int64_t width) {
  namespace F = torch::nn::functional;
  return F::interpolate(t, F::InterpolateFuncOptions()
                               .size(std::vector<std::int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

}  // namespace

AgentAttentionImpl::AgentAttentionImpl(std::int64_t dim, const AgentAttentionOptions& options)
    : options_(options),
      side_(square_side(options.agents())),
      scale_(1.0),
      projection_(*this, dim, projection_config(dim, options)),
      output_(*this, dim, dim, /*gate=*/false, options.proj_drop()) {
  TORCH_CHECK(side_ > 0, kKey, ": agents must be a square number, got ", options.agents());
  TORCH_CHECK(options.bias_grid() >= 1, kKey, ": bias_grid must be positive, got ", options.bias_grid());
  scale_ = 1.0 / std::sqrt(static_cast<double>(projection_.head_dim()));
  dwc = register_module("dwc", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 3).padding(1).groups(dim)));
  if (!options.position_bias()) return;
  const auto h = options.heads(), n = options.agents(), g = options.bias_grid();
  an_bias = bias_table(*this, "an_bias", {h, n, kAgentTable, kAgentTable});
  na_bias = bias_table(*this, "na_bias", {h, n, kAgentTable, kAgentTable});
  ah_bias = bias_table(*this, "ah_bias", {h, n, g, 1});
  aw_bias = bias_table(*this, "aw_bias", {h, n, 1, g});
  ha_bias = bias_table(*this, "ha_bias", {h, g, 1, n});
  wa_bias = bias_table(*this, "wa_bias", {h, 1, g, n});
  ac_bias = bias_table(*this, "ac_bias", {h, n, 1});
  ca_bias = bias_table(*this, "ca_bias", {h, 1, n});
}

MixerCapabilities AgentAttentionImpl::capabilities() const {
  MixerCapabilities c;
  c.weights = MixerCapabilities::Weights::normalised;  // a product of two row-stochastic maps
  c.needs_grid = true;                                 // the agents pool the grid
  return c;
}

std::vector<std::string> AgentAttentionImpl::no_weight_decay() const {
  if (!options_.position_bias()) return {};
  return {"an_bias", "na_bias", "ah_bias", "aw_bias", "ha_bias", "wa_bias", "ac_bias", "ca_bias"};
}

AgentAttentionImpl::Layout AgentAttentionImpl::layout_of(const torch::Tensor& x, const MixerContext& ctx) const {
  TORCH_CHECK(x.dim() == 3, kKey, ": expects x [B, N, C], got ", x.sizes());
  TORCH_CHECK(!ctx.causal, kKey, ": the agents pool every grid position, so agent attention cannot be causal");
  const Layout layout{ctx.prefix_tokens, ctx.grid_height, ctx.grid_width};
  TORCH_CHECK(ctx.has_grid() && layout.prefix >= 0 && layout.prefix + layout.grid() == x.size(1), kKey,
              ": needs prefix tokens followed by an image grid; the context gives ", layout.prefix,
              " prefix tokens and a ", layout.height, "x", layout.width, " grid for ", x.size(1), " tokens");
  return layout;
}

torch::Tensor AgentAttentionImpl::pool_agents(const torch::Tensor& q, const Layout& layout) const {
  const auto b = q.size(0), heads = q.size(1), d = q.size(3);
  // [B, h, M, d] -> [B, h d, H, W]: channel head d + i, the channel order of x W_q.
  const auto image =
      q.narrow(2, layout.prefix, layout.grid()).transpose(2, 3).reshape({b, heads * d, layout.height, layout.width});
  const auto pooled = torch::adaptive_avg_pool2d(image, {side_, side_});  // [B, h d, s, s]
  return pooled.reshape({b, heads, d, side_ * side_}).transpose(2, 3);    // agents row-major over s x s
}

std::pair<torch::Tensor, torch::Tensor> AgentAttentionImpl::position_biases(const Layout& layout) const {
  const auto heads = an_bias.size(0), n = an_bias.size(1), height = layout.height, width = layout.width;
  // Agent -> grid token (B1) and grid token -> agent (B2), both as [heads, n, H, W].
  const auto to_grid = resize(an_bias, height, width) + resize(ah_bias, height, 1) + resize(aw_bias, 1, width);
  const auto from_grid = resize(na_bias, height, width) + resize(ha_bias.permute({0, 3, 1, 2}), height, 1) +
                         resize(wa_bias.permute({0, 3, 1, 2}), 1, width);
  // Every prefix key column takes ac, every prefix query row takes ca.
  auto aggregation =
      torch::cat({ac_bias.expand({heads, n, layout.prefix}), to_grid.reshape({heads, n, layout.grid()})}, -1);
  auto broadcast = torch::cat(
      {ca_bias.expand({heads, layout.prefix, n}), from_grid.reshape({heads, n, layout.grid()}).transpose(1, 2)}, 1);
  return {aggregation, broadcast};
}

torch::Tensor AgentAttentionImpl::restore_diversity(const torch::Tensor& o, const torch::Tensor& v,
                                                    const Layout& layout) {
  const auto b = v.size(0), heads = v.size(1), d = v.size(3), m = layout.grid();
  const auto image = v.narrow(2, layout.prefix, m).transpose(2, 3).reshape({b, heads * d, layout.height, layout.width});
  const auto local = dwc->forward(image).reshape({b, heads, d, m}).transpose(2, 3);  // [B, h, M, d]
  return torch::cat({o.narrow(2, 0, layout.prefix), o.narrow(2, layout.prefix, m) + local}, 2);
}

torch::Tensor AgentAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const auto layout = layout_of(x, ctx);
  const auto [q, k, v] = projection_.split(x);                      // [B, h, N, d]
  const auto agents = pool_agents(q, layout);                       // [B, h, n, d]
  auto agent_logits = agents.matmul(k.transpose(-2, -1)) * scale_;  // [B, h, n, N]
  auto query_logits = q.matmul(agents.transpose(-2, -1)) * scale_;  // [B, h, N, n]
  if (options_.position_bias()) {
    const auto [b1, b2] = position_biases(layout);
    agent_logits = agent_logits + b1;
    query_logits = query_logits + b2;
  }
  // Agent aggregation [B, h, n, N], then agent broadcast [B, h, N, n]: O(N n d) per head.
  const auto aggregation = torch::softmax(agent_logits, -1);
  const auto broadcast = torch::softmax(query_logits, -1);
  const auto o = broadcast.matmul(aggregation.matmul(v));
  // The effective map [B, h, N, N] of the same two softmaxes (the quadratic form, only to record).
  if (capturing(ctx.probe)) ctx.probe->record(ctx.layer, kKey, broadcast.matmul(aggregation));
  return output_.merge(restore_diversity(o, v, layout), x, is_training());
}

const OptionsSchema<AgentAttentionOptions>& agent_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<AgentAttentionOptions> s;
    BLOCKLAB_OPTION(s, heads, "attention heads h (default 4); dim must be divisible by h").min = 1;
    BLOCKLAB_OPTION(s, agents,
                    "agent tokens n, a square: the grid's queries average-pooled to sqrt(n) x sqrt(n) (default 49)")
        .min = 1;
    BLOCKLAB_OPTION(s, qkv_bias, "bias on the query/key/value projection (default true)");
    rate(BLOCKLAB_OPTION(s, proj_drop, "dropout after the output projection (default 0)"));
    BLOCKLAB_OPTION(s, bias_grid,
                    "grid size G the row/column agent biases (ah, aw, ha, wa) are stored at; resized bilinearly to "
                    "the actual grid (default 7)")
        .min = 1;
    BLOCKLAB_OPTION(s, position_bias, "the agent biases B1 and B2 (default true; false: none)");
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_agent_attention(const ConfigNode& params, const MixerArgs& args) {
  const auto options = bind_options(agent_attention_schema(), params);
  check_heads(args.dim, options.heads(), params);
  if (square_side(options.agents()) == 0) {
    const auto below = static_cast<std::int64_t>(std::floor(std::sqrt(static_cast<double>(options.agents()))));
    config_fail(params, "agents",
                "agents must be a square number (the grid's queries are pooled to sqrt(n) x sqrt(n) agents), got " +
                    std::to_string(options.agents()),
                {"agents: " + std::to_string(below * below), "agents: " + std::to_string((below + 1) * (below + 1))});
  }
  return std::make_shared<AgentAttentionImpl>(args.dim, options);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(AgentAttentionImpl::kKey)
                      .summary("agent attention: n agent tokens (pooled queries) aggregate from every key, then "
                               "broadcast to every query; linear in N, plus a DWConv of V")
                      .paper("Agent Attention: On the Integration of Softmax and Linear Attention (Han et al., 2023), "
                             "arXiv:2312.08874")
                      .equation("softmax(Q A^T / sqrt(d) + B2) softmax(A K^T / sqrt(d) + B1) V + DWConv(V), "
                                "A = AdaptiveAvgPool(Q) [n tokens]")
                      .schema(agent_attention_schema().schema())
                      .example("{heads: 2, agents: 4}"),
                  make_agent_attention);

}  // namespace
}  // namespace blocklab
