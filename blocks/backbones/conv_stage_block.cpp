#include "blocks/backbones/conv_stage_block.h"

#include <cmath>

#include "blocks/common/grid_mixer.h"
#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

torch::nn::Conv2d conv_stage_pointwise(std::int64_t in, std::int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1));
}

torch::nn::Conv2d conv_stage_depthwise(std::int64_t dim) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 3).padding(1).groups(dim));
}

}  // namespace

ConvStageBlockImpl::ConvStageBlockImpl(const BlockArgs& args, const ConvStageBlockOptions& o, std::string key)
    : drop_path_(args.drop_path), key_(std::move(key)) {
  const auto dim = args.dim;
  if (o.local_integration())
    local_integration = register_module(
        "local_integration",
        torch::nn::Sequential(conv_stage_pointwise(dim, dim), torch::nn::BatchNorm2d(dim), conv_stage_depthwise(dim),
                              torch::nn::GELU(), conv_stage_pointwise(dim, dim)));
  norm1 = register_module("norm1", torch::nn::BatchNorm2d(dim));
  mixer = register_module("mixer", mixer_registry().create(args.mixer, mixer_args(args)));
  norm2 = register_module("norm2", torch::nn::BatchNorm2d(dim));
  const auto hidden = static_cast<std::int64_t>(std::llround(o.mlp_ratio() * static_cast<double>(dim)));
  mlp = register_module("mlp", torch::nn::Sequential(conv_stage_pointwise(dim, hidden)));
  if (o.mlp_dwconv()) mlp->push_back(conv_stage_depthwise(hidden));
  mlp->push_back(torch::nn::GELU());
  mlp->push_back(conv_stage_pointwise(hidden, dim));
  if (o.layer_scale() != 0.0) {
    gamma1 = register_parameter("gamma1", torch::full({dim, 1, 1}, o.layer_scale()));
    gamma2 = register_parameter("gamma2", torch::full({dim, 1, 1}, o.layer_scale()));
  }
}

torch::Tensor ConvStageBlockImpl::residual(const torch::Tensor& x, torch::Tensor branch,
                                           const torch::Tensor& gamma) const {
  if (gamma.defined()) branch = branch * gamma;
  return x + blocklab::drop_path(branch, drop_path_, is_training());
}

torch::Tensor ConvStageBlockImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  auto image = grid_body_image(x, ctx, key_.c_str());
  if (local_integration) image = image + local_integration->forward(image);
  MixerContext grid_only = ctx;
  grid_only.prefix_tokens = 0;
  const auto mixed = mixer->forward(image_to_grid_tokens(norm1->forward(image)), grid_only);
  image = residual(image, grid_tokens_to_image(mixed, ctx.grid_height, ctx.grid_width), gamma1);
  image = residual(image, mlp->forward(norm2->forward(image)), gamma2);
  return keep_prefix_tokens(x, ctx.prefix_tokens, image_to_grid_tokens(image));
}

namespace {

std::string conv_stage_flag(bool v) { return v ? "true" : "false"; }

template <class O>
OptionsSchema<O> conv_stage_schema() {
  const O d{};
  OptionsSchema<O> s;
  BLOCKLAB_OPTION(s, mlp_ratio, "MLP hidden width as a multiple of C (default " + format_double(d.mlp_ratio()) + ")")
      .min = 0.0;
  BLOCKLAB_OPTION(
      s, mlp_dwconv,
      "a depth-wise 3x3 convolution inside the MLP (VAN) (default " + conv_stage_flag(d.mlp_dwconv()) + ")");
  BLOCKLAB_OPTION(
      s, local_integration,
      "CAS-ViT's local integration unit before the mixer (default " + conv_stage_flag(d.local_integration()) + ")");
  BLOCKLAB_OPTION(s, layer_scale, "LayerScale init value; 0 = off (default " + format_double(d.layer_scale()) + ")")
      .min = 0.0;
  return s;
}

const OptionsSchema<VanBlockOptions>& van_block_schema() {
  static const auto schema = conv_stage_schema<VanBlockOptions>();
  return schema;
}

const OptionsSchema<CasVitBlockOptions>& cas_vit_block_schema() {
  static const auto schema = conv_stage_schema<CasVitBlockOptions>();
  return schema;
}

template <class O>
Block make_conv_stage_block(const OptionsSchema<O>& schema, const char* key, const ConfigNode& params,
                            const BlockArgs& args) {
  const ConvStageBlockOptions o = bind_options(schema, params);
  if (o.mlp_ratio() <= 0.0) config_fail(params, "mlp_ratio", "mlp_ratio must be positive");
  return std::make_shared<ConvStageBlockImpl>(args, o, key);
}

BLOCKLAB_REGISTER(block_registry(),
                  BLOCKLAB_ENTRY("block/van")
                      .summary("VAN's stage block: BatchNorm MetaFormer on the grid around the config's mixer "
                               "(conv/lka), a convolutional MLP with a depth-wise 3x3, LayerScale 0.01")
                      .paper("Visual Attention Network (Guo et al., 2023), arXiv:2202.09741")
                      .equation("x += dp(g1 ⊙ mixer(BN(x))); x += dp(g2 ⊙ Conv1x1(GELU(DWConv3x3(Conv1x1(BN(x))))))")
                      .schema(van_block_schema().schema())
                      .example("{mlp_ratio: 2}"),
                  [](const ConfigNode& params, const BlockArgs& args) -> Block {
                    return make_conv_stage_block(van_block_schema(), "block/van", params, args);
                  });

BLOCKLAB_REGISTER(block_registry(),
                  BLOCKLAB_ENTRY("block/cas-vit")
                      .summary("CAS-ViT's stage block: a local integration unit, then a BatchNorm MetaFormer on the "
                               "grid around the config's mixer (mixer/cas-additive), a 1x1-conv MLP")
                      .paper("CAS-ViT: Convolutional Additive Self-attention Vision Transformers (Zhang et al., "
                             "2024), arXiv:2408.03703")
                      .equation("x += LI(x); x += dp(mixer(BN(x))); x += dp(Conv1x1(GELU(Conv1x1(BN(x)))))")
                      .schema(cas_vit_block_schema().schema())
                      .example("{mlp_ratio: 2}"),
                  [](const ConfigNode& params, const BlockArgs& args) -> Block {
                    return make_conv_stage_block(cas_vit_block_schema(), "block/cas-vit", params, args);
                  });

}  // namespace
}  // namespace blocklab
