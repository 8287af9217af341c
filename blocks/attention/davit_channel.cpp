#include "blocks/attention/davit_channel.h"

#include <cmath>

#include "blocks/common/init.h"
#include "registry/config_error.h"

namespace blocklab {

DavitChannelAttentionImpl::DavitChannelAttentionImpl(std::int64_t dim, const DavitChannelOptions& options)
    : options_(options), dim_(dim) {
  qkv = register_module("qkv", make_linear(dim, 3 * dim, options.qkv_bias()));
  proj = register_module("proj", make_linear(dim, dim, /*bias=*/true));
}

std::vector<torch::Tensor> DavitChannelAttentionImpl::project(const torch::Tensor& x) {
  const auto b = x.size(0), n = x.size(1), h = options_.heads();
  // [B, N, 3C] -> [3, B, h, N, d] (rows q | k | v, groups contiguous in each: the official layout).
  return qkv->forward(x).view({b, n, 3, h, dim_ / h}).permute({2, 0, 3, 1, 4}).unbind(0);
}

std::pair<torch::Tensor, torch::Tensor> DavitChannelAttentionImpl::maps_and_values(
    const std::vector<torch::Tensor>& qkv_heads) {
  const auto& q = qkv_heads[0];
  const auto& k = qkv_heads[1];
  const auto& v = qkv_heads[2];
  const double s =
      options_.scale() == "tokens" ? 1.0 / std::sqrt(double(q.size(2))) : 1.0 / std::sqrt(double(q.size(3)));
  const bool official = options_.roles() == "official";
  const auto& left = official ? k : q;
  const auto& right = official ? v : k;
  // A_i = softmax over the columns of s left_i^T right_i: [B, h, d, d], a sum over the N tokens.
  const auto maps = torch::softmax(torch::matmul(left.transpose(-2, -1) * s, right), -1);
  return {maps, official ? q : v};
}

torch::Tensor DavitChannelAttentionImpl::channel_maps(const torch::Tensor& x) {
  return maps_and_values(project(x)).first;
}

torch::Tensor DavitChannelAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, kKey, ": has no causal form (its map sums over every token); use it in a non-causal model");
  const auto [maps, values] = maps_and_values(project(x));
  const auto mixed = torch::matmul(values, maps.transpose(-2, -1));  // o_i = values_i A_i^T  [B, h, N, d]
  return proj->forward(mixed.transpose(1, 2).reshape({x.size(0), x.size(1), dim_}));
}

const OptionsSchema<DavitChannelOptions>& davit_channel_schema() {
  static const auto schema = [] {
    OptionsSchema<DavitChannelOptions> s;
    BLOCKLAB_OPTION(s, heads, "channel groups h, each a d x d attention over its d = C / h channels (default 8)").min =
        1;
    BLOCKLAB_OPTION(s, qkv_bias, "bias of the qkv Linear (default true, as DaViT's models)");
    s.choice(
        "roles", {"official", "paper"},
        "official: A = softmax(k^T v s) applied to q (dingmyu/davit, timm ChannelAttention; default); paper: "
        "A = softmax(q^T k s) applied to v (§3.2, timm ChannelAttentionV2)",
        [](DavitChannelOptions& o, const std::string& v) { o.roles(v); },
        [](const DavitChannelOptions& o) { return o.roles(); });
    s.choice(
        "scale", {"head", "tokens"},
        "the logit scale s: head d^-1/2 (the paper and official code; default) or tokens N^-1/2 (timm "
        "ChannelAttentionV2's dynamic_scale)",
        [](DavitChannelOptions& o, const std::string& v) { o.scale(v); },
        [](const DavitChannelOptions& o) { return o.scale(); });
    return s;
  }();
  return schema;
}

DavitChannelAttention make_davit_channel_attention(const ConfigNode& params, std::int64_t dim) {
  const auto options = bind_options(davit_channel_schema(), params);
  if (dim % options.heads() != 0)
    config_fail(params, "heads",
                "heads must divide the width " + std::to_string(dim) + ", got " + std::to_string(options.heads()));
  return DavitChannelAttention(dim, options);
}

namespace {

TokenMixer make_davit_channel(const ConfigNode& params, const MixerArgs& args) {
  return make_davit_channel_attention(params, args.dim).ptr();
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(DavitChannelAttentionImpl::kKey)
                      .summary("DaViT channel group attention: per group of d channels a d x d softmax attention "
                               "over channels from sums over all tokens (global, linear in N)")
                      .paper("DaViT: Dual Attention Vision Transformers (Ding et al., 2022), arXiv:2204.03645")
                      .equation("per group i: A_i = softmax(k_i^T v_i / sqrt(d)) [d x d], o_i = q_i A_i^T (official "
                                "code; the paper: softmax(q_i^T k_i / sqrt(d)) applied to v_i); out = [o_i] W_proj")
                      .schema(davit_channel_schema().schema())
                      .example("{heads: 4}"),
                  make_davit_channel);

}  // namespace
}  // namespace blocklab
