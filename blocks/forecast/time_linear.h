// time_linear: Linear(L -> P) along the time axis of a series, the map of every LTSF-Linear
// model ("Are Transformers Effective for Time Series Forecasting?", Zeng et al., 2023,
// arXiv:2205.13504, §4): for each channel c,
//   y[:, c] = W x[:, c] + b          W [P, L], b [P]
// shared by all channels (individual = false) or one (W_c, b_c) per channel (individual = true).
// Init: PyTorch's Linear default, W and b ~ U(-1/sqrt(L), 1/sqrt(L)); set_weight fills W.
// Also the window -> horizon weights the paper visualises (weights()).
//
// Shape contract: x [B, L, C] -> y [B, P, C].
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace blocklab {

class TimeLinearImpl : public torch::nn::Module {
 public:
  TimeLinearImpl(std::int64_t lookback, std::int64_t horizon, std::int64_t channels, bool individual);
  torch::Tensor forward(const torch::Tensor& x);
  // Fills every W with `value` (DLinear's init: 1/L, so W x is the window mean).
  void set_weight(double value);
  bool individual() const { return individual_; }

  torch::Tensor weight;  // [P, L], or [C, P, L] when individual
  torch::Tensor bias;    // [P], or [C, P] when individual

 private:
  std::int64_t lookback_, channels_;
  bool individual_;
};
TORCH_MODULE(TimeLinear);

}  // namespace blocklab
