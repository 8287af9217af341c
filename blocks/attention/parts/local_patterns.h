// The key sets of the local and blocked attentions (wave 4) as LocalPatterns (local_core.h).
// Grids are row-major, height x width; a sequence of L tokens is the grid 1 x L. Built on the
// CPU (int64); local_attend moves them to the device of its inputs.
#pragma once

#include <cstdint>

#include "blocks/attention/parts/local_core.h"

namespace blocklab {

// Neighborhood attention (NATTEN; Hassani et al. 2023, arXiv:2204.07143, and DiNAT, Hassani &
// Shi 2022, arXiv:2209.15001; catalog_000_001 0-27). Per axis of extent L > 1 (an axis of
// extent 1 has kernel 1): dilation d splits the axis into d interleaved sub-sequences (r = i mod
// d, length L_r = ceil((L - r) / d)); query i' = i div d attends to the sub-sequence window
//   non-causal [start, start + k), start = clamp(i' - floor(k/2), 0, L_r - k)  (shifted, not
//              truncated, at the borders: every query has exactly k keys per axis)
//   causal     [max(i' - k + 1, 0), i'], as the first k slots with the later ones not allowed.
// The 2-D window is the product of the two axes'. One group per query (b = 1, m = k^dims);
// requires k odd (non-causal) and k * d <= L.
LocalPattern neighborhood_pattern(std::int64_t height, std::int64_t width, std::int64_t kernel, std::int64_t dilation,
                                  bool causal);

// Window attention (Swin; Liu et al. 2021, arXiv:2103.14030, §3.2): non-overlapping windows of
// window_h x window_w tokens; with a shift, the windows of the grid cyclically shifted by
// (-shift_h, -shift_w), and pairs from different regions of the shifted grid (tokens that only
// meet through the wrap-around) not allowed, as Swin's attention mask. The outputs come back in
// token order (Swin's reverse shift). Requires the grid to be a multiple of the window and
// shift < window.
LocalPattern window_pattern(std::int64_t height, std::int64_t width, std::int64_t window_h, std::int64_t window_w,
                            std::int64_t shift_h = 0, std::int64_t shift_w = 0);

// Grid attention (MaxViT; Tu et al. 2022, arXiv:2204.01697, §3.1): a grid_h x grid_w grid of
// groups, each of the grid_h * grid_w tokens spaced (height / grid_h, width / grid_w) apart:
// sparse, global mixing. Requires the grid to be a multiple of (grid_h, grid_w).
LocalPattern grid_pattern(std::int64_t height, std::int64_t width, std::int64_t grid_h, std::int64_t grid_w);

// Blocked local attention with a halo (HaloNet; Vaswani et al. 2021, arXiv:2103.12731, §2.2;
// catalog_000_001 0-19): queries in non-overlapping block x block blocks, each attending to the
// (block + 2 halo)^2 window around its block. The keys are the grid zero-padded by `halo` on each
// side, (height + 2 halo) x (width + 2 halo) (pad_grid_tokens); key coordinates are those of the
// unpadded grid (negative or past the edge in the padding). timm keeps the zero keys in the
// softmax (logit = bias only); mask_padding = true leaves them out instead.
LocalPattern halo_pattern(std::int64_t height, std::int64_t width, std::int64_t block, std::int64_t halo,
                          bool mask_padding = false);
// x [B, h, height * width, d] -> [B, h, (height + 2 halo) * (width + 2 halo), d], zeros around.
torch::Tensor pad_grid_tokens(const torch::Tensor& x, std::int64_t height, std::int64_t width, std::int64_t halo);

// Axial attention (Ho et al. 2019, arXiv:1912.12180; catalog_000_001 1-17): every token attends
// along its column (axis 0) or its row (axis 1).
LocalPattern axial_pattern(std::int64_t height, std::int64_t width, int axis);

}  // namespace blocklab
