// mask/rel-pos-2d: learned relative position bias table (Swin), added to the attention logits.
//
// Paper: "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", Liu et al.,
// 2021, arXiv:2103.14030 (§3.2, "Relative position bias"). Official code:
// microsoft/Swin-Transformer models/swin_transformer.py (WindowAttention:
// relative_position_bias_table, relative_position_index). The same primitive serves MaxViT
// and other windowed attentions (block catalog 002, shared primitives).
//
//   B_h(i, j) = T[(dy + M_h - 1)(2 M_w - 1) + (dx + M_w - 1), h],  (dy, dx) = p_i - p_j
//   logits' = q k^T / sqrt(d) + B_h                                     (AddLogits)
//
// T: [(2 M_h - 1)(2 M_w - 1), heads], trunc-normal std 0.02 at init (Swin). The table covers a
// grid of up to M_h x M_w tokens: `height`/`width` when given, else a square of side
// floor(sqrt(max_tokens)) (which holds any square grid plus a few prefix tokens, e.g. the ViT's
// 7x7 patches with or without a class token). The grid comes from the context at forward;
// a grid larger than the table is an error. Only the offsets a grid uses receive gradients.
// `space: 1d` gives the 1-D form for plain sequences: a (2L - 1) x heads table indexed by
// i - j + L - 1 (T5-style relative bias without T5's log buckets; L = `length`, default
// max_tokens), i.e. the 2-D table of a 1 x L grid. Which table exists is fixed at construction
// (it holds parameters), so there is no `auto`. Prefix tokens (class, registers) get bias 0
// (mask.h).
//
// Shape contract: matrix(N, ctx) -> [h, N, N]. Parameters: (2 M_h - 1)(2 M_w - 1) h.
#pragma once

#include "blocks/common/weight_decay.h"
#include "blocks/common/options.h"
#include "blocks/masks/mask.h"

namespace blocklab {

struct RelPos2dMaskOptions {
  TORCH_ARG(std::string, space) = "2d";  // 2d | 1d (default 2d)
  TORCH_ARG(std::int64_t, height) = 0;   // 2d: largest grid height M_h (default 0: from max_tokens)
  TORCH_ARG(std::int64_t, width) = 0;    // 2d: largest grid width M_w (default 0: from max_tokens)
  TORCH_ARG(std::int64_t, length) = 0;   // 1d: longest sequence L (default 0: max_tokens)
};

class RelPos2dMaskImpl : public AttentionMaskImpl, public DeclaresNoWeightDecay {
 public:
  // The relative-position bias table (as Swin's no_weight_decay_keywords): no decay.
  std::vector<std::string> no_weight_decay() const override { return {"table"}; }
  static constexpr const char* kKey = "mask/rel-pos-2d";
  // A table for grids up to table_height x table_width (1 x L for space 1d).
  RelPos2dMaskImpl(std::int64_t heads, std::int64_t table_height, std::int64_t table_width, bool one_d = false);
  Mode mode() const override { return Mode::AddLogits; }
  bool needs_grid() const override { return !one_d_; }
  torch::Tensor matrix(std::int64_t tokens, const MixerContext& ctx) override;
  std::int64_t table_height() const { return table_h_; }
  std::int64_t table_width() const { return table_w_; }

  torch::Tensor table;  // [(2 M_h - 1)(2 M_w - 1), h]

 private:
  std::int64_t table_h_, table_w_;
  bool one_d_;
};
TORCH_MODULE(RelPos2dMask);

const OptionsSchema<RelPos2dMaskOptions>& rel_pos_2d_mask_schema();

}  // namespace blocklab
