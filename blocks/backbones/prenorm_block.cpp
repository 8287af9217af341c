#include "blocks/backbones/prenorm_block.h"

#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

PrenormBlockImpl::PrenormBlockImpl(std::int64_t dim, TokenMixer mixer_, ChannelMixer channel_, double drop_path,
                                   const PrenormBlockOptions& options)
    : drop_path_(drop_path) {
  TORCH_CHECK(mixer_ && channel_, "prenorm: mixer and channel mixer must be given");
  const auto ln = torch::nn::LayerNormOptions({dim}).eps(1e-6);
  norm1 = register_module("norm1", torch::nn::LayerNorm(ln));
  mixer = register_module("mixer", std::move(mixer_));
  norm2 = register_module("norm2", torch::nn::LayerNorm(ln));
  channel = register_module("channel", std::move(channel_));
  if (options.layer_scale() != 0.0) {
    gamma1 = register_parameter("gamma1", torch::full({dim}, options.layer_scale()));
    gamma2 = register_parameter("gamma2", torch::full({dim}, options.layer_scale()));
  }
}

PrenormBlockImpl::PrenormBlockImpl(const BlockArgs& args, const PrenormBlockOptions& options)
    : PrenormBlockImpl(args.dim, mixer_registry().create(args.mixer, MixerArgs{args.dim, args.max_tokens}),
                       channel_registry().create(args.channel, args.dim), args.drop_path, options) {}

torch::Tensor PrenormBlockImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const torch::Tensor mixer_input = norm1->forward(x);
  if (ctx.probe && ctx.probe->keeps_mixer_calls())
    ctx.probe->record_mixer_call(MixerCall{mixer, mixer_input.detach(), ctx.without_probe()});
  const auto y = residual(x, mixer->forward(mixer_input, ctx), gamma1);
  return residual(y, channel->forward(norm2->forward(y)), gamma2);
}

torch::Tensor PrenormBlockImpl::residual(const torch::Tensor& x, torch::Tensor branch,
                                         const torch::Tensor& gamma) const {
  if (gamma.defined()) branch = branch * gamma;
  return x + blocklab::drop_path(branch, drop_path_, is_training());
}

MixerState PrenormBlockImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  return mixer->init_state(batch, options);
}

MixerStep PrenormBlockImpl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) {
  MixerStep s = mixer->step(norm1->forward(x_t), state, ctx);
  const auto y = residual(x_t, s.output, gamma1);
  s.output = residual(y, channel->forward(norm2->forward(y)), gamma2);
  return s;
}

const OptionsSchema<PrenormBlockOptions>& prenorm_block_schema() {
  static const auto schema = [] {
    OptionsSchema<PrenormBlockOptions> s;
    BLOCKLAB_OPTION(s, layer_scale, "LayerScale init value (CaiT); default 0 = off").min = 0.0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(block_registry(),
                  BLOCKLAB_ENTRY("prenorm")
                      .summary("pre-norm residual block: mixer then channel mixer, with LayerScale and DropPath")
                      .paper("An Image is Worth 16x16 Words (Dosovitskiy et al., 2020), arXiv:2010.11929; LayerScale: "
                             "Going deeper with Image Transformers (Touvron et al., 2021), arXiv:2103.17239")
                      .equation("x += drop_path(g1 * mixer(LN(x))); x += drop_path(g2 * channel(LN(x)))")
                      .schema(prenorm_block_schema().schema())
                      .example("{layer_scale: 0.1}"),
                  [](const ConfigNode& params, const BlockArgs& args) -> Block {
                    return std::make_shared<PrenormBlockImpl>(args, bind_options(prenorm_block_schema(), params));
                  });

}  // namespace
}  // namespace blocklab
