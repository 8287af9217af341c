#include "blocks/conv/lka.h"

#include "blocks/common/grid_mixer.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

torch::nn::Conv2d lka_depthwise(std::int64_t dim, std::int64_t kernel, std::int64_t dilation) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(dim, dim, kernel).padding(dilation * (kernel - 1) / 2).dilation(dilation).groups(dim));
}

torch::nn::Conv2d lka_pointwise(std::int64_t dim) { return torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 1)); }

}  // namespace

LargeKernelAttentionImpl::LargeKernelAttentionImpl(std::int64_t dim, const LargeKernelAttentionOptions& o) {
  const auto d = o.dilation();
  proj_in = register_module("proj_in", lka_pointwise(dim));
  local = register_module("local", lka_depthwise(dim, 2 * d - 1, 1));
  dilated = register_module("dilated", lka_depthwise(dim, (o.kernel() + d - 1) / d, d));
  channel = register_module("channel", lka_pointwise(dim));
  proj_out = register_module("proj_out", lka_pointwise(dim));
}

MixerCapabilities LargeKernelAttentionImpl::capabilities() const {
  MixerCapabilities c;
  c.needs_grid = true;
  return c;
}

torch::Tensor LargeKernelAttentionImpl::attention_map(const torch::Tensor& u) {
  return channel->forward(dilated->forward(local->forward(u)));
}

torch::Tensor LargeKernelAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const auto image = grid_body_image(x, ctx, kKey);
  const auto u = torch::gelu(proj_in->forward(image));
  return grid_mixer_output(proj_out->forward(u * attention_map(u)) + image, ctx.prefix_tokens);
}

namespace {

const OptionsSchema<LargeKernelAttentionOptions>& lka_schema() {
  static const auto schema = [] {
    OptionsSchema<LargeKernelAttentionOptions> s;
    BLOCKLAB_OPTION(s, kernel, "K, the large kernel the decomposition stands for (VAN: 21; default 21)").min = 1;
    BLOCKLAB_OPTION(s, dilation, "d: depth-wise (2d-1)^2, then ceil(K/d)^2 with dilation d (VAN: 3; default 3)").min =
        1;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(LargeKernelAttentionImpl::kKey)
                      .summary("VAN's large kernel attention: a decomposed 21x21 convolution (depth-wise 5x5, "
                               "depth-wise 7x7 dilated 3, 1x1) as a multiplicative map, inside 1x1 projections")
                      .paper("Visual Attention Network (Guo et al., 2023), arXiv:2202.09741")
                      .equation("u = GELU(x W_1); out = (u ⊙ Conv1x1(DW-D_7,3(DW_5(u)))) W_2 + x")
                      .schema(lka_schema().schema())
                      .example("{kernel: 9, dilation: 2}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto o = bind_options(lka_schema(), params);
                    if (((o.kernel() + o.dilation() - 1) / o.dilation()) % 2 == 0)
                      config_fail(params, "kernel",
                                  "conv/lka: the dilated convolution needs an odd size ceil(kernel / dilation), got " +
                                      std::to_string((o.kernel() + o.dilation() - 1) / o.dilation()),
                                  {"VAN uses kernel 21 with dilation 3 (7 x 7 dilated)"});
                    return std::make_shared<LargeKernelAttentionImpl>(args.dim, o);
                  });

}  // namespace
}  // namespace blocklab
