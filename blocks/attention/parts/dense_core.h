// The dense attention core: an explicit weight matrix over token pairs.
//
//   A = normalise(scores(q, k) + score_bias + mask),  o = A values(v)     [B, h, N, N], [B, h, N, d]
//
// Vaswani et al. 2017, arXiv:1706.03762, eq. (1) by default: scores q k^T / sqrt(d), softmax,
// identity values. An attention variant supplies the piece that differs by overriding a hook:
//
//   scores(q, k, ctx)        default q k^T / sqrt(d)                       [B,h,N,N]
//   score_bias(n, ctx)       default none; an additive bias broadcastable to [B,h,N,N]
//                            (relative positions, ALiBi, masks), used by both paths
//   normalise(s, ctx)        default softmax over keys (sigmoid, softplus, ... variants)
//   values(v, ctx)           default identity; the values [B,h,N,d] the weights average
//   fused_path(ctx)          default false; true when A = softmax(q k^T / sqrt(d) + bias)
//
// A mask component (blocks/masks/mask.h) is applied to the logits (after the bias) or to the
// normalised weights, as the mask's paper does. Additive masks (AddLogits) are biases and
// keep the fused path: they join score_bias inside the kernel. Multiplicative masks
// (MultiplyLogits, MultiplyWeights) need the explicit weights: they take the reference path.
//
// Paths. The reference path is the test oracle, the fallback and the path the probe uses:
// when capturing(ctx.probe), the weights (after normalise, before dropout) are recorded with
// ctx.layer and the mixer's registry key. The fused path (fused_path(), not capturing, no
// multiplicative mask) runs small_attention on CPU for up to kSmallAttentionMaxTokens tokens
// without attention dropout (with the bias and its gradient), at::scaled_dot_product_attention
// otherwise (the bias as a float attn_mask).
//
// Key padding: ctx.lengths (valid lengths [B], right padding) adds -inf to the logits of the
// padded keys on both paths, so padding never changes the outputs of valid tokens.
#pragma once

#include <string>
#include <utility>

#include "blocks/attention/parts/core.h"
#include "blocks/masks/mask.h"

namespace blocklab {

class DenseCore : public AttentionCore {
 public:
  // `key` is recorded with probe captures; `owner` gives the training flag.
  DenseCore(const torch::nn::Module& owner, std::string key, std::int64_t head_dim, double attn_drop);

  // values, then the fused or the reference path.
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const MixerContext& ctx) override;
  // Causal (the mask above the diagonal), normalised weights, variable lengths.
  MixerCapabilities core_capabilities() const override;

  // The attention weights [B,h,N,N] of the reference path: normalise(scores + bias), causal
  // and padded entries masked before normalising. No dropout, no recording.
  torch::Tensor weights(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx);
  // The explicit path: weights, probe recording, attention dropout, weights @ v -> [B,h,N,d].
  torch::Tensor attend_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const MixerContext& ctx);

  const std::string& key() const { return key_; }
  double scale() const { return scale_; }

  AttentionMask mask;  // optional; registered by the owner as "mask"

 protected:
  virtual torch::Tensor scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx);
  virtual torch::Tensor score_bias(std::int64_t tokens, const MixerContext& ctx) { return {}; }
  virtual torch::Tensor normalise(const torch::Tensor& scores, const MixerContext& ctx);
  virtual torch::Tensor values(const torch::Tensor& v, const MixerContext& ctx) { return v; }
  // True when attend may use the fused kernel (never while the probe captures).
  virtual bool fused_path(const MixerContext& ctx) const { return false; }
  // q, k as the scores see them (the projection's norm and rotation; default as given).
  virtual std::pair<torch::Tensor, torch::Tensor> queries_keys(const torch::Tensor& q, const torch::Tensor& k,
                                                               const MixerContext& ctx) {
    return {q, k};
  }

 private:
  torch::Tensor attend_fused(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const MixerContext& ctx);
  // score_bias + an additive mask + key padding, [B|1, h|1, N, N] in q's dtype; undefined if none.
  torch::Tensor additive_bias(std::int64_t tokens, const MixerContext& ctx, const torch::Tensor& like);

  const torch::nn::Module& owner_;
  std::string key_;
  double scale_;
  double attn_drop_;
};

// [n, n] bool, true above the diagonal: the entries a causal token may not see.
torch::Tensor causal_mask(std::int64_t tokens, const torch::Device& device);
// [B, 1, 1, n] bool, true at the padded keys of right-padded sequences of valid `lengths` [B].
torch::Tensor padding_mask(const torch::Tensor& lengths, std::int64_t tokens, const torch::Device& device);

}  // namespace blocklab
