#include "blocks/local/axial.h"

#include "blocks/attention/parts/local_patterns.h"

namespace blocklab {

AxisAttentionImpl::AxisAttentionImpl(std::int64_t dim, const MultiHeadConfig& config, int axis)
    : LocalAttentionImpl(AxialAttentionImpl::kKey, dim, config), axis_(axis) {}

LocalPattern AxisAttentionImpl::body_pattern(std::int64_t height, std::int64_t width, bool) const {
  return axial_pattern(height, width, axis_);
}

AxialAttentionImpl::AxialAttentionImpl(std::int64_t dim, const AxialAttentionOptions& options,
                                       const MultiHeadConfig& config)
    : sum_(options.sum()) {
  rows = register_module("rows", AxisAttention(dim, config, 1));
  columns = register_module("columns", AxisAttention(dim, config, 0));
}

torch::Tensor AxialAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  return sum_ ? rows->forward(x, ctx) + columns->forward(x, ctx) : columns->forward(rows->forward(x, ctx), ctx);
}

const OptionsSchema<AxialAttentionOptions>& axial_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<AxialAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, sum, "sum the row and column attentions (default true); false: rows, then columns");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(AxialAttentionImpl::kKey)
                      .summary("axial attention: self-attention along the rows and along the columns of the grid, "
                               "each with its own weights, summed (or in sequence)")
                      .paper("Axial Attention in Multidimensional Transformers (Ho et al., 2019), arXiv:1912.12180")
                      .equation("Attn_rows(x) + Attn_columns(x), Attn_a = softmax(q k^T / sqrt(d)) v along axis a")
                      .schema(axial_attention_schema().schema())
                      .example("{heads: 2}"),
                  [](const ConfigNode& params, const MixerArgs& args) {
                    return make_local_attention<AxialAttentionImpl>(axial_attention_schema(), params, args);
                  });

}  // namespace
}  // namespace blocklab
