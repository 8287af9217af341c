#include "blocks/local/halo.h"

#include <algorithm>
#include <cmath>

#include "blocks/attention/parts/local_patterns.h"
#include "blocks/common/init.h"

namespace blocklab {

HaloAttentionImpl::HaloAttentionImpl(std::int64_t dim, const HaloAttentionOptions& options,
                                     const MultiHeadConfig& config)
    : LocalAttentionImpl(kKey, dim, config), options_(options) {
  if (options.rel_pos()) {
    const auto window = options.block() + 2 * options.halo(), d = head_dim();
    const auto std = 1.0 / std::sqrt(static_cast<double>(d));
    height_rel = register_parameter("height_rel", trunc_normal_(torch::empty({2 * window - 1, d}), std));
    width_rel = register_parameter("width_rel", trunc_normal_(torch::empty({2 * window - 1, d}), std));
  }
}

MixerCapabilities HaloAttentionImpl::core_capabilities() const {
  auto c = LocalAttentionImpl::core_capabilities();
  if (options_.halo() > 0) c.weights = MixerCapabilities::Weights::unnormalised;
  return c;
}

std::int64_t HaloAttentionImpl::fitted_block(std::int64_t height, std::int64_t width) const {
  const auto block = std::min({options_.block(), height, width});
  TORCH_CHECK(height % block == 0 && width % block == 0, kKey, ": the grid ", height, "x", width,
              " is not a multiple of the block ", block, "; choose a block that divides the grid");
  return block;
}

LocalPattern HaloAttentionImpl::body_pattern(std::int64_t height, std::int64_t width, bool) const {
  return halo_pattern(height, width, fitted_block(height, width), options_.halo());
}

torch::Tensor HaloAttentionImpl::body_keys(const torch::Tensor& body, std::int64_t height, std::int64_t width) const {
  return pad_grid_tokens(body, height, width, options_.halo());  // timm: zeros around the projected keys
}

std::vector<torch::Tensor> HaloAttentionImpl::body_biases(const LocalPattern& body, std::int64_t, std::int64_t, bool,
                                                          const torch::Tensor& q_body) {
  if (!height_rel.defined()) return {};
  // The window position of key j minus the block position of query i, per axis, is the grid
  // offset plus the halo; row (that + W - 1) of r^h / r^w (W of the configured block).
  const auto& part = body.parts.at(0);
  const auto window = options_.block() + 2 * options_.halo();
  const auto rows = (pair_offsets(body, part) + options_.halo() + window - 1).to(q_body.device());  // [G, b, m, 2]
  const auto queries = q_body.index_select(2, part.query_index.flatten().to(q_body.device()))
                           .unflatten(2, {part.groups(), part.group_queries()});  // [B, h, G, b, d]
  const auto logits = [&](const torch::Tensor& table, int axis) {
    const auto per_row = torch::matmul(queries, table.to(queries.dtype()).t());  // [B, h, G, b, 2W - 1]
    const auto index = rows.select(-1, axis).expand({queries.size(0), queries.size(1), -1, -1, -1});
    return per_row.gather(-1, index);  // [B, h, G, b, m]
  };
  return {logits(height_rel, 0) + logits(width_rel, 1)};
}

const OptionsSchema<HaloAttentionOptions>& halo_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<HaloAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, block, "query block side b; the grid must be a multiple of it (HaloNet: 8)").min = 1;
    BLOCKLAB_OPTION(s, halo, "halo h: each block sees its (b + 2h)^2 window on the zero-padded grid (HaloNet: 3)").min =
        0;
    BLOCKLAB_OPTION(s, rel_pos, "HaloNet's factorised relative logits q . r^h + q . r^w (default true)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(HaloAttentionImpl::kKey)
                      .summary("HaloNet blocked local attention: block x block queries attend to the block with a "
                               "halo on the zero-padded grid, with factorised relative logits")
                      .paper("Scaling Local Self-Attention for Parameter Efficient Visual Backbones (Vaswani et al., "
                             "2021), arXiv:2103.12731")
                      .equation("softmax_j(q_i k_j^T / sqrt(d) + q_i r^h_{dy} + q_i r^w_{dx}) v_j over the (b + 2h)^2 "
                                "window of i's block; padding keys are zeros")
                      .schema(halo_attention_schema().schema())
                      .example("{heads: 2, block: 4, halo: 1}"),
                  [](const ConfigNode& params, const MixerArgs& args) {
                    return make_local_attention<HaloAttentionImpl>(halo_attention_schema(), params, args);
                  });

}  // namespace
}  // namespace blocklab
