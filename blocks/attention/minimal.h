// attention/minimal: multi-head attention reduced to a minimum: the query and key matrices
// collapsed into one matrix per head, optionally without the value and output matrices, or with
// a symmetric positive semi-definite similarity.
//
// Paper: "Reducing the Transformer Architecture to a Minimum", Bermeitinger, Hrycej, Pavone, Kath
// & Handschuh, 2024, arXiv:2410.13732 (catalog_000_001.md B 0-20). d = C / h, X_h = X[:, h d:(h+1) d]
// the head's channel slice, A^h = softmax(S^h) over the keys (causal and padded keys masked):
//   wqk        S^h = X W^h X^T / sqrt(d),  W^h in R^{C x C}  (replaces W_Q^h W_K^h^T);
//              out = Concat_h(A^h X W_V^h) W_O + b_O   (V and O as in MHSA)
//              qk_rank r > 0: W^h = U^h V^h^T, U^h, V^h in R^{C x r}: an ordinary query/key
//              projection of width r (r = d is MHSA's q/k without their biases)
//   wqk_novo   S^h = X_h W^h X_h^T / sqrt(d), W^h in R^{d x d} (r > 0: U^h V^h^T, U, V in
//              R^{d x r}); no W_V, no W_O:  out_h = A^h X_h, heads concatenated. Every output
//              token is a convex combination of the input tokens (channel by channel).
//   symmetric  S^h = X_h L^h L^h^T X_h^T / sqrt(d), L^h lower triangular d x d (d (d+1) / 2
//              parameters per head): S^h is symmetric and PSD, so diag(S^h) >= 0 (a token is
//              never dissimilar to itself); V and O as in MHSA.
// The scale is 1 / sqrt(d), d = C / h, in every mode (the paper's; a low-rank W^h is the same
// collapsed matrix factored).
// Parameters: wqk h C^2 (r > 0: 2 h C r) + 2 C^2 + C + C (W_V and W_O, their biases);
// wqk_novo h d^2 = C^2 / h (r > 0: 2 h d r); symmetric h d (d+1) / 2 + 2 C^2 + 2 C.
//
// Decisions where the catalog is silent:
// - W^h (and U^h, V^h of wqk) have no bias: S = X W X^T is the paper's form. In wqk the collapsed
//   matrices are one Linear C -> h C (rows [h C, (h+1) C) hold W^h^T; r > 0: C -> 2 h r, [U | V]),
//   so ViT's init reaches them like any projection; PyTorch's Linear init otherwise.
// - wqk_novo's W^h and symmetric's L^h start at the identity (U^h = V^h = the first r columns of
//   the identity): S^h starts as the plain scaled dot product X_h X_h^T / sqrt(d) of the head's
//   channels. L^h stores only its lower triangle, row by row (torch::tril_indices order).
// - The dense core (parts/dense_core.h) does the rest: causal and key-padding masks, the optional
//   `mask` component, the probe (records A [B, h, N, N]), attention dropout and the fused kernel
//   (fused: true; the q/k factors above take the places of q and k).
// - proj_drop acts after W_O; wqk_novo has no W_O, so proj_drop > 0 with it is a ConfigError.
//   v_bias is the bias of W_V (ignored by wqk_novo, which has no W_V).
// - The paper's `no_mlp` (its main saving) is a block-level choice, not this mixer's: use a block
//   without a channel mixer.
//
// Shapes: x [B, N, C] -> [B, N, C]; heads divides C. Honours ctx.causal and ctx.lengths.
#pragma once

#include <optional>
#include <string>

#include "blocks/attention/parts/dense_core.h"
#include "blocks/attention/parts/output.h"
#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct MinimalAttentionOptions {
  TORCH_ARG(std::string, mode) = "wqk";  // wqk | wqk_novo | symmetric (default wqk)
  TORCH_ARG(std::int64_t, heads) = 4;    // h (default 4); divides the width
  TORCH_ARG(std::int64_t, qk_rank) = 0;  // r: 0 = full W^h (default); r > 0: W^h = U^h V^h^T (wqk, wqk_novo)
  TORCH_ARG(bool, v_bias) = true;        // bias on W_V (default true)
  TORCH_ARG(double, attn_drop) = 0.0;    // dropout on the attention weights (default 0)
  TORCH_ARG(double, proj_drop) = 0.0;    // dropout after W_O (default 0)
  TORCH_ARG(bool, fused) = true;         // fused softmax kernel when not capturing (default true)
};

class MinimalAttentionImpl : public TokenMixerImpl, public DenseCore {
 public:
  static constexpr const char* kKey = "attention/minimal";
  enum class Mode { wqk, wqk_novo, symmetric };

  // `mask` is an optional mask component ({type: mask/...}); `max_tokens` sizes masks by N.
  explicit MinimalAttentionImpl(std::int64_t dim, const MinimalAttentionOptions& options = {},
                                const ConfigNode& mask = {}, std::int64_t max_tokens = 0);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // The dense core's: causal, normalised weights, variable lengths (+ a grid if the mask needs one).
  MixerCapabilities capabilities() const override;

  // The factors of the logits, S^h = q^h k^h^T / sqrt(d): [B, h, N, m] each (m = C, r or d).
  std::pair<torch::Tensor, torch::Tensor> score_factors(const torch::Tensor& x);
  // The logits S [B, h, N, N] before any mask (causal, padding, mask component).
  torch::Tensor logits(const torch::Tensor& x);
  // L^h [h, d, d] of symmetric (lower triangular).
  torch::Tensor lower_factor() const;

  Mode mode() const { return mode_; }
  std::int64_t heads() const { return heads_; }
  std::int64_t head_dim() const { return head_dim_; }
  std::int64_t rank() const { return rank_; }

  torch::nn::Linear qk{nullptr};     // wqk: C -> h C (W^h^T stacked) or, r > 0, C -> 2 h r ([U | V] heads contiguous)
  torch::Tensor qk_weight;           // wqk_novo, r = 0: W^h [h, d, d] (S^h = X_h W^h X_h^T / sqrt(d))
  torch::Tensor qk_u, qk_v;          // wqk_novo, r > 0: U^h, V^h [h, d, r]
  torch::Tensor tril;                // symmetric: the lower triangles of L^h [h, d (d+1) / 2]
  torch::nn::Linear value{nullptr};  // W_V: C -> C (wqk, symmetric)
  torch::nn::Linear proj{nullptr};   // W_O: C -> C (wqk, symmetric)

 protected:
  bool fused_path(const MixerContext&) const override { return fused_; }

 private:
  torch::Tensor split_heads(const torch::Tensor& t) const;  // [B, N, C] -> [B, h, N, d] (a view)

  std::int64_t dim_, heads_, head_dim_, rank_;
  Mode mode_;
  bool fused_;
  std::optional<OutputProjection> output_;
};
TORCH_MODULE(MinimalAttention);

const OptionsSchema<MinimalAttentionOptions>& minimal_attention_schema();

}  // namespace blocklab
