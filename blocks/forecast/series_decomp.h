// series_decomp: a series split into a trend (moving average) and a seasonal part (the rest).
//
// Paper: "Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term Series
// Forecasting" (Wu et al., 2021, arXiv:2106.13008, eq. 1), as used by DLinear ("Are Transformers
// Effective for Time Series Forecasting?", Zeng et al., 2023, arXiv:2205.13504). Padding in the
// FEDformer form (shared/blocks catalog C1): replicate x[0] f = (k-1) - floor((k-1)/2) times in
// front and x[L-1] e = floor((k-1)/2) times at the end, then
//   trend[t] = (1/k) sum_{u=0}^{k-1} x_pad[t + u],   seasonal = x - trend
// (identical to DLinear.py's padding for odd k; for even k that form loses a step). No parameters.
//
// Shape contract: x [B, L, C] -> (seasonal, trend), both [B, L, C]; any k >= 1.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <utility>

namespace blocklab {

// The moving average of x [B, L, C] over time, with the replicate padding above.
torch::Tensor moving_average(const torch::Tensor& x, std::int64_t kernel);

struct Decomposition {
  torch::Tensor seasonal, trend;  // [B, L, C]
};
Decomposition series_decomp(const torch::Tensor& x, std::int64_t kernel);

}  // namespace blocklab
