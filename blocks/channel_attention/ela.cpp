#include "blocks/channel_attention/ela.h"

#include "blocks/common/options.h"

namespace blocklab {

ElaImpl::ElaImpl(std::int64_t channels, const ElaOptions& o) {
  const auto groups = o.conv_groups() > 0 ? o.conv_groups() : channels;
  conv = register_module(
      "conv",
      torch::nn::Conv1d(
          torch::nn::Conv1dOptions(channels, channels, o.kernel()).padding(o.kernel() / 2).groups(groups).bias(false)));
  norm = register_module("norm", torch::nn::GroupNorm(o.norm_groups(), channels));
}

std::pair<torch::Tensor, torch::Tensor> ElaImpl::gates(const torch::Tensor& x) {
  const auto gate = [&](const torch::Tensor& strip) { return torch::sigmoid(norm->forward(conv->forward(strip))); };
  return {gate(x.mean(3)), gate(x.mean(2))};
}

torch::Tensor ElaImpl::forward(const torch::Tensor& x) {
  const auto [a_h, a_w] = gates(x);
  return x * a_h.unsqueeze(3) * a_w.unsqueeze(2);
}

namespace {

const OptionsSchema<ElaOptions>& ela_schema() {
  static const auto schema = [] {
    OptionsSchema<ElaOptions> s;
    BLOCKLAB_OPTION(s, kernel, "taps k of the 1-D convolution along H and W, odd (ELA-B: 7; default 7)").min = 1;
    BLOCKLAB_OPTION(s, conv_groups, "groups of the convolution (default 0: C, depth-wise; ELA-S/L: C / 8)").min = 0;
    BLOCKLAB_OPTION(s, norm_groups, "GroupNorm groups, dividing C (ELA-B: 16; default 16)").min = 1;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(channel_attention_registry(),
                  BLOCKLAB_ENTRY(ElaImpl::kKey)
                      .summary("efficient local attention: gates per channel along rows and along columns from a "
                               "shared 1-D conv + GroupNorm over the strip-pooled map (ELA-B by default)")
                      .paper("ELA: Efficient Local Attention for Deep Convolutional Neural Networks (Xu & Wan, "
                             "2024), arXiv:2403.01123")
                      .equation("out = x ⊙ sigmoid(GN(conv1d(mean_W x))) ⊙ sigmoid(GN(conv1d(mean_H x)))")
                      .schema(ela_schema().schema())
                      .example("{kernel: 3, norm_groups: 4}"),
                  [](const ConfigNode& params, const ChannelAttentionArgs& args) -> ChannelAttention {
                    const auto o = bind_options(ela_schema(), params);
                    const auto c = args.channels, groups = o.conv_groups() > 0 ? o.conv_groups() : c;
                    if (o.kernel() % 2 == 0)
                      config_fail(params, "kernel",
                                  "channel/ela: kernel must be odd, got " + std::to_string(o.kernel()));
                    if (c % groups != 0)
                      config_fail(params, "conv_groups",
                                  "channel/ela: conv_groups " + std::to_string(groups) + " must divide the " +
                                      std::to_string(c) + " channels");
                    if (c % o.norm_groups() != 0)
                      config_fail(params, "norm_groups",
                                  "channel/ela: norm_groups " + std::to_string(o.norm_groups()) + " must divide the " +
                                      std::to_string(c) + " channels");
                    return std::make_shared<ElaImpl>(c, o);
                  });

}  // namespace
}  // namespace blocklab
