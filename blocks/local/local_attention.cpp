#include "blocks/local/local_attention.h"

#include "blocks/probe.h"

namespace blocklab {

LocalAttentionImpl::LocalAttentionImpl(std::string key, std::int64_t dim, const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(std::move(key), dim, config), attn_drop_(config.attn_drop) {}

MixerCapabilities LocalAttentionImpl::core_capabilities() const {
  MixerCapabilities c;
  c.causal = supports_causal();
  c.weights = MixerCapabilities::Weights::normalised;
  c.needs_grid = !takes_sequences();
  return c;
}

MixerCapabilities LocalAttentionImpl::capabilities() const {
  MixerCapabilities c = MultiHeadAttentionImpl::capabilities();  // a grid for rotary 2d
  c.needs_grid = c.needs_grid || !takes_sequences();
  return c;
}

const LocalAttentionImpl::Layout& LocalAttentionImpl::layout(const MixerContext& ctx, std::int64_t tokens,
                                                             const torch::Device& device) {
  const bool grid = ctx.has_grid();
  TORCH_CHECK(grid || takes_sequences(), key(), ": needs a token grid (got ", tokens, " tokens without one)");
  TORCH_CHECK(!ctx.causal || supports_causal(), key(), ": has no causal form; use it in a non-causal model");
  Layout want;
  want.prefix = grid ? ctx.prefix_tokens : 0;
  want.height = grid ? ctx.grid_height : 1;
  want.width = grid ? ctx.grid_width : tokens;
  want.causal = ctx.causal;
  want.device = device;
  TORCH_CHECK(want.prefix + want.height * want.width == tokens, key(), ": the context gives ", want.prefix,
              " prefix tokens and a ", want.height, "x", want.width, " grid for ", tokens, " tokens");
  const auto same = [&](const Layout& c) {
    return c.height == want.height && c.width == want.width && c.prefix == want.prefix && c.causal == want.causal &&
           c.device == want.device;
  };
  if (!cached_ || !same(*cached_)) {
    const auto body = body_pattern(want.height, want.width, want.causal);
    want.full = with_prefix(body, want.prefix).to(device);
    want.body = body.to(device);
    cached_ = std::move(want);
  }
  return *cached_;
}

LocalPattern LocalAttentionImpl::pattern(const MixerContext& ctx, std::int64_t tokens) {
  return layout(ctx, tokens, torch::kCPU).full;
}

std::vector<torch::Tensor> LocalAttentionImpl::biases(const MixerContext& ctx, const torch::Tensor& q) {
  const auto tokens = q.size(2);
  const auto& c = layout(ctx, tokens, q.device());
  auto biases = body_biases(c.body, c.height, c.width, c.causal, q.narrow(2, c.prefix, tokens - c.prefix));
  if (c.prefix == 0 || biases.empty()) return biases;
  // The prefix keys come first in every group of the full pattern and take no bias; the prefix
  // queries' part (the last) has none.
  for (auto& b : biases)
    if (b.defined()) b = torch::constant_pad_nd(b, {c.prefix, 0}, 0.0);
  biases.resize(c.full.parts.size());
  return biases;
}

std::pair<torch::Tensor, torch::Tensor> LocalAttentionImpl::pattern_keys_values(const MixerContext& ctx,
                                                                                const torch::Tensor& q,
                                                                                const torch::Tensor& k,
                                                                                const torch::Tensor& v) {
  const auto tokens = q.size(2);
  const auto& c = layout(ctx, tokens, q.device());
  const auto grid = tokens - c.prefix;
  auto [keys, values] = body_keys_values(q.narrow(2, c.prefix, grid), k.narrow(2, c.prefix, grid),
                                         v.narrow(2, c.prefix, grid), c.height, c.width);
  if (c.prefix == 0) return {keys, values};
  return {torch::cat({k.narrow(2, 0, c.prefix), keys}, 2), torch::cat({v.narrow(2, 0, c.prefix), values}, 2)};
}

torch::Tensor LocalAttentionImpl::attend(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v,
                                         const MixerContext& ctx) {
  const auto [q, k] = queries_keys(q_in, k_in, ctx);
  const auto bias = biases(ctx, q);
  const auto& c = layout(ctx, q.size(2), q.device());
  const auto [keys, values] = pattern_keys_values(ctx, q, k, v);
  const bool record = capturing(ctx.probe);
  std::vector<torch::Tensor> weights;
  auto o = local_attend(q, keys, values, c.full, bias, scale(), record ? &weights : nullptr, attn_drop_, is_training());
  if (record)
    ctx.probe->record(ctx.layer, key(), token_weights(local_weights_dense(weights, c.full), c.full, c.prefix));
  return o;
}

torch::Tensor with_padded_grid(const torch::Tensor& x, const MixerContext& ctx, std::int64_t pad_h, std::int64_t pad_w,
                               const std::function<torch::Tensor(const torch::Tensor&, const MixerContext&)>& f) {
  if (pad_h == 0 && pad_w == 0) return f(x, ctx);
  const auto height = ctx.grid_height, width = ctx.grid_width, prefix = ctx.prefix_tokens;
  const auto grid = x.narrow(1, prefix, height * width).unflatten(1, {height, width});
  const auto padded = torch::constant_pad_nd(grid, {0, 0, 0, pad_w, 0, pad_h}, 0.0).flatten(1, 2);
  MixerContext padded_ctx = ctx;
  padded_ctx.grid_height = height + pad_h;
  padded_ctx.grid_width = width + pad_w;
  const auto y = f(torch::cat({x.narrow(1, 0, prefix), padded}, 1), padded_ctx);
  const auto body = y.narrow(1, prefix, (height + pad_h) * (width + pad_w))
                        .unflatten(1, {height + pad_h, width + pad_w})
                        .narrow(1, 0, height)
                        .narrow(2, 0, width)
                        .flatten(1, 2);
  return torch::cat({y.narrow(1, 0, prefix), body}, 1);
}

}  // namespace blocklab
