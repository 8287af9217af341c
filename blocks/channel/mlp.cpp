#include "blocks/channel/mlp.h"

#include "blocks/common/options.h"

namespace blocklab {

MlpImpl::MlpImpl(std::int64_t dim, const MlpOptions& options)
    : options_(options), act_(activation_by_name(options.activation())) {
  const auto hidden = hidden_width(options.ratio(), dim);
  fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  const double p = options_.drop();
  auto h = act_(fc1->forward(x));
  if (p > 0.0) h = torch::dropout(h, p, is_training());
  auto y = fc2->forward(h);
  if (p > 0.0) y = torch::dropout(y, p, is_training());
  return y;
}

const OptionsSchema<MlpOptions>& mlp_schema() {
  static const auto schema = [] {
    OptionsSchema<MlpOptions> s;
    BLOCKLAB_OPTION(s, ratio, "hidden width / dim (default 4)").min = 1e-3;
    rate(BLOCKLAB_OPTION(s, drop, "dropout after the activation and after the output (default 0)"));
    declare_activation(s, {"gelu", "relu", "silu"}, "activation between the two layers (default gelu)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(channel_registry(),
                  BLOCKLAB_ENTRY("mlp")
                      .summary("two-layer position-wise feed-forward network")
                      .paper("Attention Is All You Need (Vaswani et al., 2017), arXiv:1706.03762")
                      .equation("W2 drop(act(W1 x + b1)) + b2, hidden width ratio * C")
                      .schema(mlp_schema().schema())
                      .example("{ratio: 2}"),
                  [](const ConfigNode& params, std::int64_t dim) -> ChannelMixer {
                    return std::make_shared<MlpImpl>(dim, bind_options(mlp_schema(), params));
                  });

}  // namespace
}  // namespace blocklab
