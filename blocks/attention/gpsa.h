// attention/gpsa: gated positional self-attention (ConViT).
//
// Paper: "ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases",
// d'Ascoli et al., 2021, arXiv:2103.10697 (GPSA, eq. for the gated attention and the local
// initialisation); official code facebookresearch/convit, convit.py (GPSA).
// Per head h, for grid tokens (patches):
//   content     P^c = softmax_j(q_i . k_j / sqrt(d))
//   positional  P^p = softmax_j(r_ij . w_h + b_h),  r_ij = (dx, dy, dx^2 + dy^2) of key j minus
//               query i on the patch grid (x = column, y = row); w_h, b_h: Linear(3 -> heads)
//   gated       A = (1 - sigma(lambda_h)) P^c + sigma(lambda_h) P^p,  A <- A / sum_j A
// Local init (locality_strength alpha, default 1): W_v = I; with s = floor(sqrt(heads)) and
// c = (s-1)/2 (s even) or s//2 (s odd), head p = h1 + s h2 (h1, h2 < s) gets
// w_p = alpha (2 (h2 - c), 2 (h1 - c), -1), b_p = 0, so that P^p_p ∝ exp(-alpha |delta - D_p|^2)
// peaks at the offset D_p = (h2 - c, h1 - c): one tap of an s x s convolution. Heads beyond s^2
// keep the default init (trunc-normal 0.02), as in the code (which then scales every w by alpha).
// The gates lambda_h start at 1 (sigma(1) = 0.73 on position).
//
// Prefix tokens (class/register tokens) have no grid position. ConViT concatenates its class
// token only after the GPSA layers; here the context may hold prefix tokens, and they get
// content attention only: a prefix query's row is P^c, and prefix keys get no positional
// weight (P^p is over grid keys). Rows still sum to 1. A plain sequence (no grid in the
// context) is taken as a 1 x N grid.
//
// Parameters: the MHSA's (q/k/v as one Linear C -> 3C; ConViT's qk and v Linears are the same
// weights split; qkv_bias defaults to false as in ConViT) + 4 heads (w, b) + heads (lambda).
// Note: `vit` re-initialises every Linear after building its blocks (timm), which replaces the
// W_v = I part of the local init; the positional part (not a Linear) is kept.
// Shapes: x [B, N, C] -> [B, N, C]; C % heads == 0. Not causal: the positional attention is
// over the whole 2-D grid (capabilities().causal is false; a causal context is rejected).
#pragma once

#include "blocks/common/multi_head.h"
#include "blocks/common/weight_decay.h"

namespace blocklab {

struct GpsaOptions : MultiHeadOptions<GpsaOptions> {
  GpsaOptions() { qkv_bias(false); }           // no bias on the q/k/v projection by default, as ConViT
  TORCH_ARG(bool, local_init) = true;          // convolution-like init of the positional attention (default true)
  TORCH_ARG(double, locality_strength) = 1.0;  // alpha of the local init (default 1)
  TORCH_ARG(double, gate_init) = 1.0;          // initial lambda_h (default 1)
};

class GpsaImpl : public MultiHeadAttentionImpl, public DeclaresNoWeightDecay {
 public:
  // The positional attention weights (over dx, dy, dx^2 + dy^2) are position parameters: no decay.
  std::vector<std::string> no_weight_decay() const override { return {"pos_weight"}; }
  static constexpr const char* kKey = "attention/gpsa";
  explicit GpsaImpl(std::int64_t dim, const GpsaOptions& options = {});
  GpsaImpl(std::int64_t dim, const GpsaOptions& options, const MultiHeadConfig& config);
  const GpsaOptions& options() const { return options_; }
  MixerCapabilities capabilities() const override;

  // P^p [h, N, N] for `tokens` tokens under ctx (prefix rows and columns zero).
  torch::Tensor positional_weights(std::int64_t tokens, const MixerContext& ctx) const;

  torch::Tensor pos_weight;  // w [h, 3] (dx, dy, dx^2 + dy^2)
  torch::Tensor pos_bias;    // b [h]
  torch::Tensor gating;      // lambda [h]

 protected:
  torch::Tensor normalise(const torch::Tensor& s, const MixerContext& ctx) override;

 private:
  GpsaOptions options_;
};
TORCH_MODULE(Gpsa);

const OptionsSchema<GpsaOptions>& gpsa_schema();

}  // namespace blocklab
