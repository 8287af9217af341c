#include "blocks/attention/single_head.h"

#include <cmath>

#include "blocks/common/options.h"
#include "blocks/probe.h"
#include "registry/config_error.h"

namespace blocklab {

SingleHeadAttentionImpl::SingleHeadAttentionImpl(std::int64_t dim, const SingleHeadOptions& options)
    : partial_(options.partial()), qk_dim_(options.qk_dim()) {
  pre_norm = register_module("pre_norm", torch::nn::GroupNorm(1, partial_));
  qkv = register_module("qkv", PointwiseConvBN(partial_, 2 * qk_dim_ + partial_));
  proj = register_module("proj", PointwiseConvBN(dim, dim, /*bn_weight=*/options.zero_init() ? 0.0 : 1.0));
}

MixerCapabilities SingleHeadAttentionImpl::capabilities() const {
  MixerCapabilities c;
  c.weights = MixerCapabilities::Weights::normalised;
  return c;
}

torch::Tensor SingleHeadAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, kKey, ": has no causal form; use it in a non-causal model");
  const auto x1 = x.narrow(2, 0, partial_), x2 = x.narrow(2, partial_, x.size(2) - partial_);
  const auto normed = pre_norm->forward(x1.transpose(1, 2)).transpose(1, 2);  // over C_p x N per sample
  const auto projected = qkv->forward(normed);
  const auto q = projected.narrow(2, 0, qk_dim_), k = projected.narrow(2, qk_dim_, qk_dim_);
  const auto v = projected.narrow(2, 2 * qk_dim_, partial_);
  const auto weights = torch::softmax(torch::matmul(q, k.transpose(1, 2)) / std::sqrt(double(qk_dim_)), -1);
  if (capturing(ctx.probe)) ctx.probe->record(ctx.layer, kKey, weights.unsqueeze(1));  // one head
  const auto mixed = torch::matmul(weights, v);
  return proj->forward(torch::relu(torch::cat({mixed, x2}, 2)));
}

const OptionsSchema<SingleHeadOptions>& single_head_schema() {
  static const auto schema = [] {
    OptionsSchema<SingleHeadOptions> s;
    BLOCKLAB_OPTION(s, partial,
                    "channels C_p mixed across tokens by the head (default 0: round(C / 4.67), SHViT's "
                    "ratio)")
        .min = 0;
    BLOCKLAB_OPTION(s, qk_dim, "query/key width d_qk of the single head (SHViT: 16)").min = 1;
    BLOCKLAB_OPTION(s, zero_init,
                    "the projection's BN scale starts at 0, so the mixer starts as zero (SHViT's "
                    "residual init; default true)");
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_single_head(const ConfigNode& params, const MixerArgs& args) {
  auto options = bind_options(single_head_schema(), params);
  if (options.partial() == 0) options.partial(std::max<std::int64_t>(1, std::llround(double(args.dim) / 4.67)));
  if (options.partial() > args.dim)
    config_fail(
        params, "partial",
        "partial must be at most the width " + std::to_string(args.dim) + ", got " + std::to_string(options.partial()));
  return std::make_shared<SingleHeadAttentionImpl>(args.dim, options);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(SingleHeadAttentionImpl::kKey)
                      .summary("SHViT's single-head attention: one narrow head over every token on a slice of "
                               "C_p channels, the rest passed through, then ReLU and a 1x1 ConvBN")
                      .paper("SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design (Yun & Ro, "
                             "2024), arXiv:2401.16456")
                      .equation("x1 = softmax(q k^T / sqrt(d_qk)) v, [q, k, v] = ConvBN(GN(x[:, :C_p])); out = "
                                "ConvBN(ReLU([x1, x[:, C_p:]]))")
                      .schema(single_head_schema().schema())
                      .example("{partial: 8, qk_dim: 8, zero_init: false}"),
                  make_single_head);

}  // namespace
}  // namespace blocklab
