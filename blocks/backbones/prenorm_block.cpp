#include "blocks/backbones/prenorm_block.h"

#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/common/srms_norm.h"

namespace blocklab {

PrenormBlockImpl::PrenormBlockImpl(std::int64_t dim, TokenMixer mixer_, ChannelMixer channel_, double drop_path,
                                   const PrenormBlockOptions& options)
    : drop_path_(drop_path) {
  TORCH_CHECK(mixer_ && channel_, "prenorm: mixer and channel mixer must be given");
  const auto ln = torch::nn::LayerNormOptions({dim}).eps(1e-6);
  const auto add_norm = [&](const std::string& name, torch::nn::LayerNorm& layer, RepBatchNorm& rep,
                            ProgressiveRepBatchNorm& prep) {
    if (options.norm() == "layernorm") layer = register_module(name, torch::nn::LayerNorm(ln));
    if (options.norm() == "repbn") rep = register_module(name, RepBatchNorm(dim));
    if (options.norm() == "prepbn") prep = register_module(name, ProgressiveRepBatchNorm(dim, options.norm_steps()));
  };
  add_norm("norm1", norm1, rep_norm1, prep_norm1);
  mixer = register_module("mixer", std::move(mixer_));
  add_norm("norm2", norm2, rep_norm2, prep_norm2);
  channel = register_module("channel", std::move(channel_));
  if (options.layer_scale() != 0.0) {
    gamma1 = register_parameter("gamma1", torch::full({dim}, options.layer_scale()));
    gamma2 = register_parameter("gamma2", torch::full({dim}, options.layer_scale()));
  }
  // Registered last, so that blocks without it initialise exactly as before.
  if (!options.attention().is_null())
    attention = register_module("attention",
                                channel_attention_registry().create(options.attention(), ChannelAttentionArgs{dim}));
}

PrenormBlockImpl::PrenormBlockImpl(const BlockArgs& args, const PrenormBlockOptions& options)
    : PrenormBlockImpl(args.dim, mixer_registry().create(args.mixer, mixer_args(args)),
                       channel_registry().create(args.channel, args.dim), args.drop_path, options) {
  if (options.depth_scale() == "inv_sqrt") norm_scale_ = 1.0 / std::sqrt(static_cast<double>(args.layer + 1));
}

torch::Tensor PrenormBlockImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const torch::Tensor mixer_input = normed(1, x);
  if (ctx.probe && ctx.probe->keeps_mixer_calls())
    ctx.probe->record_mixer_call(MixerCall{mixer, mixer_input.detach(), ctx.without_probe()});
  auto mixed = mixer->forward(mixer_input, ctx);
  if (attention) mixed = attend_grid(*attention, mixed, ctx, "prenorm");
  const auto y = residual(x, mixed, gamma1);
  return residual(y, channel->forward(normed(2, y)), gamma2);
}

torch::Tensor PrenormBlockImpl::normed(int which, const torch::Tensor& x) {
  torch::Tensor y;
  if (auto& layer = which == 1 ? norm1 : norm2)
    y = layer->forward(x);
  else if (auto& rep = which == 1 ? rep_norm1 : rep_norm2)
    y = rep->forward(x);
  else if (auto& prep = which == 1 ? prep_norm1 : prep_norm2)
    y = prep->forward(x);
  else
    y = srms_norm(x);
  return norm_scale_ == 1.0 ? y : y * norm_scale_;
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
  TORCH_CHECK(!attention, "prenorm: a channel attention pools over the whole grid, so the block has no recurrent form");
  MixerStep s = mixer->step(normed(1, x_t), state, ctx);
  const auto y = residual(x_t, s.output, gamma1);
  s.output = residual(y, channel->forward(normed(2, y)), gamma2);
  return s;
}

const OptionsSchema<PrenormBlockOptions>& prenorm_block_schema() {
  static const auto schema = [] {
    OptionsSchema<PrenormBlockOptions> s;
    BLOCKLAB_OPTION(s, layer_scale, "LayerScale init value (CaiT); default 0 = off").min = 0.0;
    s.choice(
        "norm", {"layernorm", "srms", "repbn", "prepbn"},
        "the norm before each branch: layernorm, srms (TransNormerLLM's SRMSNorm, no parameters), repbn (SLAB's "
        "BN + alpha x) or prepbn (LN handed over to repbn over norm_steps training forwards; non-causal models) "
        "(default layernorm)",
        [](PrenormBlockOptions& o, const std::string& v) { o.norm(v); },
        [](const PrenormBlockOptions& o) { return o.norm(); });
    BLOCKLAB_OPTION(s, norm_steps, "prepbn: training forwards over which LN is replaced by RepBN (default 60000)").min =
        1;
    s.choice(
        "depth_scale", {"none", "inv_sqrt"},
        "inv_sqrt: LayerNorm Scaling (Sun et al. 2025): both norms' outputs times 1/sqrt(layer + 1) (default none)",
        [](PrenormBlockOptions& o, const std::string& v) { o.depth_scale(v); },
        [](const PrenormBlockOptions& o) { return o.depth_scale(); });
    s.component("attention", "channel-attention", "",
                "channel attention on the token mixer's output over the grid tokens, e.g. {type: channel/eca} "
                "(default none)");
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
                      .equation("x += drop_path(g1 * mixer(N(x))); x += drop_path(g2 * channel(N(x))), N = LayerNorm "
                                "or SRMSNorm")
                      .schema(prenorm_block_schema().schema())
                      .example("{layer_scale: 0.1}"),
                  [](const ConfigNode& params, const BlockArgs& args) -> Block {
                    auto options = bind_options(prenorm_block_schema(), params);
                    if (const ConfigNode* attention = params.find("attention"); attention && !attention->is_null())
                      options.attention(*attention);
                    return std::make_shared<PrenormBlockImpl>(args, options);
                  });

}  // namespace
}  // namespace blocklab
