#include "blocks/forecast/seasonal_layernorm.h"

namespace blocklab {

SeasonalLayerNormImpl::SeasonalLayerNormImpl(std::int64_t dim) {
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
}

torch::Tensor SeasonalLayerNormImpl::forward(const torch::Tensor& x) {
  const torch::Tensor h = norm->forward(x);
  return h - h.mean(1, /*keepdim=*/true);
}

}  // namespace blocklab
