#include "blocks/sparse/biformer.h"

#include <cmath>

#include "blocks/attention/parts/local_patterns.h"
#include "blocks/local/local_attention.h"
#include "blocks/probe.h"
#include "registry/config_error.h"

namespace blocklab {

BiLevelRoutingAttentionImpl::BiLevelRoutingAttentionImpl(std::int64_t dim, const BiLevelRoutingOptions& options,
                                                         const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options), attn_drop_(config.attn_drop) {
  const auto width = heads() * head_dim();  // qk_dim of the code: every head together
  routing_scale_ = options.qk_scale() == "head" ? 1.0 / std::sqrt(double(head_dim())) : 1.0 / std::sqrt(double(width));
  if (options.lepe_kernel() > 0)
    lepe = register_module("lepe", torch::nn::Conv2d(torch::nn::Conv2dOptions(width, width, options.lepe_kernel())
                                                         .padding(options.lepe_kernel() / 2)
                                                         .groups(width)));
}

MixerCapabilities BiLevelRoutingAttentionImpl::core_capabilities() const {
  MixerCapabilities c;
  c.weights = MixerCapabilities::Weights::normalised;
  c.needs_grid = true;
  return c;
}

MixerCapabilities BiLevelRoutingAttentionImpl::capabilities() const { return core_capabilities(); }

torch::Tensor BiLevelRoutingAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(ctx.has_grid(), key(), ": needs a token grid");
  TORCH_CHECK(!ctx.causal, key(), ": has no causal form; use it in a non-causal model");
  const auto pad = [&](std::int64_t extent) {
    const auto side = regions_per_side(extent);
    return (side - extent % side) % side;
  };
  return with_padded_grid(x, ctx, pad(ctx.grid_height), pad(ctx.grid_width),
                          [this](const torch::Tensor& padded, const MixerContext& padded_ctx) {
                            return MultiHeadAttentionImpl::forward(padded, padded_ctx);
                          });
}

std::vector<RoutedGroups> BiLevelRoutingAttentionImpl::groups(const torch::Tensor& q, const torch::Tensor& k,
                                                              const MixerContext& ctx) const {
  const auto height = ctx.grid_height, width = ctx.grid_width, prefix = ctx.prefix_tokens;
  const auto batch = q.size(0), tokens = q.size(2);
  const auto side_h = regions_per_side(height), side_w = regions_per_side(width);
  // The regions: windows of (H / S) x (W / S) tokens, row-major, as BiFormer's "(j h) (i w)".
  const auto region_tokens =
      window_pattern(height, width, height / side_h, width / side_w).parts.at(0).query_index.to(q.device()) +
      prefix;  // [S^2, w^2]
  const auto regions = region_tokens.size(0), members = region_tokens.size(1);
  // Region descriptors over every head's channels and the routing (eq. (2)-(3)): no gradient.
  const auto describe = [&](const torch::Tensor& t) {  // [B, h, N, d] -> [B, S^2, h d]
    return t.detach()
        .index_select(2, region_tokens.flatten())
        .unflatten(2, {regions, members})
        .mean(3)
        .transpose(1, 2)
        .flatten(2);
  };
  const auto affinity = torch::matmul(describe(q) * routing_scale_, describe(k).transpose(1, 2));  // [B, S^2, S^2]
  const auto routed = std::get<1>(affinity.topk(std::min(options_.topk(), regions), -1));          // [B, S^2, k]
  auto key_index = region_tokens.index_select(0, routed.flatten()).view({batch, regions, -1});     // [B, S^2, k w^2]
  if (prefix > 0)
    key_index = torch::cat({torch::arange(prefix, key_index.options()).expand({batch, regions, prefix}), key_index}, 2);
  std::vector<RoutedGroups> out{{region_tokens.view({1, 1, regions, members}), key_index.unsqueeze(1), {}, {}}};
  if (prefix > 0)  // the prefix tokens attend to every token
    out.push_back({torch::arange(prefix, key_index.options()).view({1, 1, 1, prefix}),
                   torch::arange(tokens, key_index.options()).view({1, 1, 1, tokens}),
                   {},
                   {}});
  return out;
}

torch::Tensor BiLevelRoutingAttentionImpl::attend(const torch::Tensor& q_in, const torch::Tensor& k_in,
                                                  const torch::Tensor& v, const MixerContext& ctx) {
  const auto [q, k] = queries_keys(q_in, k_in, ctx);
  const bool record = capturing(ctx.probe);
  torch::Tensor o, probe_map;
  for (const auto& g : groups(q, k, ctx)) {  // each query sits in exactly one group: the sum is the scatter
    torch::Tensor w, lse;
    const auto part = routed_attend(q, k, v, g, routing_scale_, RoutedMerge::union_softmax, record ? &w : nullptr,
                                    record ? &lse : nullptr, attn_drop_, is_training());
    o = o.defined() ? o + part : part;
    if (record) {
      const auto dense = routed_weights_dense(w, lse, g, q.size(2), k.size(2), RoutedMerge::union_softmax);
      probe_map = probe_map.defined() ? probe_map + dense : dense;
    }
  }
  if (record) ctx.probe->record(ctx.layer, key(), probe_map);
  if (!lepe) return o;
  // LePE: the depth-wise conv on the values laid out as the image, added to the grid tokens.
  const auto prefix = ctx.prefix_tokens, grid = ctx.grid_height * ctx.grid_width;
  const auto image = v.narrow(2, prefix, grid)
                         .permute({0, 1, 3, 2})
                         .flatten(1, 2)
                         .unflatten(2, {ctx.grid_height, ctx.grid_width});  // [B, h d, H, W]
  const auto local = lepe->forward(image).flatten(2).unflatten(1, {v.size(1), v.size(3)}).permute({0, 1, 3, 2});
  return torch::cat({o.narrow(2, 0, prefix), o.narrow(2, prefix, grid) + local}, 2);
}

const OptionsSchema<BiLevelRoutingOptions>& bi_level_routing_schema() {
  static const auto schema = [] {
    OptionsSchema<BiLevelRoutingOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, regions, "regions per side S: the grid is cut into S x S regions (BiFormer: 7)").min = 1;
    BLOCKLAB_OPTION(s, topk, "regions each region routes to (BiFormer-T: 1, 4, 16 by stage; default 4)").min = 1;
    BLOCKLAB_OPTION(s, lepe_kernel, "kernel of the LePE depth-wise conv on the values, odd (0: none; default 5)").min =
        0;
    s.choice(
        "qk_scale", {"dim", "head"},
        "logit scale: dim = C^-1/2 over every head's width, as BiFormer's code; head = d^-1/2 (default dim)",
        [](BiLevelRoutingOptions& o, const std::string& v) { o.qk_scale(v); },
        [](const BiLevelRoutingOptions& o) { return o.qk_scale(); });
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_biformer(const ConfigNode& params, const MixerArgs& args) {
  return make_local_attention<BiLevelRoutingAttentionImpl>(
      bi_level_routing_schema(), params, args, [&](const BiLevelRoutingOptions& options) {
        if (options.lepe_kernel() > 0 && options.lepe_kernel() % 2 == 0)
          config_fail(
              params, "lepe_kernel",
              "lepe_kernel must be odd (the conv keeps the grid), got " + std::to_string(options.lepe_kernel()));
      });
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(BiLevelRoutingAttentionImpl::kKey)
                      .summary("bi-level routing attention (BiFormer): regions route to their top-k regions by a "
                               "region-level affinity; tokens attend to the routed regions' tokens; plus LePE")
                      .paper("BiFormer: Vision Transformer with Bi-Level Routing Attention (Zhu et al., 2023), "
                             "arXiv:2303.08810")
                      .equation("I^r = topk(mean_r(Q) mean_r(K)^T); O_i = softmax(q_i K_g^T / sqrt(C)) V_g + "
                                "LePE(V)_i, K_g, V_g the tokens of the regions I^r(region(i))")
                      .schema(bi_level_routing_schema().schema())
                      .example("{heads: 2, regions: 2, topk: 2}"),
                  make_biformer);

}  // namespace
}  // namespace blocklab
