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
  auto branch = mixer->forward(mixer_input, ctx);
  if (gamma1.defined()) branch = branch * gamma1;
  auto y = x + blocklab::drop_path(branch, drop_path_, is_training());
  branch = channel->forward(norm2->forward(y));
  if (gamma2.defined()) branch = branch * gamma2;
  return y + blocklab::drop_path(branch, drop_path_, is_training());
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
