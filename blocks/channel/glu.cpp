#include "blocks/channel/glu.h"

#include "blocks/common/options.h"

namespace blocklab {

GluImpl::GluImpl(std::int64_t dim, const GluOptions& options)
    : options_(options), hidden_(hidden_width(options.ratio(), dim)), act_(activation_by_name(options.activation())) {
  fc1 = register_module("fc1", torch::nn::Linear(torch::nn::LinearOptions(dim, 2 * hidden_).bias(options.bias())));
  fc2 = register_module("fc2", torch::nn::Linear(torch::nn::LinearOptions(hidden_, dim).bias(options.bias())));
}

torch::Tensor GluImpl::forward(const torch::Tensor& x) {
  const double p = options_.drop();
  const auto gate_value = fc1->forward(x).chunk(2, -1);
  auto h = act_(gate_value[0]) * gate_value[1];  // Shazeer 2020 eq. (5)-(6): act(x W1) * (x W3)
  if (p > 0.0) h = torch::dropout(h, p, is_training());
  auto y = fc2->forward(h);
  if (p > 0.0) y = torch::dropout(y, p, is_training());
  return y;
}

const OptionsSchema<GluOptions>& glu_schema() {
  static const auto schema = [] {
    OptionsSchema<GluOptions> s;
    BLOCKLAB_OPTION(s, ratio, "hidden width / dim (default 8/3, the parameters of an mlp of ratio 4)").min = 1e-3;
    declare_activation(s, {"silu", "gelu", "sigmoid", "none"},
                       "gate activation (default silu = SwiGLU; gelu = GEGLU; sigmoid = the original GLU; none = "
                       "the bilinear SGLU of TransNormerLLM)");
    rate(BLOCKLAB_OPTION(s, drop, "dropout after the gating and after the output (default 0)"));
    BLOCKLAB_OPTION(s, bias, "biases on the projections (default true; Shazeer 2020 omits them)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(channel_registry(),
                  BLOCKLAB_ENTRY("glu")
                      .summary("gated linear unit feed-forward network (SwiGLU by default)")
                      .paper("GLU Variants Improve Transformer (Shazeer, 2020), arXiv:2002.05202")
                      .equation("W2 (act(W1 x) * W3 x), hidden width ratio * C")
                      .schema(glu_schema().schema())
                      .example("{ratio: 2}"),
                  [](const ConfigNode& params, std::int64_t dim) -> ChannelMixer {
                    return std::make_shared<GluImpl>(dim, bind_options(glu_schema(), params));
                  });

}  // namespace
}  // namespace blocklab
