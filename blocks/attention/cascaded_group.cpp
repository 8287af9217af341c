#include "blocks/attention/cascaded_group.h"

#include <algorithm>
#include <cmath>

#include "blocks/attention/parts/local_patterns.h"
#include "blocks/local/local_attention.h"
#include "blocks/probe.h"
#include "registry/config_error.h"

namespace blocklab {

CascadedGroupAttentionImpl::CascadedGroupAttentionImpl(std::int64_t dim, const CascadedGroupOptions& options)
    : options_(options), head_dim_(dim / options.heads()) {
  TORCH_CHECK(dim % options.heads() == 0, kKey, ": heads ", options.heads(), " must divide the width ", dim);
  const auto heads = options.heads(), key_dim = options.key_dim();
  qkvs = register_module("qkvs", torch::nn::ModuleList());
  dws = register_module("dws", torch::nn::ModuleList());
  for (std::int64_t j = 0; j < heads; ++j) {
    qkvs->push_back(PointwiseConvBN(head_dim_, 2 * key_dim + head_dim_));
    dws->push_back(DepthwiseConvBN(key_dim, options.kernel()));
  }
  proj = register_module("proj", PointwiseConvBN(dim, dim, /*bn_weight=*/options.zero_init() ? 0.0 : 1.0));
  attention_biases = register_parameter("attention_biases", torch::zeros({heads, options.window() * options.window()}));
}

MixerCapabilities CascadedGroupAttentionImpl::capabilities() const {
  MixerCapabilities c;
  c.weights = MixerCapabilities::Weights::normalised;
  c.needs_grid = true;
  return c;
}

torch::Tensor CascadedGroupAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const bool record = capturing(ctx.probe);
  std::vector<torch::Tensor> weights;
  MixerContext padded_ctx;
  const auto y = padded(x, ctx, [&](const torch::Tensor& grid, const MixerContext& grid_ctx) {
    padded_ctx = grid_ctx;
    return proj->forward(torch::relu(cascade(grid, grid_ctx, record ? &weights : nullptr)));
  });
  if (record) ctx.probe->record(ctx.layer, kKey, real_token_weights(weights, ctx, padded_ctx));
  return y;
}

torch::Tensor CascadedGroupAttentionImpl::head_outputs(const torch::Tensor& x, const MixerContext& ctx) {
  return padded(x, ctx, [this](const torch::Tensor& grid, const MixerContext& grid_ctx) {
    return cascade(grid, grid_ctx, nullptr);
  });
}

torch::Tensor CascadedGroupAttentionImpl::padded(
    const torch::Tensor& x, const MixerContext& ctx,
    const std::function<torch::Tensor(const torch::Tensor&, const MixerContext&)>& f) {
  TORCH_CHECK(!ctx.causal, kKey, ": has no causal form; use it in a non-causal model");
  TORCH_CHECK(ctx.has_grid(), kKey, ": needs a token grid (got ", x.size(1),
              " tokens without one): its depth-wise convolution and 2-D biases act on the patch grid; use it "
              "after a patch stem");
  TORCH_CHECK(ctx.prefix_tokens + ctx.grid_height * ctx.grid_width == x.size(1), kKey, ": the context gives ",
              ctx.prefix_tokens, " prefix tokens and a ", ctx.grid_height, "x", ctx.grid_width, " grid for ", x.size(1),
              " tokens");
  // LocalWindowAttention: a side above the window is padded to whole windows.
  const auto pad = [this](std::int64_t extent) {
    const auto side = std::min(options_.window(), extent);
    return (side - extent % side) % side;
  };
  return with_padded_grid(x, ctx, pad(ctx.grid_height), pad(ctx.grid_width), f);
}

const CascadedGroupAttentionImpl::Windows& CascadedGroupAttentionImpl::windows(const MixerContext& padded,
                                                                               const torch::Device& device) {
  const auto window = options_.window();
  Windows want;
  want.height = padded.grid_height, want.width = padded.grid_width, want.prefix = padded.prefix_tokens;
  want.window_h = std::min(window, want.height), want.window_w = std::min(window, want.width);
  want.device = device;
  if (cached_ && cached_->height == want.height && cached_->width == want.width && cached_->prefix == want.prefix &&
      cached_->device == device)
    return *cached_;
  want.body = window_pattern(want.height, want.width, want.window_h, want.window_w);
  want.full = with_prefix(want.body, want.prefix).to(device);
  // Offsets inside a window, the same in every window: (|dy|, |dx|) -> |dy| M + |dx| (eq. (1)'s B).
  const auto offsets = pair_offsets(want.body, want.body.parts.at(0))[0].abs();  // [M_h M_w, M_h M_w, 2]
  want.bias_index = (offsets.select(-1, 0) * window + offsets.select(-1, 1)).to(device);
  want.body = want.body.to(device);
  cached_ = std::move(want);
  return *cached_;
}

torch::Tensor CascadedGroupAttentionImpl::convolved_queries(std::int64_t head, const torch::Tensor& q,
                                                            const Windows& w) {
  const auto& part = w.body.parts.at(0);
  const auto batch = q.size(0), d = q.size(2);
  const auto images = q.narrow(1, w.prefix, w.height * w.width)
                          .index_select(1, part.query_index.flatten())
                          .reshape({batch * part.groups(), w.window_h, w.window_w, d})
                          .permute({0, 3, 1, 2});  // [B G, d_k, M_h, M_w]
  const auto convolved = dws[head]->as<DepthwiseConvBNImpl>()->forward(images).permute({0, 2, 3, 1});
  const auto grid = convolved.reshape({batch, -1, d}).index_select(1, w.body.query_inverse);
  return torch::cat({q.narrow(1, 0, w.prefix), grid}, 1);
}

torch::Tensor CascadedGroupAttentionImpl::cascade(const torch::Tensor& x, const MixerContext& padded,
                                                  std::vector<torch::Tensor>* weights) {
  const auto& w = windows(padded, x.device());
  const auto key_dim = options_.key_dim();
  const double scale = 1.0 / std::sqrt(double(key_dim));
  const auto splits = x.split(head_dim_, 2);
  std::vector<torch::Tensor> outputs;
  for (std::int64_t j = 0; j < options_.heads(); ++j) {
    const auto f = j == 0 ? splits[0] : splits[j] + outputs.back();  // eq. (2): the cascade
    const auto qkv = qkvs[j]->as<PointwiseConvBNImpl>()->forward(f);
    const auto q = convolved_queries(j, qkv.narrow(2, 0, key_dim), w);
    const auto k = qkv.narrow(2, key_dim, key_dim), v = qkv.narrow(2, 2 * key_dim, head_dim_);
    // LeViT's bias inside the window; the prefix keys (first in each window's keys) take none.
    const auto bias = attention_biases[j].index_select(0, w.bias_index.flatten()).view_as(w.bias_index);
    std::vector<torch::Tensor> maps;
    const auto out = local_attend(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), w.full,
                                  {torch::constant_pad_nd(bias, {w.prefix, 0}, 0.0)}, scale, weights ? &maps : nullptr);
    outputs.push_back(out.squeeze(1));
    if (weights) weights->push_back(local_weights_dense(maps, w.full));
  }
  return torch::cat(outputs, 2);
}

torch::Tensor CascadedGroupAttentionImpl::real_token_weights(const std::vector<torch::Tensor>& weights,
                                                             const MixerContext& ctx,
                                                             const MixerContext& padded) const {
  const auto maps = torch::cat(weights, 1);  // [B, h, N_padded, N_padded]
  const auto grid =
      torch::arange(ctx.grid_height).view({-1, 1}) * padded.grid_width + torch::arange(ctx.grid_width).view({1, -1});
  const auto real =
      torch::cat({torch::arange(ctx.prefix_tokens), grid.flatten() + ctx.prefix_tokens}).to(maps.device());
  return maps.index_select(2, real).index_select(3, real);
}

const OptionsSchema<CascadedGroupOptions>& cascaded_group_schema() {
  static const auto schema = [] {
    OptionsSchema<CascadedGroupOptions> s;
    BLOCKLAB_OPTION(s, heads, "heads h, each on C / h channels plus the previous head's output (default 4)").min = 1;
    BLOCKLAB_OPTION(s, key_dim, "query/key width d_k of each head (default 16)").min = 1;
    BLOCKLAB_OPTION(s, kernel, "side of the depth-wise ConvBN on each head's queries, odd (default 5)").min = 1;
    BLOCKLAB_OPTION(s, window, "window side M; a larger grid is zero-padded to whole windows (default 7)").min = 1;
    BLOCKLAB_OPTION(s, zero_init,
                    "the projection's BN scale starts at 0, so the mixer starts as zero (EfficientViT's "
                    "residual init; default true)");
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_cascaded_group(const ConfigNode& params, const MixerArgs& args) {
  const auto options = bind_options(cascaded_group_schema(), params);
  if (args.dim % options.heads() != 0)
    config_fail(params, "heads",
                "heads must divide the width " + std::to_string(args.dim) + ", got " + std::to_string(options.heads()));
  if (options.kernel() % 2 == 0)
    config_fail(
        params, "kernel",
        "kernel must be odd (its padding kernel / 2 keeps the window's size), got " + std::to_string(options.kernel()));
  return std::make_shared<CascadedGroupAttentionImpl>(args.dim, options);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(CascadedGroupAttentionImpl::kKey)
                      .summary("EfficientViT's cascaded group attention in M x M windows: head j attends over its "
                               "channel split plus head j-1's output, queries through a depth-wise ConvBN, "
                               "LeViT's offset biases; ReLU and a 1x1 ConvBN")
                      .paper("EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention (Liu "
                             "et al., 2023), arXiv:2305.07027")
                      .equation("f_j = x_j + out_{j-1}; [q, k, v] = ConvBN(f_j), q = ConvBN_DW(q); out_j = "
                                "softmax(q k^T / sqrt(d_k) + B_j) v per window; out = ConvBN(ReLU([out_1..out_h]))")
                      .schema(cascaded_group_schema().schema())
                      .example("{heads: 2, key_dim: 8, kernel: 3, window: 4, zero_init: false}"),
                  make_cascaded_group);

}  // namespace
}  // namespace blocklab
