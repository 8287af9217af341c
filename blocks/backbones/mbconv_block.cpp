#include "blocks/backbones/mbconv_block.h"

#include "blocks/common/grid_image.h"
#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "registry/config_error.h"

namespace blocklab {

namespace {

torch::nn::Conv2d mbconv_pointwise(std::int64_t in, std::int64_t out, bool bias) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(bias));
}

}  // namespace

MBConvBlockImpl::MBConvBlockImpl(std::int64_t dim, double drop_path, const MBConvBlockOptions& options)
    : drop_path_(drop_path) {
  const auto hidden = options.expansion() * dim;
  pre_norm = register_module("pre_norm", torch::nn::BatchNorm2d(dim));
  expand = register_module("expand", mbconv_pointwise(dim, hidden, false));
  norm1 = register_module("norm1", torch::nn::BatchNorm2d(hidden));
  depthwise = register_module("depthwise", torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, hidden, options.kernel())
                                                                 .padding(options.kernel() / 2)
                                                                 .groups(hidden)
                                                                 .bias(false)));
  norm2 = register_module("norm2", torch::nn::BatchNorm2d(hidden));
  if (options.se_ratio() > 0) {
    const auto squeezed = std::max<std::int64_t>(1, static_cast<std::int64_t>(options.se_ratio() * dim));
    se_reduce = register_module("se_reduce", mbconv_pointwise(hidden, squeezed, true));
    se_expand = register_module("se_expand", mbconv_pointwise(squeezed, hidden, true));
  }
  project = register_module("project", mbconv_pointwise(hidden, dim, true));
}

torch::Tensor MBConvBlockImpl::branch(const torch::Tensor& image) {
  auto h = torch::gelu(norm1->forward(expand->forward(pre_norm->forward(image))));
  h = torch::gelu(norm2->forward(depthwise->forward(h)));
  if (se_reduce) {  // squeeze (mean over the grid), excite (a gate per channel)
    const auto squeezed = h.mean({2, 3}, /*keepdim=*/true);
    h = h * torch::sigmoid(se_expand->forward(torch::silu(se_reduce->forward(squeezed))));
  }
  return project->forward(h);
}

torch::Tensor MBConvBlockImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, kKey, ": a convolution has no causal form; use it in a non-causal (image) model");
  TORCH_CHECK(ctx.has_grid() && x.size(1) == ctx.prefix_tokens + ctx.grid_height * ctx.grid_width, kKey,
              ": needs the tokens of an image grid (a patch stem), got ", x.size(1), " tokens with a ", ctx.grid_height,
              "x", ctx.grid_width, " grid and ", ctx.prefix_tokens, " prefix tokens");
  const auto prefix = ctx.prefix_tokens;
  const auto body = x.narrow(1, prefix, x.size(1) - prefix);
  const auto image = grid_tokens_to_image(body, ctx.grid_height, ctx.grid_width);
  const auto update = image_to_grid_tokens(branch(image));
  const auto out = body + blocklab::drop_path(update, drop_path_, is_training());
  return prefix > 0 ? torch::cat({x.narrow(1, 0, prefix), out}, 1) : out;
}

const OptionsSchema<MBConvBlockOptions>& mbconv_block_schema() {
  static const auto schema = [] {
    OptionsSchema<MBConvBlockOptions> s;
    BLOCKLAB_OPTION(s, expansion, "hidden width as a multiple of the width (MaxViT: 4; default 4)").min = 1;
    BLOCKLAB_OPTION(s, kernel, "depth-wise kernel size, odd (default 3)").min = 1;
    BLOCKLAB_OPTION(s, se_ratio, "squeeze-excitation width over the width (MaxViT: 0.25; 0 = no SE; default 0.25)")
        .min = 0.0;
    return s;
  }();
  return schema;
}

namespace {

Block make_mbconv_block(const ConfigNode& params, const BlockArgs& args) {
  const auto options = bind_options(mbconv_block_schema(), params);
  if (options.kernel() % 2 == 0)
    config_fail(params, "kernel",
                "kernel must be odd (the grid keeps its size), got " + std::to_string(options.kernel()));
  return std::make_shared<MBConvBlockImpl>(args.dim, args.drop_path, options);
}

BLOCKLAB_REGISTER(block_registry(),
                  BLOCKLAB_ENTRY(MBConvBlockImpl::kKey)
                      .summary("MaxViT's MBConv block on the patch grid: pre-BN, 1x1 expansion, depth-wise conv, "
                               "squeeze-excitation, 1x1 projection, residual (no token or channel mixer config)")
                      .paper("MaxViT: Multi-Axis Vision Transformer (Tu et al., 2022), arXiv:2204.01697")
                      .equation("x += drop_path(Conv1x1(SE(GELU(BN(DW(GELU(BN(Conv1x1(BN(x))))))))))")
                      .schema(mbconv_block_schema().schema())
                      .example("{expansion: 2, kernel: 3, se_ratio: 0.25}"),
                  make_mbconv_block);

}  // namespace
}  // namespace blocklab
