// mask/alibi: ALiBi linear distance biases on the attention logits, 2-D on image grids.
//
// Papers: "Train Short, Test Long: Attention with Linear Biases Enables Input Length
// Extrapolation", Press, Smith & Lewis, 2022, arXiv:2108.12409 (slopes: official code
// ofirpress/attention_with_linear_biases, get_slopes); "CROMA: Remote Sensing Representations
// with Contrastive Radar-Optical Masked Autoencoders", Fuller, Millard & Green, 2023,
// arXiv:2311.00566 (2D-ALiBi: official code antofuller/CROMA use_croma.py, get_2dalibi).
//
//   bias_h(i, j) = -m_h ||p_i - p_j||_2        p = (row, col) on the patch grid (CROMA)
//   bias_h(i, j) = -m_h |i - j|                plain sequences (1-D)
//   logits' = q k^T / sqrt(d) + bias_h                                  (AddLogits)
//   m_h = 2^(-8 h / H), h = 1..H for H a power of two; otherwise the slopes of the largest
//   power of two P < H followed by every second slope of 2P (the first H - P of them).
//
// No parameters. The 1-D form is symmetric (|i - j|): Press et al. bias only the causal
// half (j <= i), which is what the symmetric form reduces to under a causal mask. Prefix
// tokens (class, registers) get bias 0 (mask.h); CROMA has no class token.
//
// Shape contract: matrix(N, ctx) -> [h, N, N].
#pragma once

#include <vector>

#include "blocks/common/options.h"
#include "blocks/masks/mask.h"

namespace blocklab {

// The ALiBi head slopes m_1..m_H (Press et al. 2022, get_slopes).
std::vector<double> alibi_slopes(std::int64_t heads);

struct AlibiMaskOptions {
  TORCH_ARG(std::string, space) = "auto";  // auto | 1d | 2d (default auto: 2-D on a grid, else 1-D)
};

class AlibiMaskImpl : public AttentionMaskImpl {
 public:
  static constexpr const char* kKey = "mask/alibi";
  explicit AlibiMaskImpl(std::int64_t heads, const AlibiMaskOptions& options = {});
  Mode mode() const override { return Mode::AddLogits; }
  torch::Tensor matrix(std::int64_t tokens, const MixerContext& ctx) override;

  torch::Tensor slopes;  // buffer [h], float64

 private:
  AlibiMaskOptions options_;
};
TORCH_MODULE(AlibiMask);

const OptionsSchema<AlibiMaskOptions>& alibi_mask_schema();

}  // namespace blocklab
