// forecast/dlinear: DLinear, a linear forecaster on a trend / seasonal decomposition.
//
// Paper: "Are Transformers Effective for Time Series Forecasting?" (Zeng et al., 2023,
// arXiv:2205.13504, §4 "DLinear"; models/DLinear.py; shared/blocks catalog C1):
//   (s, t) = series_decomp_k(x),   y = W_s s + b_s + W_t t + b_t
// with W_s, W_t [P, L] shared by the channels or one pair per channel (individual). Init as the
// code: W_s = W_t = (1/L) ones(P, L) (biases: Linear's default), so with zero biases the initial
// forecast is the window mean.
//
// Shape contract: series [B, L, C] -> forecasts [B, P, C].
#pragma once

#include "blocks/forecast/forecaster.h"
#include "blocks/forecast/time_linear.h"

namespace blocklab {

class DLinearImpl : public NetworkImpl {
 public:
  DLinearImpl(const ForecastShape& shape, const LtsfOptions& options);
  torch::Tensor forward(const torch::Tensor& x, AttentionProbe* probe = nullptr,
                        const torch::Tensor& lengths = {}) override;

  TimeLinear seasonal{nullptr}, trend{nullptr};

 private:
  std::int64_t kernel_;
};
TORCH_MODULE(DLinear);

}  // namespace blocklab
