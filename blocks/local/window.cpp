#include "blocks/local/window.h"

#include <algorithm>

#include "blocks/attention/parts/local_patterns.h"
#include "blocks/common/init.h"
#include "registry/config_error.h"

namespace blocklab {

WindowAttentionImpl::WindowAttentionImpl(std::int64_t dim, const WindowAttentionOptions& options,
                                         const MultiHeadConfig& config, const std::string& key, Partition partition)
    : LocalAttentionImpl(key, dim, config),
      options_(options),
      partition_(partition),
      side_(partition == Partition::grid ? options.grid() : options.window()) {
  if (options.rel_bias()) {
    const auto span = 2 * side_ - 1;
    relative_position_bias_table = register_parameter(
        "relative_position_bias_table", trunc_normal_(torch::empty({span * span, options.heads()}), 0.02));
  }
}

torch::Tensor WindowAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(ctx.has_grid(), key(), ": needs a token grid");
  const auto height = ctx.grid_height, width = ctx.grid_width;
  const auto window_h = fitted(height), window_w = fitted(width);
  const auto pad_h = (window_h - height % window_h) % window_h, pad_w = (window_w - width % window_w) % window_w;
  // Swin v1: zeros at the bottom and right of the grid, before the projection (and the shift).
  return with_padded_grid(x, ctx, pad_h, pad_w, [this](const torch::Tensor& padded, const MixerContext& padded_ctx) {
    return LocalAttentionImpl::forward(padded, padded_ctx);
  });
}

LocalPattern WindowAttentionImpl::body_pattern(std::int64_t height, std::int64_t width, bool) const {
  const auto window_h = fitted(height), window_w = fitted(width);
  if (partition_ == Partition::grid) return grid_pattern(height, width, window_h, window_w);
  // A side not above the window is one window and is not shifted (Swin's rule).
  const auto shift_h = height > window_h ? options_.shift() : 0, shift_w = width > window_w ? options_.shift() : 0;
  return window_pattern(height, width, window_h, window_w, shift_h, shift_w);
}

std::vector<torch::Tensor> WindowAttentionImpl::body_biases(const LocalPattern& body, std::int64_t height,
                                                            std::int64_t width, bool, const torch::Tensor&) {
  if (!relative_position_bias_table.defined()) return {};
  // Offsets inside the group (the shifted window with a shift; the lattice of a grid group, in
  // lattice steps): member t sits at (t / side_w, t % side_w), the same in every group.
  const auto window_w = fitted(width);
  const auto members = body.parts.at(0).group_queries();
  const auto t = torch::arange(members, torch::kLong);
  const auto row = t.div(window_w, "floor"), col = t.remainder(window_w);
  const auto span = 2 * side_ - 1, centre = side_ - 1;
  const auto index =
      ((row.view({-1, 1}) - row.view({1, -1}) + centre) * span + col.view({-1, 1}) - col.view({1, -1}) + centre)
          .to(relative_position_bias_table.device());  // [b, b], query - key
  return {relative_position_bias_table.index_select(0, index.flatten()).t().view({-1, 1, members, members})};
}

namespace {

// The options of the four keys: the shared ones, then each key's own.
OptionsSchema<WindowAttentionOptions> group_schema(Partition partition, bool shift, bool rel_bias = true) {
  OptionsSchema<WindowAttentionOptions> s;
  declare_multi_head_options(s);
  if (partition == Partition::windows)
    BLOCKLAB_OPTION(s, window, "window side M: attention inside M x M windows (default 7)").min = 1;
  else
    BLOCKLAB_OPTION(s, grid, "grid side G: groups of G x G tokens spaced (H / G, W / G) apart (default 7)").min = 1;
  if (shift)
    BLOCKLAB_OPTION(s, shift, "cyclic shift of the windows, < window (Swin's odd blocks: window / 2; default 0)").min =
        0;
  if (rel_bias)
    BLOCKLAB_OPTION(s, rel_bias,
                    "relative position bias over the offsets in a group, (2 M - 1)^2 per head (default true)");
  return s;
}

}  // namespace

const OptionsSchema<WindowAttentionOptions>& window_attention_schema() {
  static const auto schema = group_schema(Partition::windows, true);
  return schema;
}
const OptionsSchema<WindowAttentionOptions>& maxvit_block_schema() {
  static const auto schema = group_schema(Partition::windows, false);
  return schema;
}
const OptionsSchema<WindowAttentionOptions>& maxvit_grid_schema() {
  static const auto schema = group_schema(Partition::grid, false);
  return schema;
}
const OptionsSchema<WindowAttentionOptions>& davit_window_schema() {
  static const auto schema = group_schema(Partition::windows, false, false);
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

// MaxViT's two attentions (Tu et al. 2022, §3.1) and DaViT's (Ding et al. 2022, §3.2: windows,
// no relative bias): the same module over another partition.
TokenMixer make_group(const OptionsSchema<WindowAttentionOptions>& schema, const char* key, Partition partition,
                      const ConfigNode& params, const MixerArgs& args, bool rel_bias = true) {
  return make_local_attention<WindowAttentionImpl>(
      key, schema, params, args,
      [&](WindowAttentionOptions& options) {
        if (!rel_bias) options.rel_bias(false);
      },
      std::string(key), partition);
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

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY("local/maxvit-block")
                      .summary("MaxViT block attention: softmax inside P x P windows, with a 2-D relative bias")
                      .paper("MaxViT: Multi-Axis Vision Transformer (Tu et al., 2022), arXiv:2204.01697")
                      .equation("per P x P window: softmax(Q K^T / sqrt(d) + B) V, B[i, j] = table[pos_i - pos_j]")
                      .schema(maxvit_block_schema().schema())
                      .example("{heads: 2, window: 4}"),
                  [](const ConfigNode& params, const MixerArgs& args) {
                    return make_group(maxvit_block_schema(), "local/maxvit-block", Partition::windows, params, args);
                  });

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY("local/maxvit-grid")
                      .summary("MaxViT grid attention: softmax inside groups of G x G tokens spaced (H/G, W/G) "
                               "apart (sparse global mixing), with a 2-D relative bias")
                      .paper("MaxViT: Multi-Axis Vision Transformer (Tu et al., 2022), arXiv:2204.01697")
                      .equation("per group {(a H/G + p, c W/G + q)}_{a,c < G}: softmax(Q K^T / sqrt(d) + B) V, B by "
                                "the lattice offset")
                      .schema(maxvit_grid_schema().schema())
                      .example("{heads: 2, grid: 4}"),
                  [](const ConfigNode& params, const MixerArgs& args) {
                    return make_group(maxvit_grid_schema(), "local/maxvit-grid", Partition::grid, params, args);
                  });

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY("local/davit-window")
                      .summary("DaViT spatial window attention: softmax inside M x M windows, no relative bias, "
                               "zero padding to whole windows")
                      .paper("DaViT: Dual Attention Vision Transformers (Ding et al., 2022), arXiv:2204.03645")
                      .equation("per M x M window: softmax(Q K^T / sqrt(d)) V")
                      .schema(davit_window_schema().schema())
                      .example("{heads: 2, window: 4}"),
                  [](const ConfigNode& params, const MixerArgs& args) {
                    return make_group(davit_window_schema(), "local/davit-window", Partition::windows, params, args,
                                      false);
                  });

}  // namespace
}  // namespace blocklab
