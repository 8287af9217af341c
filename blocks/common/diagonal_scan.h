// The diagonal linear recurrence of selective state space models (Mamba, Gu & Dao 2023,
// arXiv:2312.00752, Algorithm 2: h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t x_t), as a
// primitive: h_t = a_t * h_{t-1} + b_t, element-wise, from h_{-1} = 0.
//
//   diagonal_scan            a fused CPU loop: the rows (every element of a step) are independent,
//                            so they are split over the threads and each walks the time axis once,
//                            in blocks of contiguous rows; its backward is the same loop reversed
//                            (G_t = dh_t + a_{t+1} G_{t+1}; da_t = G_t h_{t-1}, db_t = G_t).
//   diagonal_scan_reference  one step at a time in LibTorch ops: the oracle of the tests and the
//                            peer of `bench mixers`.
// On a GPU, Mamba's kernel also scans in parallel over time; on a CPU with a few cores the
// B x D x N rows of an SSM already give every core a long independent loop.
#pragma once

#include <torch/torch.h>

namespace blocklab {

// a, b [B, L, ...] (time on dimension 1, the same shape) -> h [B, L, ...]. Differentiable once
// (the fused backward is not differentiable again); off the CPU it runs the reference.
torch::Tensor diagonal_scan(const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor diagonal_scan_reference(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace blocklab
