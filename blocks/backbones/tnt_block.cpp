#include "blocks/backbones/tnt_block.h"

#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

// {type: attention/softmax, heads: h, qkv_bias: b}: TNT's attention (the inner one, and the outer
// one when the block is built without a token mixer config).
ConfigNode tnt_attention_config(std::int64_t heads, bool qkv_bias) {
  ConfigNode c = ConfigNode::map();
  c.set("type", ConfigNode::string("attention/softmax"));
  c.set("heads", ConfigNode::integer(heads));
  c.set("qkv_bias", ConfigNode::boolean(qkv_bias));
  return c;
}

ConfigNode tnt_mlp_config(double ratio) {
  ConfigNode c = ConfigNode::map();
  c.set("type", ConfigNode::string("mlp"));
  c.set("ratio", ConfigNode::floating(ratio));
  return c;
}

}  // namespace

void check_tnt_block(const TntBlockOptions& o, const BlockArgs& args, const ConfigNode& params) {
  const std::int64_t packed = o.words() * o.inner_dim();
  if (packed >= args.dim)
    config_fail(params, "inner_dim",
                "words x inner_dim = " + std::to_string(o.words()) + " x " + std::to_string(o.inner_dim()) + " = " +
                    std::to_string(packed) + " leaves no outer width in dim " + std::to_string(args.dim) +
                    " (the packed width is dim = C + words x inner_dim)",
                {"raise the model's dim to C + " + std::to_string(packed), "or lower inner_dim or words",
                 "inner_dim: 0 gives a plain pre-norm block"});
  if (o.inner_dim() > 0 && o.inner_dim() % o.inner_heads() != 0)
    config_fail(params, "inner_heads",
                "inner_heads " + std::to_string(o.inner_heads()) + " does not divide inner_dim " +
                    std::to_string(o.inner_dim()),
                {"use a divisor of inner_dim, e.g. inner_heads: 1"});
  const std::int64_t outer = args.dim - packed;
  if (args.mixer.is_null() && outer % o.heads() != 0)
    config_fail(params, "heads",
                "heads " + std::to_string(o.heads()) +
                    " does not divide the outer width C = dim - words x inner_dim = " + std::to_string(outer),
                {"use a divisor of " + std::to_string(outer)});
}

TntBlockImpl::TntBlockImpl(const BlockArgs& args, const TntBlockOptions& o)
    : dim_(args.dim),
      inner_dim_(o.inner_dim()),
      words_(o.inner_dim() > 0 ? o.words() : 0),
      outer_dim_(args.dim - words_ * inner_dim_),
      drop_path_(args.drop_path) {
  TORCH_CHECK(inner_dim_ >= 0 && o.words() >= 1 && outer_dim_ >= 1, "block/tnt: words x inner_dim = ", words_, " x ",
              inner_dim_, " must be below dim ", dim_);
  const auto ln = [&](std::int64_t width) {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(o.norm_eps()));
  };
  if (inner_dim_ > 0) {
    TORCH_CHECK(inner_dim_ % o.inner_heads() == 0, "block/tnt: inner_heads must divide inner_dim");
    MixerArgs inner_args{inner_dim_, words_, args.layer, args.layers};
    inner_norm1 = register_module("inner_norm1", ln(inner_dim_));
    inner_attn = register_module(
        "inner_attn", mixer_registry().create(tnt_attention_config(o.inner_heads(), o.qkv_bias()), inner_args));
    inner_norm2 = register_module("inner_norm2", ln(inner_dim_));
    inner_mlp =
        register_module("inner_mlp", channel_registry().create(tnt_mlp_config(o.inner_mlp_ratio()), inner_dim_));
    fuse_norm1 = register_module("fuse_norm1", ln(word_width()));
    fuse = register_module("fuse", torch::nn::Linear(torch::nn::LinearOptions(word_width(), outer_dim_).bias(false)));
    fuse_norm2 = register_module("fuse_norm2", ln(outer_dim_));
  }
  MixerArgs outer_args = mixer_args(args);
  outer_args.dim = outer_dim_;
  const ConfigNode mixer_config = args.mixer.is_null() ? tnt_attention_config(o.heads(), o.qkv_bias()) : args.mixer;
  const ConfigNode channel_config = args.channel.is_null() ? tnt_mlp_config(4.0) : args.channel;
  norm1 = register_module("norm1", ln(outer_dim_));
  mixer = register_module("mixer", mixer_registry().create(mixer_config, outer_args));
  norm2 = register_module("norm2", ln(outer_dim_));
  channel = register_module("channel", channel_registry().create(channel_config, outer_dim_));
}

torch::Tensor TntBlockImpl::inner(const torch::Tensor& words) {
  const MixerContext plain;  // one sequence of m words per patch: no grid, no prefix, no probe
  auto w =
      words + blocklab::drop_path(inner_attn->forward(inner_norm1->forward(words), plain), drop_path_, is_training());
  return w + blocklab::drop_path(inner_mlp->forward(inner_norm2->forward(w)), drop_path_, is_training());
}

torch::Tensor TntBlockImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal,
              "block/tnt has no causal form: Transformer in Transformer is a non-causal image block (causal: no)");
  TORCH_CHECK(x.dim() == 3 && x.size(2) == dim_, "block/tnt: expected tokens [B, N, ", dim_,
              "] (outer C = ", outer_dim_, " + words ", words_, " x ", inner_dim_, "), got ", x.sizes());
  const std::int64_t b = x.size(0), n = x.size(1), p = ctx.prefix_tokens, body = n - p;
  TORCH_CHECK(p >= 0 && body >= 0, "block/tnt: ", p, " prefix tokens of ", n);
  torch::Tensor outer = x.narrow(2, 0, outer_dim_);
  torch::Tensor words;  // [B, N, m c]: the packed words after the inner transformer
  if (inner_attn) {
    words = x.narrow(2, outer_dim_, word_width());
    if (body > 0) {
      // Inner transformer, one sequence per patch; then each patch's words fused into its token.
      const auto w = inner(words.narrow(1, p, body).reshape({b * body, words_, inner_dim_})).reshape({b, body, -1});
      const auto fused = fuse_norm2->forward(fuse->forward(fuse_norm1->forward(w)));
      outer = torch::cat({outer.narrow(1, 0, p), outer.narrow(1, p, body) + fused}, 1);
      words = torch::cat({words.narrow(1, 0, p), w}, 1);  // prefix tokens: their word part unchanged
    }
  }
  const auto mixer_input = norm1->forward(outer);
  if (ctx.probe && ctx.probe->keeps_mixer_calls())
    ctx.probe->record_mixer_call(MixerCall{mixer, mixer_input.detach(), ctx.without_probe()});
  outer = outer + blocklab::drop_path(mixer->forward(mixer_input, ctx), drop_path_, is_training());
  outer = outer + blocklab::drop_path(channel->forward(norm2->forward(outer)), drop_path_, is_training());
  return inner_attn ? torch::cat({outer, words}, 2) : outer;
}

const OptionsSchema<TntBlockOptions>& tnt_block_schema() {
  static const auto schema = [] {
    OptionsSchema<TntBlockOptions> s;
    BLOCKLAB_OPTION(s, inner_dim,
                    "c, the width of a word; as stem/tnt's (default 8; 0 = no words: a plain pre-norm block)")
        .min = 0;
    BLOCKLAB_OPTION(s, words, "m, words per patch; as stem/tnt's, ceil(patch / word_stride)^2 (default 16)").min = 1;
    BLOCKLAB_OPTION(s, inner_heads, "heads of the inner attention; divides inner_dim (default 2)").min = 1;
    BLOCKLAB_OPTION(s, inner_mlp_ratio, "hidden width / inner_dim of the inner MLP (default 4)").min = 1e-3;
    BLOCKLAB_OPTION(s, qkv_bias,
                    "bias on the inner attention's q/k/v projection, and on the outer one's when the block "
                    "builds it (default false, TNT's code)");
    BLOCKLAB_OPTION(s, heads,
                    "heads of the outer attention/softmax when the block is given no token mixer config "
                    "(blocklab block); divides C (default 4)")
        .min = 1;
    BLOCKLAB_OPTION(s, norm_eps, "eps of the block's LayerNorms (default 1e-5, TNT's code)").min = 0.0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    block_registry(),
    BLOCKLAB_ENTRY(TntBlockImpl::kKey)
        .summary("Transformer in Transformer: an inner transformer over each patch's words (packed after the "
                 "outer channels) fused into the patch token, then the outer pre-norm block; with stem/tnt")
        .paper("Transformer in Transformer (Han et al., 2021), arXiv:2103.00112")
        .equation("w += Attn_in(LN w); w += MLP_in(LN w); o_i += LN(W LN(flat w_i)); o += mixer(LN o); "
                  "o += channel(LN o); tokens [o | w], dim = C + words x inner_dim")
        .schema(tnt_block_schema().schema())
        .example("{inner_dim: 2, words: 4, inner_heads: 1}"),
    [](const ConfigNode& params, const BlockArgs& args) -> Block {
      const auto options = bind_options(tnt_block_schema(), params);
      check_tnt_block(options, args, params);
      return std::make_shared<TntBlockImpl>(args, options);
    });

}  // namespace
}  // namespace blocklab
