// Rotary position embeddings (RoPE): queries and keys rotated by angles proportional to their
// positions, so that the logit q_m . k_n depends on the positions only through m - n.
//
// 1-D: "RoFormer: Enhanced Transformer with Rotary Position Embedding", Su et al., 2021,
// arXiv:2104.09864, eq. (34): the channel pairs (2i, 2i+1) of a head of width d are rotated by
// m theta_i, theta_i = base^(-2i/d), i < d/2 (base 10000).
// 2-D axial: "Rotary Position Embedding for Vision Transformer", Heo et al., 2024,
// arXiv:2403.13298, eq. (10) (RoPE-Axial; official code naver-ai/rope-vit, compute_axial_cis):
// the first d/2 channels are rotated by the column x theta'_i, the last d/2 by the row
// y theta'_i, theta'_i = base^(-4i/d), i < d/4; q_(x,y) . k_(x',y') then depends only on the
// per-axis offsets (x - x', y - y').
//
// Prefix tokens (class, registers) of an image grid are left unrotated (angle 0), as rope-vit
// leaves its class token. In 1-D every token is rotated by its position in the sequence
// (ctx.positions when given, else 0..N-1); a class token at position 0 is unrotated as well.
#pragma once

#include <torch/torch.h>

#include "blocks/layout.h"

namespace blocklab {

// Angles [N, d/2] (float64) of a 1-D rotary embedding for positions [N] (int64); d even.
torch::Tensor rotary_angles_1d(const torch::Tensor& positions, std::int64_t head_dim, double base);
// Angles [N, d/2] of the 2-D axial embedding for the `tokens` tokens of ctx (prefix tokens
// first, then a grid_height x grid_width grid in row-major order; prefix rows are 0); d % 4 == 0.
torch::Tensor rotary_angles_2d(std::int64_t tokens, const MixerContext& ctx, std::int64_t head_dim, double base,
                               const torch::Device& device);
// x [..., N, d] rotated pairwise by angles [N, d/2]: (x_2i, x_2i+1) -> R(angle_i) (x_2i, x_2i+1).
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& angles);

}  // namespace blocklab
