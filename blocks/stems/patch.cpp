#include "blocks/stems/patch.h"

#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/common/positions.h"

namespace blocklab {

void check_patch_stem(const ModelInputs& in, std::int64_t dim, std::int64_t patch, const std::string& pos,
                      const ConfigNode& params) {
  if (in.height <= 0 || in.width <= 0 || in.channels <= 0)
    config_fail(params, "patch",
                "a patch stem needs images, got " + std::to_string(in.channels) + "x" + std::to_string(in.height) +
                    "x" + std::to_string(in.width),
                {"stem/tokens reads token ids, stem/series reads series"});
  if (in.height % patch != 0 || in.width % patch != 0) {
    std::string valid;
    for (std::int64_t p = 1; p <= std::min(in.height, in.width); ++p)
      if (in.height % p == 0 && in.width % p == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(p);
    config_fail(params, "patch",
                "patch " + std::to_string(patch) + " does not divide the image size " + std::to_string(in.height) +
                    "x" + std::to_string(in.width),
                {"patch sizes that fit: " + valid});
  }
  if (pos == "sinusoidal" && dim % 4 != 0)
    config_fail(params, "pos", "sinusoidal 2-D positions need dim divisible by 4, got dim " + std::to_string(dim),
                {"use pos: learned, or a dim divisible by 4"});
}

PatchEmbedding::PatchEmbedding(torch::nn::Module& owner, const ModelInputs& in, std::int64_t dim,
                               const PatchStemOptions& o)
    : options(o), image_h(in.height), image_w(in.width) {
  check_patch_stem(in, dim, o.patch(), o.pos());
  grid_h = image_h / o.patch();
  grid_w = image_w / o.patch();
  patch_embed = owner.register_module(
      "patch_embed", torch::nn::Conv2d(torch::nn::Conv2dOptions(in.channels, dim, o.patch()).stride(o.patch())));
  if (o.class_token()) cls_token = owner.register_parameter("cls_token", torch::zeros({1, 1, dim}));
  if (o.pos() == "learned") pos_embed = owner.register_parameter("pos_embed", torch::zeros({1, tokens(), dim}));
  if (o.pos() == "sinusoidal")
    pos_embed = owner.register_buffer("pos_embed", sincos_2d_positions(dim, grid_h, grid_w, prefix()));
}

void PatchEmbedding::init_weights() {
  torch::NoGradGuard no_grad;
  if (options.pos() == "learned") trunc_normal_(pos_embed, 0.02);
  if (cls_token.defined()) cls_token.normal_(0.0, 1e-6);
}

torch::Tensor PatchEmbedding::forward(const torch::Tensor& images, bool training) {
  TORCH_CHECK(images.dim() == 4 && images.size(2) == image_h && images.size(3) == image_w,
              "patch embedding: expected images [B, ", patch_embed->options.in_channels(), ", ", image_h, ", ", image_w,
              "], got ", images.sizes());
  auto x = patch_embed->forward(images).flatten(2).transpose(1, 2);  // [B, N, C]
  if (cls_token.defined()) x = torch::cat({cls_token.expand({x.size(0), -1, -1}), x}, 1);
  if (pos_embed.defined()) x = x + pos_embed;
  if (options.pos_drop() > 0.0) x = torch::dropout(x, options.pos_drop(), training);
  return x;
}

MixerContext PatchEmbedding::layout() const {
  MixerContext ctx;
  ctx.grid_height = grid_h;
  ctx.grid_width = grid_w;
  ctx.prefix_tokens = prefix();
  return ctx;
}

std::vector<std::string> PatchEmbedding::no_weight_decay() const {
  std::vector<std::string> names;
  if (pos_embed.defined() && pos_embed.requires_grad()) names.push_back("pos_embed");  // a buffer when fixed
  if (cls_token.defined()) names.push_back("cls_token");
  return names;
}

PatchStemImpl::PatchStemImpl(const StemArgs& args, const PatchStemOptions& options)
    : patches(*this, args.inputs, args.dim, options) {}

Tokens PatchStemImpl::forward(const torch::Tensor& images, const torch::Tensor&) {
  return {patches.forward(images, is_training()), layout()};
}

const OptionsSchema<PatchStemOptions>& patch_stem_schema() {
  static const auto schema = [] {
    using O = PatchStemOptions;
    OptionsSchema<O> s;
    BLOCKLAB_OPTION(s, patch, "patch side in pixels; must divide the image size (default 4)").min = 1;
    s.choice(
        "pos", {"learned", "sinusoidal", "none"},
        "position embedding: learned (default), fixed 2-D sin-cos (MAE), or none",
        [](O& o, const std::string& v) { o.pos(v); }, [](const O& o) { return o.pos(); });
    BLOCKLAB_OPTION(s, class_token, "a learned class token before the patches (default true)");
    rate(BLOCKLAB_OPTION(s, pos_drop, "dropout after adding positions (default 0)"));
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(stem_registry(),
                  BLOCKLAB_ENTRY("stem/patch")
                      .summary("image patches as tokens: Conv2d patch embedding, class token, positions")
                      .paper("An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale "
                             "(Dosovitskiy et al., 2020), arXiv:2010.11929")
                      .equation("z0 = [cls; x_p E] + E_pos; grid H/patch x W/patch")
                      .schema(patch_stem_schema().schema())
                      .example("{patch: 7}"),
                  [](const ConfigNode& params, const StemArgs& args) -> Stem {
                    const auto options = bind_options(patch_stem_schema(), params);
                    check_patch_stem(args.inputs, args.dim, options.patch(), options.pos(), params);
                    return std::make_shared<PatchStemImpl>(args, options);
                  });

}  // namespace
}  // namespace blocklab
