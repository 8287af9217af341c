#include "blocks/channel_attention/hat_cab.h"

#include "blocks/common/options.h"

namespace blocklab {

HatCabImpl::HatCabImpl(std::int64_t channels, const HatCabOptions& o) {
  const auto middle = std::max<std::int64_t>(1, channels / o.compress());
  compress = register_module("compress", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, middle, 3).padding(1)));
  expand = register_module("expand", torch::nn::Conv2d(torch::nn::Conv2dOptions(middle, channels, 3).padding(1)));
  attention = register_module(
      "attention", SqueezeExcitation(
                       channels, SqueezeExcitationOptions().hidden(std::max<std::int64_t>(1, channels / o.squeeze()))));
}

torch::Tensor HatCabImpl::forward(const torch::Tensor& x) {
  return attention->forward(expand->forward(torch::gelu(compress->forward(x))));
}

namespace {

const OptionsSchema<HatCabOptions>& hat_cab_schema() {
  static const auto schema = [] {
    OptionsSchema<HatCabOptions> s;
    BLOCKLAB_OPTION(s, compress, "r_c: the middle width is C // r_c (HAT: 3; default 3)").min = 1;
    BLOCKLAB_OPTION(s, squeeze, "r_s: the channel attention's width is C // r_s (HAT: 30; default 30)").min = 1;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(channel_attention_registry(),
                  BLOCKLAB_ENTRY(HatCabImpl::kKey)
                      .summary("HAT's channel attention block: conv3x3 -> GELU -> conv3x3, then RCAN channel "
                               "attention (an SE with biases)")
                      .paper("Activating More Pixels in Image Super-Resolution Transformer (Chen et al., 2023), "
                             "arXiv:2205.04437")
                      .equation("z = conv3x3(GELU(conv3x3(x))); out = z ⊙ sigmoid(W_2 ReLU(W_1 GAP(z)))")
                      .schema(hat_cab_schema().schema())
                      .example("{compress: 2, squeeze: 4}"),
                  [](const ConfigNode& params, const ChannelAttentionArgs& args) -> ChannelAttention {
                    return std::make_shared<HatCabImpl>(args.channels, bind_options(hat_cab_schema(), params));
                  });

}  // namespace
}  // namespace blocklab
