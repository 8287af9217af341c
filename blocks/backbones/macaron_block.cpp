#include "blocks/backbones/macaron_block.h"

#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

MacaronBlockImpl::MacaronBlockImpl(const BlockArgs& args, const MacaronBlockOptions& o)
    : pre_(o.norm() == "pre"), ffn_scale_(o.ffn_scale()), drop_path_(args.drop_path) {
  const auto ln = torch::nn::LayerNormOptions({args.dim}).eps(1e-6);
  norm1 = register_module("norm1", torch::nn::LayerNorm(ln));
  ffn1 = register_module("ffn1", channel_registry().create(args.channel, args.dim));
  norm2 = register_module("norm2", torch::nn::LayerNorm(ln));
  mixer = register_module("mixer", mixer_registry().create(args.mixer, mixer_args(args)));
  norm3 = register_module("norm3", torch::nn::LayerNorm(ln));
  ffn2 = register_module("ffn2", channel_registry().create(args.channel, args.dim));
}

namespace {

// A channel mixer as a sub-layer's branch.
std::function<torch::Tensor(const torch::Tensor&)> channel_branch(ChannelMixer& f) {
  return [&f](const torch::Tensor& t) { return f->forward(t); };
}

}  // namespace

torch::Tensor MacaronBlockImpl::sublayer(const torch::Tensor& x, torch::nn::LayerNorm& norm, double scale,
                                         const std::function<torch::Tensor(const torch::Tensor&)>& branch) {
  const auto update = [&](const torch::Tensor& input) {
    return blocklab::drop_path(scale * branch(input), drop_path_, is_training());
  };
  return pre_ ? x + update(norm->forward(x)) : norm->forward(x + update(x));
}

torch::Tensor MacaronBlockImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  auto y = sublayer(x, norm1, ffn_scale_, channel_branch(ffn1));
  y = sublayer(y, norm2, 1.0, [&](const torch::Tensor& t) { return mixer->forward(t, ctx); });
  return sublayer(y, norm3, ffn_scale_, channel_branch(ffn2));
}

MixerState MacaronBlockImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  return mixer->init_state(batch, options);
}

MixerStep MacaronBlockImpl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) {
  MixerStep s;
  auto y = sublayer(x_t, norm1, ffn_scale_, channel_branch(ffn1));
  y = sublayer(y, norm2, 1.0, [&](const torch::Tensor& t) {
    s = mixer->step(t, state, ctx);
    return s.output;
  });
  s.output = sublayer(y, norm3, ffn_scale_, channel_branch(ffn2));
  return s;
}

namespace {

const OptionsSchema<MacaronBlockOptions>& macaron_block_schema() {
  static const auto schema = [] {
    using O = MacaronBlockOptions;
    OptionsSchema<O> s;
    s.choice(
        "norm", {"pre", "post"},
        "pre: x += s F(LN x) (Conformer's form; default) or post: x = LN(x + s F x) (the paper's fairseq form)",
        [](O& o, const std::string& v) { o.norm(v); }, [](const O& o) { return o.norm(); });
    BLOCKLAB_OPTION(s, ffn_scale, "s, the step of each FFN (the Strang splitting's half step: 0.5; default 0.5)").min =
        0.0;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(
    block_registry(),
    BLOCKLAB_ENTRY(MacaronBlockImpl::kKey)
        .summary("Macaron Net: FFN (half step), token mixer, FFN (half step), the Strang splitting of "
                 "the Transformer's ODE; two FFNs of the channel config")
        .paper("Understanding and Improving Transformer From a Multi-Particle Dynamic System Point of "
               "View (Lu et al., 2019), arXiv:1906.02762")
        .equation("x += s F_1(LN x); x += A(LN x); x += s F_2(LN x), s = 1/2 (norm post: x = LN(x + ...))")
        .schema(macaron_block_schema().schema())
        .example("{norm: pre}"),
    [](const ConfigNode& params, const BlockArgs& args) -> Block {
      return std::make_shared<MacaronBlockImpl>(args, bind_options(macaron_block_schema(), params));
    });

}  // namespace
}  // namespace blocklab
