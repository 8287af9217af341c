// forecast: a flatten-linear forecasting head.
//
// Paper: PatchTST, "A Time Series is Worth 64 Words: Long-term Forecasting with Transformers"
// (Nie et al., 2023, arXiv:2211.14730, §3.1, "Flatten + linear head"): the representations of
// all tokens are flattened and mapped linearly to the forecast:
//   y = reshape(W drop(flatten(z)) + b, [horizon, channels]),   z [N, D]
// PatchTST runs one channel per sequence (channel independence), so its W maps N D -> horizon;
// stem/series embeds all channels into each token, so here W maps N D -> horizon x channels.
// On pooled features [B, D] (pool: mean or cls) it is the same map with N = 1.
// Init: W trunc-normal std 0.02, b = 0 (the model's Linear init).
//
// Shape contract: tokens [B, N, D] (pool: none; N fixed at build) or features [B, D]
//   -> forecasts [B, horizon, channels]  (channels = the task's outputs; horizon = the option, or
//   the data's when the option is 0).
#pragma once

#include "blocks/model.h"
#include "registry/options_schema.h"

namespace blocklab {

struct ForecastHeadOptions {
  TORCH_ARG(std::int64_t, horizon) = 0;   // forecast steps; 0 = the data's horizon (default)
  TORCH_ARG(double, drop) = 0.0;          // dropout on the flattened features (default 0)
};

class ForecastHeadImpl : public HeadImpl {
 public:
  ForecastHeadImpl(const HeadArgs& args, const ForecastHeadOptions& options = {});
  torch::Tensor forward(const torch::Tensor& features) override;
  std::vector<std::int64_t> output_dims() const override { return {horizon_, channels_}; }

  torch::nn::Linear fc{nullptr};  // N D -> horizon x channels

 private:
  ForecastHeadOptions options_;
  std::int64_t horizon_, channels_, tokens_;
};
TORCH_MODULE(ForecastHead);

const OptionsSchema<ForecastHeadOptions>& forecast_head_schema();

}  // namespace blocklab
