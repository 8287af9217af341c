// vit (model preset): the Vision Transformer as a config of the registered parts.
//
// Paper: "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2020, arXiv:2010.11929). The
// preset keeps the wave-1 ViT's options (patch, dim, depth, pool, pos, drop_path, pos_drop, block,
// mixer, channel) and adds `layers` (per-layer overrides), and builds
//   stem/patch {patch, pos, pos_drop, class_token: pool == cls}
//   stack/plain {depth, drop_path, layers}, every layer's block = block {mixer, channel}
//   LayerNorm, pool (cls | mean), then the task's head
// so model.mixer is the default mixer of every layer, and model.layers.<name> overrides chosen
// layers. Numerically it is the wave-1 backbone `vit` + head, bit for bit (same init order).
#include "blocks/backbones/vit.h"
#include "blocks/common/options.h"
#include "blocks/model.h"
#include "blocks/stacks/plain.h"
#include "blocks/stems/patch.h"

namespace blocklab {
namespace {

const Schema& vit_preset_schema() {
  static const Schema schema = [] {
    Schema s = vit_schema().schema();
    s.add(layers_param());
    return s;
  }();
  return schema;
}

Model make_vit_preset(const ConfigNode& params, const ModelArgs& args) {
  check_params(params, vit_preset_schema());
  const VitOptions o = vit_schema().bind(params);
  const ParamReader r(params, vit_preset_schema(), "");
  check_patch_stem(args.inputs, o.dim(), o.patch(), o.pos(), params);
  const auto stem_options =
      PatchStemOptions().patch(o.patch()).pos(o.pos()).class_token(o.pool() == "cls").pos_drop(o.pos_drop());
  auto stem = std::make_shared<PatchStemImpl>(StemArgs{o.dim(), args.inputs}, stem_options);
  const LayerDefaults defaults{r.get_node("block"), r.get_node("mixer"), r.get_node("channel"), args.path};
  const StackArgs stack_args{o.dim(), stem->tokens(), stem->layout(), defaults, args.path};
  auto stack = std::make_shared<PlainStackImpl>(
      stack_args, PlainStackOptions().depth(o.depth()).drop_path(o.drop_path()).layers(r.get_node("layers")));
  return assemble_model(stem, stack, /*norm=*/true, pool_from(o.pool()), args, params);
}

BLOCKLAB_REGISTER(
    model_registry(),
    BLOCKLAB_ENTRY("vit")
        .summary("Vision Transformer preset: stem/patch + stack/plain (model.mixer for every layer, "
                 "model.layers to override some) + LayerNorm + pooled head")
        .paper("An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale "
               "(Dosovitskiy et al., 2020), arXiv:2010.11929")
        .equation("z0 = [cls; patches E] + pos; z_l = block_l(z_{l-1}); y = head(LN(z_L[cls] or mean z_L))")
        .schema(vit_preset_schema())
        .example("{dim: 32, depth: 2, patch: 7, layers: {top: {at: 1, mixer: {type: attention/sigmoid, "
                 "heads: 2}}}}"),
    make_vit_preset);

}  // namespace
}  // namespace blocklab
