// Mamba's selective scan (S6; Gu & Dao 2023, arXiv:2312.00752, Algorithm 2 and Section 3.3.2),
// fused: per channel d and state n,
//
//   h_t[d, n] = exp(delta_t[d] A[d, n]) h_{t-1}[d, n] + delta_t[d] B_t[n] u_t[d]     (h_{-1} = h0)
//   y_t[d]    = (sum_n C_t[n] h_t[d, n] + D[d] u_t[d]) silu(z_t[d])
//
// (the skip D and the gate z optional, and delta optionally softplus(delta + delta_bias): fused
// as mamba_ssm's selective_scan_fn fuses them)
// with u, delta [B, L, D], A [D, N], B, C [B, L, N]. The fused CPU form reads these and never
// materialises the [B, L, D, N] discretised terms or states: each thread walks the time axis
// once for a block of channels with the state in registers' reach (the hardware-aware idea of
// Section 3.3.2, on a CPU's caches instead of SRAM); its backward walks it back, recomputing the
// states from checkpoints every 64 steps instead of keeping them.
//
//   selective_scan            the fused form; differentiable once in u, delta, A, B, C
//   selective_scan_reference  the official naive scan (mamba_ssm's selective_scan_ref): exp(delta A)
//                             and delta B u materialised [B, L, D, N], then a LibTorch step and
//                             read-out per token: the oracle of the tests and the peer of
//                             `bench mixers`
#pragma once

#include <torch/torch.h>

namespace blocklab {

struct SelectiveScanResult {
  torch::Tensor y;     // [B, L, D]
  // h_{L-1} [B, D, N], the state after the last token (to continue recurrently); the fused form
  // returns it without a gradient.
  torch::Tensor last;
};

// u, delta [B, L, D]; A [D, N]; B, C [B, L, N]; h0 [B, D, N] or undefined (zeros); D [D],
// z [B, L, D] and delta_bias [D] or undefined (none). Off the CPU it runs the reference.
SelectiveScanResult selective_scan(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                                   const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& h0 = {},
                                   const torch::Tensor& D = {}, const torch::Tensor& z = {},
                                   const torch::Tensor& delta_bias = {}, bool delta_softplus = false);
SelectiveScanResult selective_scan_reference(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                                             const torch::Tensor& B, const torch::Tensor& C,
                                             const torch::Tensor& h0 = {}, const torch::Tensor& D = {},
                                             const torch::Tensor& z = {}, const torch::Tensor& delta_bias = {},
                                             bool delta_softplus = false);

// One recurrent step: u_t, delta_t [B, D]; B_t, C_t [B, N]; h [B, D, N] -> (y_t [B, D], h_t).
SelectiveScanResult selective_step(const torch::Tensor& u_t, const torch::Tensor& delta_t, const torch::Tensor& A,
                                   const torch::Tensor& B_t, const torch::Tensor& C_t, const torch::Tensor& h);

}  // namespace blocklab
