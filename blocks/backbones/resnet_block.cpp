#include "blocks/backbones/resnet_block.h"

#include "blocks/common/grid_mixer.h"
#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

torch::nn::Conv2d resnet_conv(std::int64_t dim, std::int64_t kernel) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, kernel).padding(kernel / 2).bias(false));
}

}  // namespace

ResNetBlockImpl::ResNetBlockImpl(std::int64_t dim, double drop_path, const ResNetBlockOptions& o)
    : drop_path_(drop_path) {
  conv1 = register_module("conv1", resnet_conv(dim, o.kernel()));
  norm1 = register_module("norm1", torch::nn::BatchNorm2d(dim));
  conv2 = register_module("conv2", resnet_conv(dim, o.kernel()));
  norm2 = register_module("norm2", torch::nn::BatchNorm2d(dim));
  if (o.zero_init_last()) {
    torch::NoGradGuard no_grad;
    norm2->weight.zero_();
  }
  if (!o.attention().is_null())
    attention =
        register_module("attention", channel_attention_registry().create(o.attention(), ChannelAttentionArgs{dim}));
}

torch::Tensor ResNetBlockImpl::branch(const torch::Tensor& image) {
  auto h = torch::relu(norm1->forward(conv1->forward(image)));
  h = norm2->forward(conv2->forward(h));
  return attention ? attention->forward(h) : h;
}

torch::Tensor ResNetBlockImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const auto image = grid_body_image(x, ctx, kKey);
  const auto out = torch::relu(image + blocklab::drop_path(branch(image), drop_path_, is_training()));
  return keep_prefix_tokens(x, ctx.prefix_tokens, image_to_grid_tokens(out));
}

namespace {

const OptionsSchema<ResNetBlockOptions>& resnet_block_schema() {
  static const auto schema = [] {
    OptionsSchema<ResNetBlockOptions> s;
    BLOCKLAB_OPTION(s, kernel, "convolution kernel size, odd (ResNet: 3; default 3)").min = 1;
    BLOCKLAB_OPTION(s, zero_init_last, "the branch's last BatchNorm scale starts at 0 (timm's default; default true)");
    s.component("attention", "channel-attention", "",
                "channel attention on the residual branch, e.g. {type: channel/eca} (default none)");
    return s;
  }();
  return schema;
}

Block make_resnet_block(const ConfigNode& params, const BlockArgs& args) {
  auto options = bind_options(resnet_block_schema(), params);
  if (options.kernel() % 2 == 0)
    config_fail(params, "kernel",
                "kernel must be odd (the grid keeps its size), got " + std::to_string(options.kernel()));
  if (const ConfigNode* attention = params.find("attention"); attention && !attention->is_null())
    options.attention(*attention);
  return std::make_shared<ResNetBlockImpl>(args.dim, args.drop_path, options);
}

BLOCKLAB_REGISTER(block_registry(),
                  BLOCKLAB_ENTRY(ResNetBlockImpl::kKey)
                      .summary("ResNet's basic block on the patch grid (two 3x3 conv + BN), with an optional channel "
                               "attention on the residual branch (no token or channel mixer config)")
                      .paper("Deep Residual Learning for Image Recognition (He et al., 2016), arXiv:1512.03385")
                      .equation("x = ReLU(x + drop_path(attention(BN(Conv3x3(ReLU(BN(Conv3x3(x))))))))")
                      .schema(resnet_block_schema().schema())
                      .example("{zero_init_last: false, attention: {type: channel/eca}}"),
                  make_resnet_block);

}  // namespace
}  // namespace blocklab
