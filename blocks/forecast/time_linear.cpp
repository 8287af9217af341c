#include "blocks/forecast/time_linear.h"

#include <cmath>

namespace blocklab {

TimeLinearImpl::TimeLinearImpl(std::int64_t lookback, std::int64_t horizon, std::int64_t channels, bool individual)
    : lookback_(lookback), channels_(channels), individual_(individual) {
  TORCH_CHECK(lookback > 0 && horizon > 0 && channels > 0, "time_linear: needs lookback, horizon and channels > 0");
  const std::vector<std::int64_t> per = individual ? std::vector<std::int64_t>{channels} : std::vector<std::int64_t>{};
  std::vector<std::int64_t> w = per, b = per;
  w.insert(w.end(), {horizon, lookback});
  b.push_back(horizon);
  weight = register_parameter("weight", torch::empty(w));
  bias = register_parameter("bias", torch::empty(b));
  const double bound = 1.0 / std::sqrt(static_cast<double>(lookback));
  torch::NoGradGuard no_grad;
  weight.uniform_(-bound, bound);
  bias.uniform_(-bound, bound);
}

void TimeLinearImpl::set_weight(double value) {
  torch::NoGradGuard no_grad;
  weight.fill_(value);
}

torch::Tensor TimeLinearImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 3 && x.size(1) == lookback_ && x.size(2) == channels_, "time_linear: expected x [B, ",
              lookback_, ", ", channels_, "], got ", x.sizes());
  if (!individual_)  // [B, C, L] W^T -> [B, C, P] -> [B, P, C]
    return (torch::matmul(x.transpose(1, 2), weight.t()) + bias).transpose(1, 2);
  // Per channel: [C, B, L] bmm [C, L, P] -> [C, B, P] -> [B, P, C].
  return (torch::bmm(x.permute({2, 0, 1}), weight.transpose(1, 2)) + bias.unsqueeze(1)).permute({1, 2, 0});
}

}  // namespace blocklab
