// Mamba-2's state space duality (SSD; Dao & Gu 2024, arXiv:2405.21060, Sections 3-6): the
// selective SSM whose A is a scalar times the identity per head,
//
//   h_t = exp(dt_t A_h) h_{t-1} + dt_t B_t x_t^T      (h [N, P] per head)
//   y_t = C_t^T h_t
//
// is masked linear attention with per-token decays: q = C, k = dt B, v = x and
// log a_t = dt_t A_h, i.e. y = (L o (C B^T)) (dt x) with L the 1-semiseparable mask. It runs on
// the linear attention core (blocks/attention/parts/linear_core.h): chunked (SSD's block
// decomposition: quadratic inside a chunk, the state across chunks), parallel (the explicit
// semiseparable matrix, the oracle) or one recurrent step.
//
// Shapes: x [B, L, H, P], dt [B, L, H] (after softplus), A [H] (negative), B, C [B, L, N] (one
// group, shared by the heads) -> y [B, L, H, P].
#pragma once

#include <torch/torch.h>

#include <string>

namespace blocklab {

torch::Tensor ssd(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& B,
                  const torch::Tensor& C, const std::string& form, std::int64_t chunk);

// The semiseparable matrix M [B, H, L, L] with y = M x per head: M_ij = C_i . B_j dt_j
// prod_{j < l <= i} exp(dt_l A) for j <= i, else 0 (Mamba-2's matrix view; the probe draws it).
torch::Tensor ssd_matrix(const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& B,
                         const torch::Tensor& C);

// One step: x_t [B, H, P], dt_t [B, H], B_t, C_t [B, N], state [B, H, N, P] -> (y_t [B, H, P], state).
std::pair<torch::Tensor, torch::Tensor> ssd_step(const torch::Tensor& x_t, const torch::Tensor& dt_t,
                                                 const torch::Tensor& A, const torch::Tensor& B_t,
                                                 const torch::Tensor& C_t, const torch::Tensor& state);

}  // namespace blocklab
