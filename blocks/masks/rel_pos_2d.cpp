#include "blocks/masks/rel_pos_2d.h"

#include <cmath>

#include "blocks/common/init.h"

namespace blocklab {

RelPos2dMaskImpl::RelPos2dMaskImpl(std::int64_t heads, std::int64_t table_height, std::int64_t table_width, bool one_d)
    : table_h_(table_height), table_w_(table_width), one_d_(one_d) {
  TORCH_CHECK(heads >= 1 && table_height >= 1 && table_width >= 1, kKey, ": heads and table sides must be >= 1");
  TORCH_CHECK(!one_d || table_height == 1, kKey, ": the 1-D table has height 1");
  table = register_parameter("table", torch::zeros({(2 * table_height - 1) * (2 * table_width - 1), heads}));
  trunc_normal_(table, 0.02);  // Swin: trunc_normal_(std=.02)
}

torch::Tensor RelPos2dMaskImpl::matrix(std::int64_t tokens, const MixerContext& ctx) {
  const auto device = table.device();
  const std::int64_t grid = tokens - ctx.prefix_tokens;
  TORCH_CHECK(grid >= 0, kKey, ": ", tokens, " tokens but ", ctx.prefix_tokens, " prefix tokens");
  torch::Tensor pos;  // [M, 2] (row, col)
  if (one_d_) {
    TORCH_CHECK(grid <= table_w_, kKey, ": the 1-D table covers sequences of up to ", table_w_, " tokens, got ", grid,
                " (+ ", ctx.prefix_tokens, " prefix); set `length: ", grid, "` or a larger max_tokens");
    const auto index = torch::arange(grid, torch::TensorOptions().dtype(torch::kFloat64).device(device));
    pos = torch::stack({torch::zeros_like(index), index}, 1);
  } else {
    pos = token_positions(tokens, ctx, device);
    TORCH_CHECK(pos.size(1) == 2, kKey, ": needs the tokens of an image grid (ctx grid ", ctx.grid_height, "x",
                ctx.grid_width, " + ", ctx.prefix_tokens, " prefix tokens, got ", tokens,
                " tokens); use space: 1d for sequences");
    TORCH_CHECK(ctx.grid_height <= table_h_ && ctx.grid_width <= table_w_, kKey, ": the ", ctx.grid_height, "x",
                ctx.grid_width, " grid is larger than the bias table, sized for grids up to ", table_h_, "x", table_w_,
                "; set `height: ", ctx.grid_height, ", width: ", ctx.grid_width, "`");
  }
  const auto rel = (pos.unsqueeze(1) - pos.unsqueeze(0)).to(torch::kLong);  // [M, M, 2]: p_i - p_j
  const auto index = (rel.select(-1, 0) + (table_h_ - 1)) * (2 * table_w_ - 1) + (rel.select(-1, 1) + (table_w_ - 1));
  const auto bias = table.index_select(0, index.flatten()).view({grid, grid, -1}).permute({2, 0, 1});  // [h, M, M]
  return with_prefix(bias, ctx.prefix_tokens, 0.0);
}

const OptionsSchema<RelPos2dMaskOptions>& rel_pos_2d_mask_schema() {
  static const auto schema = [] {
    using O = RelPos2dMaskOptions;
    OptionsSchema<O> s;
    s.choice(
        "space", {"2d", "1d"},
        "2d: Swin's table over grid offsets (default); 1d: a (2L-1) x heads table over i - j for sequences",
        [](O& o, const std::string& v) { o.space(v); }, [](const O& o) { return o.space(); });
    BLOCKLAB_OPTION(s, height, "2d: largest grid height the table covers (default 0: floor(sqrt(max_tokens)))").min = 0;
    BLOCKLAB_OPTION(s, width, "2d: largest grid width the table covers (default 0: floor(sqrt(max_tokens)))").min = 0;
    BLOCKLAB_OPTION(s, length, "1d: longest sequence the table covers (default 0: max_tokens)").min = 0;
    return s;
  }();
  return schema;
}

namespace {

AttentionMask make_rel_pos_2d(const ConfigNode& params, const MaskArgs& args) {
  const auto o = bind_options(rel_pos_2d_mask_schema(), params);
  if (o.space() == "1d") {
    const std::int64_t length = o.length() > 0 ? o.length() : args.max_tokens;
    if (length < 1)
      config_fail(params, "length",
                  "mask/rel-pos-2d (space 1d) needs the longest sequence: the attention was built "
                  "without max_tokens",
                  {"give it, e.g. {type: mask/rel-pos-2d, space: 1d, length: 128}"});
    return std::make_shared<RelPos2dMaskImpl>(args.heads, 1, length, true);
  }
  if ((o.height() > 0) != (o.width() > 0))
    config_fail(params, o.height() > 0 ? "width" : "height", "mask/rel-pos-2d: give both height and width, or neither",
                {"e.g. {type: mask/rel-pos-2d, height: 7, width: 7}"});
  std::int64_t h = o.height(), w = o.width();
  if (h == 0) {
    h = w = static_cast<std::int64_t>(std::floor(std::sqrt(static_cast<double>(args.max_tokens)) + 1e-9));
    if (h < 1)
      config_fail(params, "height", "mask/rel-pos-2d needs the grid size: the attention was built without max_tokens",
                  {"give it, e.g. {type: mask/rel-pos-2d, height: 7, width: 7}"});
  }
  return std::make_shared<RelPos2dMaskImpl>(args.heads, h, w, false);
}

BLOCKLAB_REGISTER(
    mask_registry(),
    BLOCKLAB_ENTRY(RelPos2dMaskImpl::kKey)
        .summary("learned relative position bias: a (2M-1)^2 x heads table indexed by grid offsets (Swin)")
        .paper("Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (Liu et al., 2021), "
               "arXiv:2103.14030")
        .equation("s' = q k^T / sqrt(d) + T[(dy + M_h - 1)(2 M_w - 1) + dx + M_w - 1, h], (dy, dx) = p_i - p_j")
        .schema(rel_pos_2d_mask_schema().schema())
        .example("{}"),
    make_rel_pos_2d);

}  // namespace
}  // namespace blocklab
