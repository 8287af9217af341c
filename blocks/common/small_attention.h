// Softmax attention for short sequences on CPU: a hand-written forward and backward.
//
//   O = softmax(scale * Q K^T [+ bias] [+ causal mask]) V        Vaswani et al. 2017, arXiv:1706.03762, eq. (1)
//
// for q, k, v [B, h, N, d] (any strides), float32 or float64, on CPU. At the token counts of
// small ViTs (N ~ 50, d = 8..64) ATen's CPU kernels spend most of their time in per-block
// overhead: the flash kernel of at::scaled_dot_product_attention works on blocks far larger
// than the problem, and the math path (bmm, softmax, bmm) makes several passes over [B,h,N,N].
// This kernel keeps one head's whole N x N probability matrix in cache and does everything for
// that head in one pass: scores, softmax, P V, and in the backward the five products of the
// softmax-attention gradient. It saves P ([B, h, N', N'], N' = N rounded up to 8) for the
// backward, as the math path does, so its memory is O(B h N^2): meant for short sequences only
// (MultiHeadAttentionImpl uses it up to kSmallAttentionMaxTokens).
//
// Deterministic: each head is computed by one thread in a fixed order (no atomics), so the
// results do not depend on the thread count and repeated calls are bit-identical.
#pragma once

#include <torch/torch.h>

namespace blocklab {

// softmax(scale q k^T + bias) v, token i seeing keys j <= i when causal; q, k, v [B, h, N, d]
// with the same shape, dtype (float32 or float64) and CPU device; bias (optional) an additive
// logit bias broadcastable to [B, h, N, N] ([N, N], [h|1, N, N] or [B|1, h|1, N|1, N]; -inf
// entries get weight 0). Differentiable in q, k, v and the bias (once: the backward is not
// itself differentiable; the bias gradient is dS summed over its broadcast dimensions). The
// output is laid out [B, N, h, d] in memory (a [B, h, N, d] tensor with those strides), so
// that merging the heads is a view.
torch::Tensor small_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                              bool causal, const torch::Tensor& bias = {});

// The longest sequence MultiHeadAttentionImpl sends to small_attention on CPU; SDPA beyond.
// Measured (tests "[.bench]", float32, 1 thread, AMD EPYC with AVX-512, h = 4), ms per call:
//   N   d   B  | forward: small  SDPA | forward+backward: small  SDPA
//   50  8  32  |          0.38   0.89 |                   0.98   3.41
//   50 16 128  |          1.99   4.08 |                   7.03  12.50
//  128 16   8  |          0.71   1.04 |                   1.57   3.53
//  197 16   8  |          1.48   2.04 |                   3.91   6.22
//  197 64   8  |          4.53   5.36 |                  14.39  17.75
//  256 16   4  |          1.63   1.37 |                   3.79   4.57
//  256 64   4  |          4.90   3.86 |                  13.44  14.16
//  512 16   2  |          5.52   2.60 |                   9.27   9.53
// The forward crosses over between N = 197 and 256, forward+backward later (about N = 512 at
// d = 16); the memory saved for the backward, B h N^2 floats, grows quadratically too. Hence
// N <= 200: every ViT up to 224 x 224 with 16 x 16 patches (197 tokens).
constexpr std::int64_t kSmallAttentionMaxTokens = 200;

// True when small_attention accepts these inputs (its conditions above: shapes, dtype, CPU).
bool small_attention_supports(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace blocklab
