#include "blocks/local/neighborhood.h"

#include <algorithm>

#include "blocks/attention/parts/local_patterns.h"
#include "blocks/common/init.h"
#include "registry/config_error.h"

namespace blocklab {

NeighborhoodAttentionImpl::NeighborhoodAttentionImpl(std::int64_t dim, const NeighborhoodAttentionOptions& options,
                                                     const MultiHeadConfig& config)
    : LocalAttentionImpl(kKey, dim, config), options_(options) {
  if (options.rel_bias()) {
    const auto span = 2 * options.kernel() - 1;
    rpb = register_parameter("rpb", trunc_normal_(torch::empty({options.heads(), span, span}), 0.02));
  }
}

std::pair<std::int64_t, std::int64_t> NeighborhoodAttentionImpl::fitted(std::int64_t height, std::int64_t width,
                                                                        bool causal) const {
  const auto extent = height > 1 && width > 1 ? std::min(height, width) : std::max(height, width);
  auto kernel = std::min(options_.kernel(), extent);
  if (!causal && kernel % 2 == 0) --kernel;
  return {kernel, std::clamp<std::int64_t>(extent / kernel, 1, options_.dilation())};
}

LocalPattern NeighborhoodAttentionImpl::body_pattern(std::int64_t height, std::int64_t width, bool causal) const {
  const auto [kernel, dilation] = fitted(height, width, causal);
  return neighborhood_pattern(height, width, kernel, dilation, causal);
}

std::vector<torch::Tensor> NeighborhoodAttentionImpl::body_biases(const LocalPattern& body, std::int64_t height,
                                                                  std::int64_t width, bool causal,
                                                                  const torch::Tensor&) {
  if (!rpb.defined()) return {};
  // NAT's B(i, j): the table entry of the offset key - query in dilation steps, (dy, dx) at
  // (dy + k - 1, dx + k - 1) of the (2k - 1)^2 table (the centre of the table when the kernel
  // was fitted to a small grid).
  const auto dilation = fitted(height, width, causal).second;
  const auto& part = body.parts.at(0);
  const auto steps = pair_offsets(body, part).div(dilation, "floor");  // [N, 1, m, 2]
  const auto span = rpb.size(-1), centre = options_.kernel() - 1;
  const auto index = (steps.select(-1, 0) + centre) * span + steps.select(-1, 1) + centre;
  return {rpb.flatten(1)
              .index_select(1, index.flatten().to(rpb.device()))
              .view({rpb.size(0), part.groups(), 1, part.group_keys()})};
}

const OptionsSchema<NeighborhoodAttentionOptions>& neighborhood_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<NeighborhoodAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, kernel, "neighbourhood size per axis, odd (NAT: 7)").min = 1;
    BLOCKLAB_OPTION(s, dilation, "DiNAT's dilation: neighbours every dilation tokens (default 1: NAT)").min = 1;
    BLOCKLAB_OPTION(s, rel_bias, "NAT's relative position bias, (2 kernel - 1)^2 per head (default true)");
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_neighborhood(const ConfigNode& params, const MixerArgs& args) {
  return make_local_attention<NeighborhoodAttentionImpl>(
      neighborhood_attention_schema(), params, args, [&](const NeighborhoodAttentionOptions& options) {
        if (options.kernel() % 2 == 0)
          config_fail(
              params, "kernel",
              "kernel must be odd (NATTEN centres the window on the query), got " + std::to_string(options.kernel()));
      });
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(NeighborhoodAttentionImpl::kKey)
                      .summary("neighborhood attention (NAT/DiNAT, NATTEN): each token attends to its kernel^2 "
                               "nearest neighbours (dilated, causal), with a relative position bias")
                      .paper("Neighborhood Attention Transformer (Hassani et al., 2023), arXiv:2204.07143; Dilated "
                             "Neighborhood Attention Transformer (Hassani & Shi, 2022), arXiv:2209.15001")
                      .equation("softmax_j(q_i k_{rho_j(i)}^T / sqrt(d) + B(i, rho_j(i))) v_{rho_j(i)}, rho_j(i) the "
                                "k^2 neighbours of i, windows shifted inside the grid at the borders")
                      .schema(neighborhood_attention_schema().schema())
                      .example("{heads: 2, kernel: 3}"),
                  make_neighborhood);

}  // namespace
}  // namespace blocklab
