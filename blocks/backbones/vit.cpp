#include "blocks/backbones/vit.h"

#include "blocks/common/init.h"
#include "blocks/common/layer_error.h"
#include "blocks/common/options.h"
#include "blocks/common/positions.h"
#include "blocks/stacks/layer_plan.h"
#include "blocks/stems/patch.h"

namespace blocklab {

void check_vit(const BackboneArgs& args, const VitOptions& o, const ConfigNode& params) {
  check_patch_stem(ModelInputs{args.in_channels, args.image_height, args.image_width}, o.dim(), o.patch(), o.pos(),
                   params);
}

VitImpl::VitImpl(const BackboneArgs& args, const VitOptions& options) : options_(options) {
  check_vit(args, options);
  TORCH_CHECK(options.pool() == "cls" || options.pool() == "mean", "vit: pool must be cls or mean");
  const auto dim = options.dim();
  patches = PatchEmbedding(*this, ModelInputs{args.in_channels, args.image_height, args.image_width}, dim,
                           PatchStemOptions()
                               .patch(options.patch())
                               .pos(options.pos())
                               .class_token(options.pool() == "cls")
                               .pos_drop(options.pos_drop()));

  block_list = register_module("blocks", torch::nn::ModuleList());
  const LayerDefaults every_layer{options.block(), options.mixer(), options.channel(), "model"};
  blocks = build_layers(plan_layers(options.depth(), every_layer, {}, "model.layers"), dim, patches.tokens(),
                        patches.layout(), options.drop_path(), block_list);
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));

  init_vit_weights(*this);
  patches.init_weights();
}

torch::Tensor VitImpl::forward(const torch::Tensor& images, AttentionProbe* probe) {
  auto x = patches.forward(images, is_training());
  MixerContext ctx = patches.layout();
  ctx.probe = probe;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    ctx.layer = static_cast<int>(i);
    x = within_layer([&] { return layer_name(i); }, [&] { return blocks[i]->forward(x, ctx); });
  }
  // LayerNorm is per token, so LN-then-select equals select-then-LN (cheaper).
  return norm->forward(patches.cls_token.defined() ? x.select(1, 0) : x.mean(1));
}

std::vector<std::string> VitImpl::no_weight_decay() const { return patches.no_weight_decay(); }

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
                  BLOCKLAB_ENTRY("vit")
                      .summary("Vision Transformer: patch embedding, class token, positions, blocks, LayerNorm")
                      .paper("An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale "
                             "(Dosovitskiy et al., 2020), arXiv:2010.11929")
                      .equation("z0 = [cls; patches E] + pos; z_l = block(z_{l-1}); y = LN(z_L[cls] or mean z_L)")
                      .schema(vit_schema().schema())
                      .example("{dim: 32, depth: 2, patch: 7}"),
                  make_vit);

}  // namespace
}  // namespace blocklab
