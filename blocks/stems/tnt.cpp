#include "blocks/stems/tnt.h"

#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/stems/patch.h"

namespace blocklab {

namespace {

// Words per side of a patch: the convolution's output size, floor((p + 2 (k-1)/2 - k) / s) + 1,
// which is ceil(p / s) for an odd kernel.
std::int64_t tnt_word_side(const TntStemOptions& o) { return (o.patch() + o.word_stride() - 1) / o.word_stride(); }

}  // namespace

void check_tnt_stem(const ModelInputs& inputs, std::int64_t dim, const TntStemOptions& o, const ConfigNode& params) {
  check_patch_stem(inputs, dim, o.patch(), "learned", params);
  if (o.word_kernel() % 2 == 0)
    config_fail(params, "word_kernel",
                "word_kernel " + std::to_string(o.word_kernel()) +
                    " is even; the word convolution pads (k - 1) / 2 so that it gives ceil(patch / word_stride) "
                    "words per side, which needs an odd kernel",
                {"use " + std::to_string(o.word_kernel() + 1) + " (TNT: 7)"});
  const std::int64_t side = tnt_word_side(o), packed = side * side * o.inner_dim();
  if (packed >= dim)
    config_fail(params, "inner_dim",
                std::to_string(side * side) + " words of width inner_dim " + std::to_string(o.inner_dim()) + " = " +
                    std::to_string(packed) + " channels leave no outer width in dim " + std::to_string(dim) +
                    " (the packed width is dim = C + words x inner_dim)",
                {"raise the model's dim to C + " + std::to_string(packed),
                 "or lower inner_dim, or raise word_stride (ceil(patch / word_stride)^2 words)"});
}

TntStemImpl::TntStemImpl(const StemArgs& args, const TntStemOptions& o)
    : options_(o), image_h_(args.inputs.height), image_w_(args.inputs.width) {
  check_tnt_stem(args.inputs, args.dim, o);
  grid_h_ = image_h_ / o.patch();
  grid_w_ = image_w_ / o.patch();
  word_side_ = tnt_word_side(o);
  const std::int64_t c = o.inner_dim(), packed = words() * c;
  outer_dim_ = args.dim - packed;
  word_embed =
      register_module("word_embed", torch::nn::Conv2d(torch::nn::Conv2dOptions(args.inputs.channels, c, o.word_kernel())
                                                          .stride(o.word_stride())
                                                          .padding((o.word_kernel() - 1) / 2)));
  const auto ln = [&](std::int64_t width) {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(o.norm_eps()));
  };
  outer_norm1 = register_module("outer_norm1", ln(packed));
  outer_proj = register_module("outer_proj", torch::nn::Linear(packed, outer_dim_));
  outer_norm2 = register_module("outer_norm2", ln(outer_dim_));
  if (o.class_token()) cls_token = register_parameter("cls_token", torch::zeros({1, 1, outer_dim_}));
  if (o.pos() == "learned") {
    pos_embed = register_parameter("pos_embed", torch::zeros({1, tokens(), outer_dim_}));
    word_pos = register_parameter("word_pos", torch::zeros({1, words(), c}));
  }
}

void TntStemImpl::init_weights() {
  torch::NoGradGuard no_grad;
  if (pos_embed.defined()) trunc_normal_(pos_embed, 0.02);
  if (word_pos.defined()) trunc_normal_(word_pos, 0.02);
  if (cls_token.defined()) trunc_normal_(cls_token, 0.02);
}

Tokens TntStemImpl::forward(const torch::Tensor& images, const torch::Tensor&) {
  TORCH_CHECK(images.dim() == 4 && images.size(2) == image_h_ && images.size(3) == image_w_,
              "stem/tnt: expected images [B, ", word_embed->options.in_channels(), ", ", image_h_, ", ", image_w_,
              "], got ", images.sizes());
  const std::int64_t b = images.size(0), ch = images.size(1), p = options_.patch(), n = grid_h_ * grid_w_;
  // [B, C_in, H, W] -> one [C_in, p, p] image per patch, patches in row-major order.
  const auto patches =
      images.reshape({b, ch, grid_h_, p, grid_w_, p}).permute({0, 2, 4, 1, 3, 5}).reshape({b * n, ch, p, p});
  auto w = word_embed->forward(patches).flatten(2).transpose(1, 2);  // [B N, m, c]
  if (word_pos.defined()) w = w + word_pos;
  auto flat = w.reshape({b, n, -1});  // [B, N, m c], word-major
  auto outer = outer_norm2->forward(outer_proj->forward(outer_norm1->forward(flat)));
  if (cls_token.defined()) {
    outer = torch::cat({cls_token.expand({b, -1, -1}), outer}, 1);
    flat = torch::cat({torch::zeros({b, 1, flat.size(2)}, flat.options()), flat}, 1);
  }
  if (pos_embed.defined()) outer = outer + pos_embed;
  if (options_.pos_drop() > 0.0) outer = torch::dropout(outer, options_.pos_drop(), is_training());
  return {torch::cat({outer, flat}, 2), layout()};
}

MixerContext TntStemImpl::layout() const {
  MixerContext ctx;
  ctx.grid_height = grid_h_;
  ctx.grid_width = grid_w_;
  ctx.prefix_tokens = prefix();
  return ctx;
}

std::vector<std::string> TntStemImpl::no_weight_decay() const {
  std::vector<std::string> names;
  if (pos_embed.defined()) names.push_back("pos_embed");
  if (word_pos.defined()) names.push_back("word_pos");
  if (cls_token.defined()) names.push_back("cls_token");
  return names;
}

const OptionsSchema<TntStemOptions>& tnt_stem_schema() {
  static const auto schema = [] {
    using O = TntStemOptions;
    OptionsSchema<O> s;
    BLOCKLAB_OPTION(s, patch, "patch side in pixels; must divide the image size (default 4)").min = 1;
    BLOCKLAB_OPTION(s, inner_dim, "c, the width of a word; block/tnt's inner_dim must match (default 8)").min = 1;
    BLOCKLAB_OPTION(s, word_kernel, "odd kernel of the word convolution on each patch (default 3; TNT: 7)").min = 1;
    BLOCKLAB_OPTION(s, word_stride,
                    "stride of the word convolution: ceil(patch / word_stride)^2 words per patch, block/tnt's "
                    "words (default 1; TNT: 4)")
        .min = 1;
    s.choice(
        "pos", {"learned", "none"}, "learned positions of the patches and of the words (default learned), or none",
        [](O& o, const std::string& v) { o.pos(v); }, [](const O& o) { return o.pos(); });
    BLOCKLAB_OPTION(s, class_token, "a learned class token before the patches, no words (default true)");
    rate(BLOCKLAB_OPTION(s, pos_drop, "dropout on the outer tokens after adding positions (default 0)"));
    BLOCKLAB_OPTION(s, norm_eps, "eps of the outer embedding's LayerNorms (default 1e-5, TNT's code)").min = 0.0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(stem_registry(),
                  BLOCKLAB_ENTRY(TntStemImpl::kKey)
                      .summary("Transformer in Transformer's embedding: patch tokens of width C = dim - m c with "
                               "each patch's m words (a convolution of its pixels) packed after them, for block/tnt")
                      .paper("Transformer in Transformer (Han et al., 2021), arXiv:2103.00112")
                      .equation("w_i = conv(X_i) + E_word; o_i = LN(W LN(flat w_i)); z = [[cls; o] + E_pos | "
                                "0; flat w], m = ceil(patch / word_stride)^2")
                      .schema(tnt_stem_schema().schema())
                      .example("{patch: 7, inner_dim: 2, word_kernel: 3, word_stride: 4}"),
                  [](const ConfigNode& params, const StemArgs& args) -> Stem {
                    const auto options = bind_options(tnt_stem_schema(), params);
                    check_tnt_stem(args.inputs, args.dim, options, params);
                    return std::make_shared<TntStemImpl>(args, options);
                  });

}  // namespace
}  // namespace blocklab
