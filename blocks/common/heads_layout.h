// Heads laid out for element-wise work: the linear mixers' feature maps (phi(q), phi(k)).
//
// A transposed view [B, N, h, d] -> [B, h, N, d] is what the dense core wants (the fused
// kernels take strided inputs), but an element-wise op on that view, and more so its backward
// against a contiguous gradient, runs through strided loops on the CPU. Measured with torch
// 2.11 on the 2-core machine (1 thread, N = 16,384, C = 64, 4 heads): elu 8.0 ms on the view
// vs 1.6 ms contiguous, its backward 33.7 ms vs 0.6 ms. The linear mixers copy their heads
// into [B, h, N, d] once, before the feature maps; the chunked core then reshapes them by
// chunks without another copy.
#pragma once

#include <array>

#include "blocks/layout.h"

namespace blocklab {

// t [B, N, heads * width] -> [B, heads, N, width], contiguous.
inline torch::Tensor heads_first(const torch::Tensor& t, std::int64_t heads, std::int64_t width) {
  return t.view({t.size(0), t.size(1), heads, width}).transpose(1, 2).contiguous();
}

// q, k, v as QkvProjection::split gives them (strided views) -> each contiguous.
inline std::array<torch::Tensor, 3> heads_contiguous(const std::array<torch::Tensor, 3>& qkv) {
  return {qkv[0].contiguous(), qkv[1].contiguous(), qkv[2].contiguous()};
}

}  // namespace blocklab
