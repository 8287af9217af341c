#include "blocks/local/window.h"

#include <algorithm>

#include "blocks/attention/parts/local_patterns.h"
#include "blocks/common/init.h"
#include "registry/config_error.h"

namespace blocklab {

WindowAttentionImpl::WindowAttentionImpl(std::int64_t dim, const WindowAttentionOptions& options,
                                         const MultiHeadConfig& config)
    : LocalAttentionImpl(kKey, dim, config), options_(options) {
  if (options.rel_bias()) {
    const auto span = 2 * options.window() - 1;
    relative_position_bias_table = register_parameter(
        "relative_position_bias_table", trunc_normal_(torch::empty({span * span, options.heads()}), 0.02));
  }
}

torch::Tensor WindowAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(ctx.has_grid(), kKey, ": needs a token grid");
  const auto height = ctx.grid_height, width = ctx.grid_width, prefix = ctx.prefix_tokens;
  const auto window_h = std::min(options_.window(), height), window_w = std::min(options_.window(), width);
  const auto pad_h = (window_h - height % window_h) % window_h, pad_w = (window_w - width % window_w) % window_w;
  if (pad_h == 0 && pad_w == 0) return LocalAttentionImpl::forward(x, ctx);
  // Swin v1: zeros at the bottom and right of the grid, before the projection.
  const auto grid = x.narrow(1, prefix, height * width).unflatten(1, {height, width});
  const auto padded = torch::constant_pad_nd(grid, {0, 0, 0, pad_w, 0, pad_h}, 0.0).flatten(1, 2);
  MixerContext padded_ctx = ctx;
  padded_ctx.grid_height = height + pad_h;
  padded_ctx.grid_width = width + pad_w;
  const auto y = LocalAttentionImpl::forward(torch::cat({x.narrow(1, 0, prefix), padded}, 1), padded_ctx);
  const auto body = y.narrow(1, prefix, (height + pad_h) * (width + pad_w))
                        .unflatten(1, {height + pad_h, width + pad_w})
                        .narrow(1, 0, height)
                        .narrow(2, 0, width)
                        .flatten(1, 2);
  return torch::cat({y.narrow(1, 0, prefix), body}, 1);
}

LocalPattern WindowAttentionImpl::body_pattern(std::int64_t height, std::int64_t width, bool) const {
  // A side not above the window is one window and is not shifted (Swin's rule).
  const auto window_h = std::min(options_.window(), height), window_w = std::min(options_.window(), width);
  const auto shift_h = height > window_h ? options_.shift() : 0, shift_w = width > window_w ? options_.shift() : 0;
  return window_pattern(height, width, window_h, window_w, shift_h, shift_w);
}

std::vector<torch::Tensor> WindowAttentionImpl::body_biases(const LocalPattern& body, std::int64_t height,
                                                            std::int64_t width, bool) {
  if (!relative_position_bias_table.defined()) return {};
  // Offsets inside the window (the shifted one with a shift): member t of a window sits at
  // (t / window_w, t % window_w); the same for every window.
  const auto window_w = std::min(options_.window(), width);
  const auto members = body.parts.at(0).group_queries();
  const auto t = torch::arange(members, torch::kLong);
  const auto row = t.div(window_w, "floor"), col = t.remainder(window_w);
  const auto span = 2 * options_.window() - 1, centre = options_.window() - 1;
  const auto index =
      ((row.view({-1, 1}) - row.view({1, -1}) + centre) * span + col.view({-1, 1}) - col.view({1, -1}) + centre)
          .to(relative_position_bias_table.device());  // [b, b], query - key
  return {relative_position_bias_table.index_select(0, index.flatten()).t().view({-1, 1, members, members})};
}

const OptionsSchema<WindowAttentionOptions>& window_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<WindowAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, window, "window side M: attention inside M x M windows (Swin: 7)").min = 1;
    BLOCKLAB_OPTION(s, shift, "cyclic shift of the windows, < window (Swin's odd blocks: window / 2; default 0)").min =
        0;
    BLOCKLAB_OPTION(s, rel_bias, "Swin's relative position bias, (2 window - 1)^2 per head (default true)");
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_window(const ConfigNode& params, const MixerArgs& args) {
  return make_local_attention<WindowAttentionImpl>(
      window_attention_schema(), params, args, [&](const WindowAttentionOptions& options) {
        if (options.shift() >= options.window())
          config_fail(params, "shift",
                      "shift must be below the window (" + std::to_string(options.window()) + "), got " +
                          std::to_string(options.shift()),
                      {"Swin shifts by window / 2"});
      });
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(WindowAttentionImpl::kKey)
                      .summary("Swin window attention: softmax inside M x M windows (optionally shifted, with the "
                               "region mask), with a relative position bias")
                      .paper("Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (Liu et al., "
                             "2021), arXiv:2103.14030")
                      .equation("per window: softmax(Q K^T / sqrt(d) + B) V, B[i, j] = table[pos_i - pos_j]; shifted "
                                "windows: the grid rolled by -shift, pairs of different regions masked")
                      .schema(window_attention_schema().schema())
                      .example("{heads: 2, window: 4, shift: 2}"),
                  make_window);

}  // namespace
}  // namespace blocklab
