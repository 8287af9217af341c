#include "blocks/mixers/cas_additive.h"

#include "blocks/common/grid_mixer.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

torch::nn::Conv2d cas_depthwise3x3(std::int64_t dim) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 3).padding(1).groups(dim));
}

torch::nn::Conv2d cas_pointwise(std::int64_t in, std::int64_t out, bool bias) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(bias));
}

}  // namespace

AdditiveGatesImpl::AdditiveGatesImpl(std::int64_t dim) {
  spatial_dw = register_module("spatial_dw", cas_depthwise3x3(dim));
  spatial_norm = register_module("spatial_norm", torch::nn::BatchNorm2d(dim));
  spatial_out = register_module("spatial_out", cas_pointwise(dim, 1, false));
  channel_fc = register_module("channel_fc", cas_pointwise(dim, dim, false));
}

torch::Tensor AdditiveGatesImpl::spatial_gate(const torch::Tensor& t) {
  return torch::sigmoid(spatial_out->forward(torch::relu(spatial_norm->forward(spatial_dw->forward(t)))));
}

torch::Tensor AdditiveGatesImpl::channel_gate(const torch::Tensor& s) {
  return torch::sigmoid(channel_fc->forward(s.mean({2, 3}, /*keepdim=*/true)));
}

torch::Tensor AdditiveGatesImpl::forward(const torch::Tensor& t) {
  const auto s = t * spatial_gate(t);
  return s * channel_gate(s);
}

CasAdditiveMixerImpl::CasAdditiveMixerImpl(std::int64_t dim, const CasAdditiveOptions& o) {
  qkv = register_module("qkv", cas_pointwise(dim, 3 * dim, o.qkv_bias()));
  query_gates = register_module("query_gates", AdditiveGates(dim));
  key_gates = register_module("key_gates", AdditiveGates(dim));
  mix = register_module("mix", cas_depthwise3x3(dim));
  proj = register_module("proj", cas_depthwise3x3(dim));
}

MixerCapabilities CasAdditiveMixerImpl::capabilities() const {
  MixerCapabilities c;
  c.needs_grid = true;
  return c;
}

torch::Tensor CasAdditiveMixerImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const auto qkv_maps = qkv->forward(grid_body_image(x, ctx, kKey)).chunk(3, 1);
  const auto added = query_gates->forward(qkv_maps[0]) + key_gates->forward(qkv_maps[1]);
  return grid_mixer_output(proj->forward(mix->forward(added) * qkv_maps[2]), ctx.prefix_tokens);
}

namespace {

const OptionsSchema<CasAdditiveOptions>& cas_additive_schema() {
  static const auto schema = [] {
    OptionsSchema<CasAdditiveOptions> s;
    BLOCKLAB_OPTION(s, qkv_bias, "bias of the q, k, v 1x1 convolution (CAS-ViT: false; default false)");
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(CasAdditiveMixerImpl::kKey)
                      .summary("CAS-ViT's convolutional additive token mixer: spatial and channel gates on q and on "
                               "k, added, a depth-wise conv, times v, a depth-wise projection; no q k^T")
                      .paper("CAS-ViT: Convolutional Additive Self-attention Vision Transformers for Efficient "
                             "Mobile Applications (Zhang et al., 2024), arXiv:2408.03703")
                      .equation("out = DW_proj(DW(Ch(S(q)) + Ch(S(k))) ⊙ v); S(t) = t ⊙ σ(W_s ReLU(BN(DW t))), "
                                "Ch(t) = t ⊙ σ(W_c GAP(t))")
                      .schema(cas_additive_schema().schema())
                      .example("{}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    return std::make_shared<CasAdditiveMixerImpl>(args.dim,
                                                                  bind_options(cas_additive_schema(), params));
                  });

}  // namespace
}  // namespace blocklab
