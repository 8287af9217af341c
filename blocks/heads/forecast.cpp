#include "blocks/heads/forecast.h"

#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

ForecastHeadImpl::ForecastHeadImpl(const HeadArgs& args, const ForecastHeadOptions& options)
    : options_(options),
      horizon_(options.horizon() > 0 ? options.horizon() : args.horizon),
      channels_(args.outputs),
      tokens_(args.tokens) {
  TORCH_CHECK(args.in_dim > 0 && args.outputs > 0, "forecast head: needs the feature width and the channels");
  TORCH_CHECK(horizon_ > 0, "forecast head: needs a horizon (set head.horizon, or use a series dataset)");
  const std::int64_t in_features = std::max<std::int64_t>(tokens_, 1) * args.in_dim;
  fc = register_module("fc", torch::nn::Linear(in_features, horizon_ * channels_));
  torch::NoGradGuard no_grad;
  trunc_normal_(fc->weight, 0.02);
  fc->bias.zero_();
}

torch::Tensor ForecastHeadImpl::forward(const torch::Tensor& features) {
  const bool every_token = features.dim() == 3;
  TORCH_CHECK(every_token ? tokens_ > 0 && features.size(1) == tokens_ : features.dim() == 2 && tokens_ == 0,
              "forecast head: built for ", tokens_ > 0 ? "tokens [B, " + std::to_string(tokens_) + ", D]" : "features [B, D]",
              ", got ", features.sizes());
  torch::Tensor x = every_token ? features.flatten(1) : features;
  if (options_.drop() > 0.0) x = torch::dropout(x, options_.drop(), is_training());
  return fc->forward(x).view({features.size(0), horizon_, channels_});
}

const OptionsSchema<ForecastHeadOptions>& forecast_head_schema() {
  static const auto schema = [] {
    OptionsSchema<ForecastHeadOptions> s;
    BLOCKLAB_OPTION(s, horizon, "forecast steps; 0 = the data's horizon (default)").min = 0;
    rate(BLOCKLAB_OPTION(s, drop, "dropout on the flattened features (default 0)"));
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(head_registry(),
                  BLOCKLAB_ENTRY("forecast")
                      .summary("flatten-linear forecasting head: every token's features to horizon x channels")
                      .paper("A Time Series is Worth 64 Words: Long-term Forecasting with Transformers "
                             "(Nie et al., 2023), arXiv:2211.14730")
                      .equation("y = reshape(W drop(flatten(z)) + b, [horizon, channels])")
                      .schema(forecast_head_schema().schema())
                      .example("{horizon: 6}"),
                  [](const ConfigNode& params, const HeadArgs& args) -> Head {
                    const auto options = bind_options(forecast_head_schema(), params);
                    if (options.horizon() == 0 && args.horizon == 0)
                      config_fail(params, "horizon", "the forecast head needs a horizon: the data do not give one",
                                  {"set head.horizon, or use a series dataset (dataset.horizon)"});
                    return std::make_shared<ForecastHeadImpl>(args, options);
                  });

}  // namespace
}  // namespace blocklab
