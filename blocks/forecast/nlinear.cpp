// forecast/nlinear: NLinear, a linear forecaster on the window minus its last value.
//
// Paper: "Are Transformers Effective for Time Series Forecasting?" (Zeng et al., 2023,
// arXiv:2205.13504, §4 "NLinear"; models/NLinear.py): against distribution shift,
//   last = x[L-1] (no gradient, as the code's detach),  y = W (x - last) + b + last
// so f(x + c) = f(x) + c for a constant c per channel. W [P, L] (time_linear.h).
//
// Shape contract: series [B, L, C] -> forecasts [B, P, C].
#include "blocks/common/options.h"
#include "blocks/forecast/forecaster.h"
#include "blocks/forecast/time_linear.h"

namespace blocklab {
namespace {

class NLinearImpl : public NetworkImpl {
 public:
  NLinearImpl(const ForecastShape& s, const LtsfOptions& o)
      : linear(register_module("linear", TimeLinear(s.lookback, s.horizon, s.channels, o.individual()))) {}
  torch::Tensor forward(const torch::Tensor& x, AttentionProbe*, const torch::Tensor&) override {
    const torch::Tensor last = x.narrow(1, x.size(1) - 1, 1).detach();
    return linear->forward(x - last) + last;
  }
  TimeLinear linear;
};

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(registered_) =
    register_ltsf<NLinearImpl>("forecast/nlinear", __FILE__,
                               "LTSF-Linear's NLinear: subtract the last value, linear map to the horizon, add it back",
                               "y = W (x - x[L-1]) + b + x[L-1]", /*with_kernel=*/false);

}  // namespace
}  // namespace blocklab
