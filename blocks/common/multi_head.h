// Multi-head attention plumbing shared by every attention variant.
//
// Vaswani et al. 2017, "Attention Is All You Need", arXiv:1706.03762, §3.2.2:
//   MultiHead(X) = Concat(head_1..head_h) W_O,  head_i = Attn(X W_Q^i, X W_K^i, X W_V^i).
// This class owns what every variant has in common: the query/key/value projection (one
// Linear C -> 3C, as the reference ViT code does), the head split [B,N,C] -> [B,h,N,d] and
// merge, the output projection, dropouts, causal masking, the explicit reference path and the
// attention probe. A variant changes one or more of four hooks:
//
//   scores(q, k, ctx)        default q k^T / sqrt(d)                       [B,h,N,N]
//   score_bias(n, ctx)       default none; an additive bias broadcastable to [B,h,N,N]
//                            (relative positions, ALiBi, masks), used by both paths
//   normalise(s, ctx)        default softmax over keys (sigmoid, softplus, ... variants)
//   values(v, ctx)           default identity; the values [B,h,N,d] the weights average
//                            (per-token value scaling, e.g. selective attention's value
//                            temperature), used by both paths
//
// A mask component (blocks/masks/mask.h) given in the config is applied to the logits (after
// the bias) or to the normalised weights, as the mask's paper does.
//
// and opts into the fused kernel (small_attention on CPU for short sequences without bias or
// attention dropout, at::scaled_dot_product_attention otherwise) by overriding fused_path()
// when its attention is softmax(q k^T / sqrt(d) + bias). The reference path is
// the test oracle, the CPU fallback and the path the probe uses: when capturing(ctx.probe),
// the weights [B,h,N,N] (after normalise, before dropout) are recorded with ctx.layer and
// the mixer's registry key.
//
// Shapes: x [B, N, C] -> [B, N, C]; C % heads == 0; head width d = C / heads.
#pragma once

#include <array>
#include <string>

#include "blocks/common/options.h"
#include "blocks/interfaces.h"
#include "blocks/masks/mask.h"

namespace blocklab {

// What every multi-head attention is configured with. Variants keep these as TORCH_ARGs on
// their own (flat) Options struct and declare them with declare_multi_head_options().
struct MultiHeadConfig {
  std::int64_t heads = 4;
  bool qkv_bias = true;
  double attn_drop = 0.0;
  double proj_drop = 0.0;
  ConfigNode mask;               // a mask component ({type: mask/..., ...}); null = none
  std::int64_t max_tokens = 0;   // longest sequence (for masks sized by N)
};

template <class O>
MultiHeadConfig multi_head_config(const O& o) {
  return MultiHeadConfig{o.heads(), o.qkv_bias(), o.attn_drop(), o.proj_drop(), {}, 0};
}
// The config of a registry-built attention: Options plus the `mask` component of `params`.
template <class O>
MultiHeadConfig multi_head_config(const O& o, const ConfigNode& params, const MixerArgs& args) {
  MultiHeadConfig c = multi_head_config(o);
  if (const ConfigNode* mask = params.is_map() ? params.find("mask") : nullptr; mask && !mask->is_null()) c.mask = *mask;
  c.max_tokens = args.max_tokens;
  return c;
}

// Declares heads, qkv_bias, attn_drop and proj_drop of Options O (their defaults come from O),
// and the optional `mask` component.
template <class O>
void declare_multi_head_options(OptionsSchema<O>& s) {
  BLOCKLAB_OPTION(s, heads, "attention heads h (default 4); dim must be divisible by h").min = 1;
  BLOCKLAB_OPTION(s, qkv_bias, "bias on the query/key/value projection (default true)");
  rate(BLOCKLAB_OPTION(s, attn_drop, "dropout on the attention weights (default 0)"));
  rate(BLOCKLAB_OPTION(s, proj_drop, "dropout after the output projection (default 0)"));
  s.component("mask", "mask", "", "attention mask on the logits or weights, e.g. {type: mask/gmm} (default none)");
}

// Throws ConfigError (located at params.heads when given) unless heads divides dim.
void check_heads(std::int64_t dim, std::int64_t heads, const ConfigNode& params = {});

class MultiHeadAttentionImpl : public TokenMixerImpl {
 public:
  // `key` is the registry key recorded with probe captures.
  MultiHeadAttentionImpl(std::string key, std::int64_t dim, const MultiHeadConfig& config);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // Causal, normalised weights to the probe; variants with other weights override this.
  MixerCapabilities capabilities() const override;

  std::int64_t dim() const { return dim_; }
  std::int64_t heads() const { return config_.heads; }
  std::int64_t head_dim() const { return dim_ / config_.heads; }
  const std::string& key() const { return key_; }

  // x [B,N,C] -> q, k, v [B,h,N,d]: strided views of one projection (no copies).
  std::array<torch::Tensor, 3> project(const torch::Tensor& x);
  // o [B,h,N,d] -> [B,N,C]: heads concatenated, output projection, dropout.
  torch::Tensor merge(const torch::Tensor& o);
  // The attention weights [B,h,N,N] of the reference path: normalise(scores + bias), causal
  // entries masked before normalising. No dropout, no recording.
  torch::Tensor weights(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx);
  // The explicit path: weights, probe recording, attention dropout, weights @ v -> [B,h,N,d].
  torch::Tensor attend_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const MixerContext& ctx);

  torch::nn::Linear qkv{nullptr};   // C -> 3C, output laid out [q | k | v], heads contiguous in each
  torch::nn::Linear proj{nullptr};  // C -> C (W_O)
  AttentionMask mask;               // optional (config.mask); forces the reference path

 protected:
  virtual torch::Tensor scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx);
  virtual torch::Tensor score_bias(std::int64_t tokens, const MixerContext& ctx) { return {}; }
  virtual torch::Tensor normalise(const torch::Tensor& scores, const MixerContext& ctx);
  virtual torch::Tensor values(const torch::Tensor& v, const MixerContext& ctx) { return v; }
  // True when forward may use the fused kernel (never while the probe captures).
  virtual bool fused_path(const MixerContext& ctx) const { return false; }

  double scale() const { return scale_; }

 private:
  torch::Tensor attend_fused(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const MixerContext& ctx);

  std::string key_;
  std::int64_t dim_;
  MultiHeadConfig config_;
  double scale_;
};

// [n, n] bool, true above the diagonal: the entries a causal token may not see.
torch::Tensor causal_mask(std::int64_t tokens, const torch::Device& device);

}  // namespace blocklab
