#include "blocks/forecast/series_decomp.h"

namespace blocklab {

torch::Tensor moving_average(const torch::Tensor& x, std::int64_t kernel) {
  TORCH_CHECK(x.dim() == 3, "series_decomp: expected x [B, L, C], got ", x.sizes());
  TORCH_CHECK(kernel >= 1, "series_decomp: kernel must be >= 1, got ", kernel);
  const std::int64_t end = (kernel - 1) / 2, front = (kernel - 1) - end;
  const std::int64_t length = x.size(1);
  const torch::Tensor padded =
      torch::cat({x.narrow(1, 0, 1).expand({-1, front, -1}), x, x.narrow(1, length - 1, 1).expand({-1, end, -1})}, 1);
  // AvgPool1d(kernel, stride 1) over time, on [B, C, L + k - 1].
  return torch::avg_pool1d(padded.transpose(1, 2), {kernel}, {1}).transpose(1, 2);
}

Decomposition series_decomp(const torch::Tensor& x, std::int64_t kernel) {
  torch::Tensor trend = moving_average(x, kernel);
  return {x - trend, trend};
}

}  // namespace blocklab
