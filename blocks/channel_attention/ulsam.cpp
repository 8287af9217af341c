#include "blocks/channel_attention/ulsam.h"

#include "blocks/common/options.h"

namespace blocklab {

UlsamImpl::UlsamImpl(std::int64_t channels, const UlsamOptions& o) : groups_(o.groups()) {
  depthwise =
      register_module("depthwise", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 1).groups(channels)));
  depthwise_norm =
      register_module("depthwise_norm", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).momentum(0.9)));
  pointwise =
      register_module("pointwise", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, groups_, 1).groups(groups_)));
  pointwise_norm =
      register_module("pointwise_norm", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(groups_).momentum(0.9)));
}

torch::Tensor UlsamImpl::maps(const torch::Tensor& x) {
  auto a = torch::relu(depthwise_norm->forward(depthwise->forward(x)));
  a = torch::max_pool2d(a, 3, 1, 1);
  a = torch::relu(pointwise_norm->forward(pointwise->forward(a)));  // [B, g, H, W]
  return torch::softmax(a.flatten(2), -1).view_as(a);
}

torch::Tensor UlsamImpl::forward(const torch::Tensor& x) {
  const auto per_channel = maps(x).repeat_interleave(x.size(1) / groups_, 1);  // subspace i's map on its channels
  return x * per_channel + x;
}

namespace {

const OptionsSchema<UlsamOptions>& ulsam_schema() {
  static const auto schema = [] {
    OptionsSchema<UlsamOptions> s;
    BLOCKLAB_OPTION(s, groups, "subspaces g, dividing C, one spatial map each (paper: 1 to 16; default 4)").min = 1;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(channel_attention_registry(),
                  BLOCKLAB_ENTRY(UlsamImpl::kKey)
                      .summary("ultra-lightweight subspace attention: one softmax spatial map per channel group "
                               "from a depth-wise 1x1 conv, max pooling and a 1x1 projection; 5C + 3g weights")
                      .paper("ULSAM: Ultra-Lightweight Subspace Attention Module for Compact Convolutional Neural "
                             "Networks (Saini et al., 2020), arXiv:2006.15102")
                      .equation("out_i = X_i ⊙ softmax_HW(ReLU(BN(conv1x1(maxpool(ReLU(BN(dw1x1(X_i)))))))) + X_i")
                      .schema(ulsam_schema().schema())
                      .example("{groups: 2}"),
                  [](const ConfigNode& params, const ChannelAttentionArgs& args) -> ChannelAttention {
                    const auto o = bind_options(ulsam_schema(), params);
                    if (args.channels % o.groups() != 0)
                      config_fail(params, "groups",
                                  "channel/ulsam: groups " + std::to_string(o.groups()) + " must divide the " +
                                      std::to_string(args.channels) + " channels");
                    return std::make_shared<UlsamImpl>(args.channels, o);
                  });

}  // namespace
}  // namespace blocklab
