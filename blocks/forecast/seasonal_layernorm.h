// seasonal_layernorm: Autoformer's LayerNorm for the seasonal part ("my_Layernorm").
//
// Paper: "Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term Series
// Forecasting" (Wu et al., 2021, arXiv:2106.13008; layers/Autoformer_EncDec.py): LayerNorm over
// the channels, then the temporal mean removed, so the output has zero mean over time:
//   x^ = LayerNorm(x),   out[t] = x^[t] - mean_t x^
//
// Shape contract: x [B, L, D] -> [B, L, D].
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace blocklab {

class SeasonalLayerNormImpl : public torch::nn::Module {
 public:
  explicit SeasonalLayerNormImpl(std::int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(SeasonalLayerNorm);

}  // namespace blocklab
