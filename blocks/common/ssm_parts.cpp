#include "blocks/common/ssm_parts.h"

#include <cmath>

#include "blocks/common/srms_norm.h"

namespace blocklab {

ShortConvImpl::ShortConvImpl(std::int64_t channels, std::int64_t taps, bool causal) : causal_(causal) {
  TORCH_CHECK(taps >= 1, "ShortConv: taps must be >= 1");
  TORCH_CHECK(causal || taps % 2 == 1, "ShortConv: a centred convolution needs an odd number of taps");
  const double bound = 1.0 / std::sqrt(static_cast<double>(taps));  // torch.nn.Conv1d's default, fan_in = k
  weight = register_parameter("weight", torch::empty({channels, 1, taps}).uniform_(-bound, bound));
  bias = register_parameter("bias", torch::empty({channels}).uniform_(-bound, bound));
}

torch::Tensor ShortConvImpl::forward(const torch::Tensor& x) {
  const auto k = taps(), length = x.size(1);
  const auto padding = causal_ ? k - 1 : (k - 1) / 2;
  const auto y = torch::conv1d(x.transpose(1, 2), weight, bias, /*stride=*/1, padding, /*dilation=*/1,
                               /*groups=*/x.size(2));
  return y.narrow(2, 0, length).transpose(1, 2).contiguous();  // [B, L, E]: the layout every later op reads
}

torch::Tensor ShortConvImpl::init_window(std::int64_t batch, const torch::TensorOptions& options) const {
  return torch::zeros({batch, weight.size(0), taps() - 1}, options);
}

std::pair<torch::Tensor, torch::Tensor> ShortConvImpl::step(const torch::Tensor& x_t, const torch::Tensor& window) {
  TORCH_CHECK(causal_, "ShortConv: only the causal convolution steps");
  const auto inputs = torch::cat({window, x_t.unsqueeze(-1)}, -1);  // [B, E, k]: oldest first
  const auto y = (inputs * weight.squeeze(1)).sum(-1) + bias;
  return {y, inputs.narrow(-1, 1, taps() - 1)};
}

GatedRMSNormImpl::GatedRMSNormImpl(std::int64_t dim, double eps, bool norm_before_gate)
    : eps_(eps), norm_before_gate_(norm_before_gate) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor GatedRMSNormImpl::forward(const torch::Tensor& x, const torch::Tensor& z) {
  if (norm_before_gate_) return srms_norm(x, eps_) * weight * torch::silu(z);
  return srms_norm(x * torch::silu(z), eps_) * weight;
}

torch::Tensor dt_bias_init(std::int64_t n, double dt_min, double dt_max, double dt_floor) {
  const auto dt = torch::exp(torch::rand({n}) * (std::log(dt_max) - std::log(dt_min)) + std::log(dt_min))
                      .clamp_min(dt_floor);
  return dt + torch::log(-torch::expm1(-dt));  // softplus^-1(dt)
}

}  // namespace blocklab
