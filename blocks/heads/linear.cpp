#include "blocks/heads/linear.h"

#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

LinearHeadImpl::LinearHeadImpl(std::int64_t in_dim, std::int64_t outputs, const LinearHeadOptions& options)
    : options_(options), outputs_(outputs) {
  if (options.tie()) {
    bias = register_parameter("bias", torch::zeros({outputs}));
    return;
  }
  fc = register_module("fc", torch::nn::Linear(in_dim, outputs));
  torch::NoGradGuard no_grad;
  if (options.init_zero())
    fc->weight.zero_();
  else
    trunc_normal_(fc->weight, 0.02);
  fc->bias.zero_();
}

void LinearHeadImpl::tie(const torch::Tensor& embedding) {
  TORCH_CHECK(options_.tie() && embedding.dim() == 2 && embedding.size(0) == bias.size(0),
              "linear head: tie needs an embedding [", bias.size(0), ", D], got ", embedding.sizes());
  tied = embedding;
}

torch::Tensor LinearHeadImpl::forward(const torch::Tensor& features) {
  const double p = options_.drop();
  const torch::Tensor x = p > 0.0 ? torch::dropout(features, p, is_training()) : features;
  if (!options_.tie()) return fc->forward(x);
  TORCH_CHECK(tied.defined(), "linear head: tie is on but no embedding was tied (build it within a model)");
  return torch::nn::functional::linear(x, tied, bias);
}

const OptionsSchema<LinearHeadOptions>& linear_head_schema() {
  static const auto schema = [] {
    OptionsSchema<LinearHeadOptions> s;
    rate(BLOCKLAB_OPTION(s, drop, "dropout on the features before the linear layer (default 0)"));
    BLOCKLAB_OPTION(s, init_zero, "zero weights and bias at init (default false: trunc-normal std 0.02)");
    BLOCKLAB_OPTION(s, tie, "weight = the token stem's embedding, for language models (default false)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(head_registry(),
                  BLOCKLAB_ENTRY("linear")
                      .summary("linear head: one Linear layer from features to outputs")
                      .paper("An Image is Worth 16x16 Words (Dosovitskiy et al., 2020), arXiv:2010.11929")
                      .equation("W drop(f) + b")
                      .schema(linear_head_schema().schema())
                      .example("{drop: 0.1}"),
                  [](const ConfigNode& params, const HeadArgs& args) -> Head {
                    return std::make_shared<LinearHeadImpl>(args.in_dim, args.outputs,
                                                            bind_options(linear_head_schema(), params));
                  });

}  // namespace
}  // namespace blocklab
