// Parts shared by the state space and matrix mixers (Mamba, Mamba-2, Hydra, the matrix-mixer
// family): the short depthwise convolution in front of the scan, the gated RMSNorm after it, and
// the initialisation of the step size Delta.
//
// - ShortConv: a depthwise Conv1d over time, x [B, L, E] -> [B, L, E], k taps, with bias.
//   causal (Mamba, Mamba-2: d_conv = 4, padding k - 1, the first L outputs) or centred (Hydra:
//   d_conv = 7, padding (k - 1) / 2). The causal one also steps: its state is the last k - 1
//   inputs [B, E, k - 1]. Initialised as torch.nn.Conv1d (uniform +-1/sqrt(k)).
// - GatedRMSNorm (Mamba-2's RMSNormGated, Dao & Gu 2024, arXiv:2405.21060): with gate z,
//   norm before the gate:  RMSNorm(x) * w * SiLU(z)      (Hydra)
//   norm after the gate:   RMSNorm(x * SiLU(z)) * w      (Mamba-2's default)
//   RMSNorm(x) = x / sqrt(mean(x^2) + eps) over the last dimension, w initialised to 1.
// - dt_bias_init: Mamba's Delta initialisation (arXiv:2312.00752, Section 3.6 and the official
//   mamba_simple.py): dt = exp(U[log dt_min, log dt_max]), floored at dt_floor, stored as the
//   inverse of softplus so that softplus(dt_bias) = dt at initialisation.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace blocklab {

class ShortConvImpl : public torch::nn::Module {
 public:
  ShortConvImpl(std::int64_t channels, std::int64_t taps, bool causal);
  torch::Tensor forward(const torch::Tensor& x);  // [B, L, E] -> [B, L, E]
  // Causal only: x_t [B, E] and the last k - 1 inputs [B, E, k - 1] -> (y_t [B, E], next window).
  std::pair<torch::Tensor, torch::Tensor> step(const torch::Tensor& x_t, const torch::Tensor& window);
  torch::Tensor init_window(std::int64_t batch, const torch::TensorOptions& options) const;
  std::int64_t taps() const { return weight.size(-1); }

  torch::Tensor weight;  // [E, 1, k]
  torch::Tensor bias;    // [E]

 private:
  bool causal_;
};
TORCH_MODULE(ShortConv);

class GatedRMSNormImpl : public torch::nn::Module {
 public:
  GatedRMSNormImpl(std::int64_t dim, double eps, bool norm_before_gate);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& z);

  torch::Tensor weight;  // [dim]

 private:
  double eps_;
  bool norm_before_gate_;
};
TORCH_MODULE(GatedRMSNorm);

// [n] values whose softplus is log-uniform in [dt_min, dt_max] (floored at dt_floor).
torch::Tensor dt_bias_init(std::int64_t n, double dt_min = 1e-3, double dt_max = 0.1, double dt_floor = 1e-4);

}  // namespace blocklab
