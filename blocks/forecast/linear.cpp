// forecast/linear: the vanilla Linear forecaster of LTSF-Linear.
//
// Paper: "Are Transformers Effective for Time Series Forecasting?" (Zeng et al., 2023,
// arXiv:2205.13504, §4 "Vanilla Linear"; models/Linear.py): one linear layer along time,
//   y = W x + b        per channel, W [P, L] (time_linear.h)
//
// Shape contract: series [B, L, C] -> forecasts [B, P, C].
#include "blocks/common/options.h"
#include "blocks/forecast/forecaster.h"
#include "blocks/forecast/time_linear.h"

namespace blocklab {
namespace {

class LinearForecasterImpl : public NetworkImpl {
 public:
  LinearForecasterImpl(const ForecastShape& s, const LtsfOptions& o)
      : linear(register_module("linear", TimeLinear(s.lookback, s.horizon, s.channels, o.individual()))) {}
  torch::Tensor forward(const torch::Tensor& x, AttentionProbe*, const torch::Tensor&) override {
    return linear->forward(x);
  }
  TimeLinear linear;
};

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(registered_) = register_ltsf<LinearForecasterImpl>(
    "forecast/linear", __FILE__,
    "LTSF-Linear's vanilla Linear: one linear map from the window to the horizon, per channel",
    "y[:, c] = W x[:, c] + b,  W [P, L]", /*with_kernel=*/false);

}  // namespace
}  // namespace blocklab
