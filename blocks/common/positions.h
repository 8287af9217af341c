// Fixed position tables shared by backbones.
//
// sincos_2d_positions: the 2-D sine-cosine table of MAE (He et al. 2021, "Masked Autoencoders
// Are Scalable Vision Learners", arXiv:2111.06377, get_2d_sincos_pos_embed in its official
// code), after the 1-D table of Vaswani et al. 2017 (arXiv:1706.03762, §3.5). Half of the
// channels encode the column, half the row; each half is [sin(p w_k), cos(p w_k)] with
// w_k = 1 / 10000^(k / (D/4)), k < D/4. Prefix (class) tokens get zero rows, as in MAE.
//
// Shape: [1, prefix + grid_h * grid_w, dim], tokens in row-major grid order; dim % 4 == 0.
#pragma once

#include <torch/torch.h>

namespace blocklab {

torch::Tensor sincos_2d_positions(std::int64_t dim, std::int64_t grid_h, std::int64_t grid_w,
                                  std::int64_t prefix_tokens = 0);

}  // namespace blocklab
