// mask/retnet-decay: RetNet's exponential decay, 2-D Manhattan on image grids (RMT).
//
// Papers: "Retentive Network: A Successor to Transformer for Large Language Models", Sun et
// al., 2023, arXiv:2307.08621 (decay D, per-head gamma_h = 1 - 2^(-5-h)); "RMT: Retentive
// Networks Meet Vision Transformers", Fan et al., 2024, arXiv:2309.11523 (Manhattan
// Self-Attention; official code qhfan/RMT classfication_release/RMT.py: RetNetRelPos2d,
// VisionRetentionAll).
//
//   1-D (RetNet):  D_ij = gamma_h^(i - j) for i >= j, 0 for i < j   (causal decay)
//   2-D (RMT):     D_ij = gamma_h^(|x_i - x_j| + |y_i - y_j|)
//   apply: logits (default, RMT's official code)  A = softmax(q k^T / sqrt(d) + log D)  (AddLogits)
//                  = rows of softmax(q k^T / sqrt(d)) ⊙ D renormalised to sum 1
//   apply: weights (the RMT paper's equation)      A = softmax(q k^T / sqrt(d)) ⊙ D     (MultiplyWeights)
//
// The RMT paper writes MaSA as (Softmax(Q K^T) ⊙ D^2d) V, but its official code adds the
// log-decay |Δ|_1 log(gamma) to the logits before the softmax (VisionRetentionAll), which is the
// paper's product with rows renormalised; we follow the code by default and offer the
// paper's form as `apply: weights` (rows then sum to <= 1). In 1-D, log D is -inf above the
// diagonal, so with apply: logits the mask makes the mixer causal on its own; apply: weights
// zeroes the future weights but its softmax normaliser still sums over future keys, so it
// needs ctx.causal to be causal (`bidirectional: true` gives gamma^|i - j| instead, RMT's
// per-axis 1-D decay). Gamma schedules: retnet (default,
// 1 - 2^(-5-h), h = 0..H-1), rmt (1 - 2^(-initial - heads_range h / H), RMT's stage settings,
// default 2 and 4), or an explicit per-head list `gammas`. Prefix tokens (class, registers) are
// left alone (D = 1, bias 0; mask.h). No parameters.
//
// Shape contract: matrix(N, ctx) -> [h, N, N]: log D (apply: logits) or D (apply: weights).
#pragma once

#include <vector>

#include "blocks/common/options.h"
#include "blocks/masks/mask.h"

namespace blocklab {

// RetNet's gamma_h = 1 - 2^(-5-h), h = 0..H-1 (Sun et al. 2023, §3.1 / torchscale).
std::vector<double> retnet_gammas(std::int64_t heads);
// RMT's gamma_h = 1 - 2^(-initial - heads_range h / H), h = 0..H-1 (qhfan/RMT RetNetRelPos2d).
std::vector<double> rmt_gammas(std::int64_t heads, double initial, double heads_range);

struct RetnetDecayMaskOptions {
  TORCH_ARG(std::string, schedule) = "retnet";  // retnet | rmt (default retnet)
  TORCH_ARG(double, initial) = 2.0;             // rmt schedule: initial value (default 2)
  TORCH_ARG(double, heads_range) = 4.0;         // rmt schedule: heads range (default 4)
  TORCH_ARG(std::vector<double>, gammas) = {};  // explicit per-head gammas in (0, 1] (default none)
  TORCH_ARG(std::string, space) = "auto";       // auto | 1d | 2d (default auto)
  TORCH_ARG(std::string, apply) = "logits";     // logits | weights (default logits)
  TORCH_ARG(bool, bidirectional) = false;       // 1-D: gamma^|i-j| instead of causal (default false)
};

class RetnetDecayMaskImpl : public AttentionMaskImpl {
 public:
  static constexpr const char* kKey = "mask/retnet-decay";
  explicit RetnetDecayMaskImpl(std::int64_t heads, const RetnetDecayMaskOptions& options = {});
  Mode mode() const override {
    return options_.apply() == "weights" ? Mode::MultiplyWeights : Mode::AddLogits;
  }
  torch::Tensor matrix(std::int64_t tokens, const MixerContext& ctx) override;
  // log D [h, N, N] (-inf where D = 0) and D [h, N, N], float64.
  torch::Tensor log_decay(std::int64_t tokens, const MixerContext& ctx);
  torch::Tensor decay(std::int64_t tokens, const MixerContext& ctx) { return log_decay(tokens, ctx).exp(); }
  const RetnetDecayMaskOptions& options() const { return options_; }

  torch::Tensor gammas;  // buffer [h], float64

 private:
  RetnetDecayMaskOptions options_;
};
TORCH_MODULE(RetnetDecayMask);

const OptionsSchema<RetnetDecayMaskOptions>& retnet_decay_mask_schema();

}  // namespace blocklab
