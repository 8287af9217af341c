#include "blocks/backbones/vit.h"

#include "blocks/common/init.h"
#include "blocks/common/layer_error.h"
#include "blocks/common/options.h"
#include "blocks/common/positions.h"

namespace blocklab {

void check_vit(const BackboneArgs& args, const VitOptions& o, const ConfigNode& params) {
  if (args.image_height <= 0 || args.image_width <= 0 || args.in_channels <= 0)
    config_fail(params, "patch",
                "vit needs the image size and channels, got " + std::to_string(args.in_channels) + "x" +
                    std::to_string(args.image_height) + "x" + std::to_string(args.image_width));
  if (args.image_height % o.patch() != 0 || args.image_width % o.patch() != 0) {
    std::string valid;
    for (std::int64_t p = 1; p <= std::min(args.image_height, args.image_width); ++p)
      if (args.image_height % p == 0 && args.image_width % p == 0)
        valid += (valid.empty() ? "" : ", ") + std::to_string(p);
    config_fail(params, "patch",
                "patch " + std::to_string(o.patch()) + " does not divide the image size " +
                    std::to_string(args.image_height) + "x" + std::to_string(args.image_width),
                {"patch sizes that fit: " + valid});
  }
  if (o.pos() == "sinusoidal" && o.dim() % 4 != 0)
    config_fail(params, "pos", "sinusoidal 2-D positions need dim divisible by 4, got dim " + std::to_string(o.dim()),
                {"use pos: learned, or a dim divisible by 4"});
}

VitImpl::VitImpl(const BackboneArgs& args, const VitOptions& options)
    : options_(options), image_h_(args.image_height), image_w_(args.image_width) {
  check_vit(args, options);
  TORCH_CHECK(options.pool() == "cls" || options.pool() == "mean", "vit: pool must be cls or mean");
  TORCH_CHECK(options.pos() == "learned" || options.pos() == "sinusoidal" || options.pos() == "none",
              "vit: pos must be learned, sinusoidal or none");
  const auto dim = options.dim(), patch = options.patch();
  grid_h_ = image_h_ / patch;
  grid_w_ = image_w_ / patch;
  patch_embed = register_module(
      "patch_embed", torch::nn::Conv2d(torch::nn::Conv2dOptions(args.in_channels, dim, patch).stride(patch)));
  const std::int64_t prefix = options.pool() == "cls" ? 1 : 0;
  const std::int64_t tokens = prefix + grid_h_ * grid_w_;
  if (prefix) cls_token = register_parameter("cls_token", torch::zeros({1, 1, dim}));
  if (options.pos() == "learned") pos_embed = register_parameter("pos_embed", torch::zeros({1, tokens, dim}));
  if (options.pos() == "sinusoidal")
    pos_embed = register_buffer("pos_embed", sincos_2d_positions(dim, grid_h_, grid_w_, prefix));

  block_list = register_module("blocks", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < options.depth(); ++i) {
    const double rate = options.depth() > 1
                            ? options.drop_path() * static_cast<double>(i) / static_cast<double>(options.depth() - 1)
                            : 0.0;
    Block block =
        block_registry().create(options.block(), BlockArgs{dim, tokens, options.mixer(), options.channel(), rate});
    block_list->push_back(block);
    blocks.push_back(std::move(block));
  }
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));

  init_vit_weights(*this);
  torch::NoGradGuard no_grad;
  if (options.pos() == "learned") trunc_normal_(pos_embed, 0.02);
  if (cls_token.defined()) cls_token.normal_(0.0, 1e-6);
}

torch::Tensor VitImpl::forward(const torch::Tensor& images, AttentionProbe* probe) {
  TORCH_CHECK(images.dim() == 4 && images.size(2) == image_h_ && images.size(3) == image_w_,
              "vit: expected images [B, ", patch_embed->options.in_channels(), ", ", image_h_, ", ", image_w_,
              "], got ", images.sizes());
  auto x = patch_embed->forward(images).flatten(2).transpose(1, 2);  // [B, N, C]
  if (cls_token.defined()) x = torch::cat({cls_token.expand({x.size(0), -1, -1}), x}, 1);
  if (pos_embed.defined()) x = x + pos_embed;
  if (options_.pos_drop() > 0.0) x = torch::dropout(x, options_.pos_drop(), is_training());
  MixerContext ctx;
  ctx.grid_height = grid_h_;
  ctx.grid_width = grid_w_;
  ctx.prefix_tokens = prefix_tokens();
  ctx.probe = probe;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    ctx.layer = static_cast<int>(i);
    x = within_layer([&] { return layer_name(i); }, [&] { return blocks[i]->forward(x, ctx); });
  }
  // LayerNorm is per token, so LN-then-select equals select-then-LN (cheaper).
  return norm->forward(cls_token.defined() ? x.select(1, 0) : x.mean(1));
}

std::vector<std::string> VitImpl::no_weight_decay() const {
  std::vector<std::string> names;
  if (pos_embed.defined() && pos_embed.requires_grad()) names.push_back("pos_embed");  // a buffer when fixed
  if (cls_token.defined()) names.push_back("cls_token");
  return names;
}

std::string VitImpl::layer_name(std::size_t i) const {
  const ConfigNode* mixer = options_.mixer().is_map() ? options_.mixer().find("type") : nullptr;
  return "model.blocks." + std::to_string(i) + (mixer && mixer->is_scalar() ? " (" + mixer->text() + ")" : "");
}

const OptionsSchema<VitOptions>& vit_schema() {
  static const auto schema = [] {
    using O = VitOptions;
    OptionsSchema<O> s;
    BLOCKLAB_OPTION(s, patch, "patch side in pixels; must divide the image size (default 4)").min = 1;
    BLOCKLAB_OPTION(s, dim, "embedding width (default 64)").min = 1;
    BLOCKLAB_OPTION(s, depth, "number of blocks (default 6)").min = 1;
    s.choice(
        "pool", {"cls", "mean"}, "features from the class token (cls, default) or the token mean (mean)",
        [](O& o, const std::string& v) { o.pool(v); }, [](const O& o) { return o.pool(); });
    s.choice(
        "pos", {"learned", "sinusoidal", "none"},
        "position embedding: learned (default), fixed 2-D sin-cos (MAE), or none",
        [](O& o, const std::string& v) { o.pos(v); }, [](const O& o) { return o.pos(); });
    rate(BLOCKLAB_OPTION(s, drop_path, "stochastic depth of the last block, linear from 0 (default 0.1)"));
    rate(BLOCKLAB_OPTION(s, pos_drop, "dropout after adding positions (default 0)"));
    s.component("block", "block", "prenorm", "residual block (default prenorm)");
    s.component("mixer", "mixer", "attention/softmax", "token mixer of every block (default attention/softmax)");
    s.component("channel", "channel", "mlp", "channel mixer of every block (default mlp)");
    return s;
  }();
  return schema;
}

namespace {

Backbone make_vit(const ConfigNode& params, const BackboneArgs& args) {
  const auto& schema = vit_schema();
  auto options = bind_options(schema, params);
  const ParamReader reader(params, schema.schema(), "");
  options.block(reader.get_node("block")).mixer(reader.get_node("mixer")).channel(reader.get_node("channel"));
  check_vit(args, options, params);
  return std::make_shared<VitImpl>(args, options);
}

BLOCKLAB_REGISTER(backbone_registry(),
                  EntryInfo{"vit", "Vision Transformer: patch embedding, class token, positions, blocks, LayerNorm",
                            "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale "
                            "(Dosovitskiy et al., 2020), arXiv:2010.11929",
                            "z0 = [cls; patches E] + pos; z_l = block(z_{l-1}); y = LN(z_L[cls] or mean z_L)",
                            vit_schema().schema(), "{dim: 32, depth: 2, patch: 7}", __FILE__},
                  make_vit);

}  // namespace
}  // namespace blocklab
