#include "blocks/channel_attention/squeeze_excitation.h"

#include "blocks/common/options.h"

namespace blocklab {

SqueezeExcitationImpl::SqueezeExcitationImpl(std::int64_t channels, const SqueezeExcitationOptions& o) {
  const auto hidden = o.hidden() > 0 ? o.hidden() : std::max<std::int64_t>(1, channels / o.reduction());
  reduce = register_module("reduce", torch::nn::Linear(channels, hidden));
  expand = register_module("expand", torch::nn::Linear(hidden, channels));
}

torch::Tensor SqueezeExcitationImpl::gates(const torch::Tensor& x) {
  return torch::sigmoid(expand->forward(torch::relu(reduce->forward(global_average(x)))));
}

torch::Tensor SqueezeExcitationImpl::forward(const torch::Tensor& x) { return scale_channels(x, gates(x)); }

namespace {

const OptionsSchema<SqueezeExcitationOptions>& squeeze_excitation_schema() {
  static const auto schema = [] {
    OptionsSchema<SqueezeExcitationOptions> s;
    BLOCKLAB_OPTION(s, reduction, "reduction r: hidden width max(1, C / r) (paper: 16; default 16)").min = 1;
    BLOCKLAB_OPTION(s, hidden, "hidden width, overriding reduction (default 0: C / reduction)").min = 0;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(
    channel_attention_registry(),
    BLOCKLAB_ENTRY(SqueezeExcitationImpl::kKey)
        .summary("squeeze-and-excitation: a per-channel sigmoid gate from the pooled channels (the baseline)")
        .paper("Squeeze-and-Excitation Networks (Hu, Shen & Sun, 2018), arXiv:1709.01507")
        .equation("out = x ⊙ sigmoid(W_2 ReLU(W_1 GAP(x))), W_1: C -> C/r")
        .schema(squeeze_excitation_schema().schema())
        .example("{reduction: 4}"),
    [](const ConfigNode& params, const ChannelAttentionArgs& args) -> ChannelAttention {
      return std::make_shared<SqueezeExcitationImpl>(args.channels, bind_options(squeeze_excitation_schema(), params));
    });

}  // namespace
}  // namespace blocklab
