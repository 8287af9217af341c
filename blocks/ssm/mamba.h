// ssm/mamba: the Mamba mixer, a selective state space model (S6).
//
// Paper: "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", Gu & Dao, 2023,
// arXiv:2312.00752, Algorithm 2 and Section 3.4 (the block), Section 3.6 (the initialisation);
// official code state-spaces/mamba mamba_ssm/modules/mamba_simple.py.
//   [u, z] = x W_in                          (C -> 2E, no bias; E = expand C)
//   u = SiLU(ShortConv_causal(u))            (depthwise, d_conv taps, with bias)
//   [d, B, C] = u W_x                        (E -> R + 2N, no bias; R = dt_rank)
//   delta = softplus(d W_dt + b_dt)          (R -> E; b_dt: softplus(b_dt) log-uniform in [dt_min, dt_max])
//   A = -exp(A_log)                          (A_log [E, N] = log(1..N) per channel: S4D-real)
//   h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,  y_t = C_t h_t + D u_t        (Algorithm 2)
//   out = (y * SiLU(z)) W_out                (E -> C, no bias)
// Causal only (a forward ignores ctx.causal = false); recurrent: the state is the last d_conv - 1
// conv inputs [B, E, d_conv - 1] and h [B, E, N], constant in N.
//
// Shape contract: x [B, N, C] -> [B, N, C].
#pragma once

#include <string>

#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/common/selective_scan.h"
#include "blocks/common/ssm_parts.h"
#include "blocks/common/weight_decay.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct MambaOptions {
  TORCH_ARG(std::int64_t, d_state) = 16;
  TORCH_ARG(std::int64_t, expand) = 2;
  TORCH_ARG(std::int64_t, d_conv) = 4;
  TORCH_ARG(std::int64_t, dt_rank) = 0;  // 0: ceil(dim / 16)
  TORCH_ARG(double, dt_min) = 1e-3;
  TORCH_ARG(double, dt_max) = 0.1;
  TORCH_ARG(double, dt_init_floor) = 1e-4;
  TORCH_ARG(double, dt_scale) = 1.0;
  TORCH_ARG(std::string, scan) = "fused";  // fused | reference
};

class MambaImpl : public TokenMixerImpl, public DeclaresNoWeightDecay, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "ssm/mamba";
  MambaImpl(std::int64_t dim, const MambaOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  // {conv window [B, E, d_conv - 1], h [B, E, N]}, zeros.
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;
  std::vector<std::string> no_weight_decay() const override { return {"A_log"}; }

  // A = -exp(A_log) [E, N].
  torch::Tensor A() const { return -torch::exp(A_log); }

  torch::nn::Linear in_proj{nullptr}, x_proj{nullptr}, dt_proj{nullptr}, out_proj{nullptr};
  ShortConv conv{nullptr};
  torch::Tensor A_log;  // [E, N]
  torch::Tensor D;      // [E]

 private:
  // The input-dependent SSM parameters of the conv output u [..., E]: delta [..., E], B, C [..., N].
  // delta_input: x W_dt before its bias and softplus (delta = softplus(delta_input + b_dt); the
  // fused scan applies both itself).
  struct Selection {
    torch::Tensor delta_input, B, C;
  };
  Selection select(const torch::Tensor& u);
  // (y + D u) * SiLU(z), projected out.
  torch::Tensor output(const torch::Tensor& y, const torch::Tensor& u, const torch::Tensor& z);

  std::int64_t inner_, state_dim_, dt_rank_;
  bool fused_;
};
TORCH_MODULE(Mamba);

const OptionsSchema<MambaOptions>& mamba_schema();

}  // namespace blocklab
