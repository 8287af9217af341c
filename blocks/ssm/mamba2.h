// ssm/mamba2: the Mamba-2 mixer, state space duality (SSD).
//
// Paper: "Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured
// State Space Duality", Dao & Gu, 2024, arXiv:2405.21060, Section 7 (the block, Figure 6) and
// Sections 6-7 (SSD); official code state-spaces/mamba mamba_ssm/modules/mamba2.py and
// mamba2_simple.py (one group; the defaults of mamba2.py).
//   [z, xBC, dt] = x W_in                       (C -> E + (E + 2N) + H, no bias; E = expand C)
//   [x, B, C] = SiLU(ShortConv_causal(xBC))     (depthwise, d_conv taps, with bias)
//   dt = softplus(dt + dt_bias)  [B, L, H];  A_h = -exp(A_log_h), A_log_h = log U[A_init_min, A_init_max]
//   per head h (P = headdim channels, H = E / P heads; A scalar times identity):
//     h_t = exp(dt_t A_h) h_{t-1} + dt_t B_t x_t^T,  y_t = C_t^T h_t + D_h x_t
//   i.e. y = M x with the semiseparable M_ij = C_i . B_j dt_j exp(A_h sum_{j<l<=i} dt_l) (j <= i)
//   plus D_h on the diagonal (mixing_matrix)
//   out = GatedRMSNorm(y, z) W_out              (RMSNorm(y * SiLU(z)) w: norm after the gate, eps 1e-5)
// Causal only; recurrent: the state is the last d_conv - 1 conv inputs [B, E + 2N, d_conv - 1] and
// h [B, H, N, P], constant in N.
//
// Shape contract: x [B, N, C] -> [B, N, C]; expand C % headdim == 0.
#pragma once

#include <string>

#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/common/ssm_parts.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct Mamba2Options {
  TORCH_ARG(std::int64_t, d_state) = 128;
  TORCH_ARG(std::int64_t, expand) = 2;
  TORCH_ARG(std::int64_t, headdim) = 64;
  TORCH_ARG(std::int64_t, d_conv) = 4;
  TORCH_ARG(double, A_init_min) = 1.0;
  TORCH_ARG(double, A_init_max) = 16.0;
  TORCH_ARG(double, dt_min) = 1e-3;
  TORCH_ARG(double, dt_max) = 0.1;
  TORCH_ARG(double, dt_init_floor) = 1e-4;
  TORCH_ARG(double, norm_eps) = 1e-5;
  TORCH_ARG(std::string, form) = "chunked";  // chunked | parallel
  TORCH_ARG(std::int64_t, chunk) = 256;
};

class Mamba2Impl : public TokenMixerImpl, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "ssm/mamba2";
  Mamba2Impl(std::int64_t dim, const Mamba2Options& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  // {conv window [B, E + 2N, d_conv - 1], h [B, H, N, P]}, zeros.
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;

  // The SSD core's inputs for x [B, L, C]: the gate z [B, L, E], the heads' inputs x [B, L, H, P],
  // dt [B, L, H] (after softplus), B and C [B, L, N].
  struct Inner {
    torch::Tensor z, x, dt, B, C;
  };
  Inner inner(const torch::Tensor& x);
  // The core y [B, L, H, P] = SSD(x) + D x of the configured form.
  torch::Tensor core(const Inner& in) const;
  // The matrix M [B, H, L, L] of the core, y[:, :, h] = M[:, h] x[:, :, h]: SSD's semiseparable
  // matrix plus D_h on the diagonal (Section 3's matrix view; the probe draws it).
  torch::Tensor mixing_matrix(const torch::Tensor& x);
  torch::Tensor matrix_of(const Inner& in) const;

  torch::Tensor A() const { return -torch::exp(A_log); }  // [H]
  std::int64_t heads() const { return heads_; }

  torch::nn::Linear in_proj{nullptr}, out_proj{nullptr};
  ShortConv conv{nullptr};
  GatedRMSNorm norm{nullptr};
  torch::Tensor dt_bias;  // [H]
  torch::Tensor A_log;    // [H]
  torch::Tensor D;        // [H]

 private:
  // The conv output xBC [..., E + 2N] split, and the raw dt [..., H] -> the inner terms.
  Inner split(const torch::Tensor& z, const torch::Tensor& xbc, const torch::Tensor& dt) const;

  std::int64_t inner_, state_dim_, headdim_, heads_, chunk_;
  std::string form_;
};
TORCH_MODULE(Mamba2);

const OptionsSchema<Mamba2Options>& mamba2_schema();

}  // namespace blocklab
