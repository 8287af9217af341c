// Multi-head attention assembled from its parts (design.md, "Model interfaces, second shape"):
//
//   x -> projection (blocks/attention/parts/projection.h: heads, kv_heads, head width,
//        q/k norm, rotary) -> core (parts/core.h; the dense core parts/dense_core.h with its
//        score / bias / normaliser / values hooks, masks, probe and fused paths)
//     -> output (parts/output.h: optional gate, heads merged, W_O, dropout)
//
// Vaswani et al. 2017, "Attention Is All You Need", arXiv:1706.03762, §3.2.2:
//   MultiHead(X) = Concat(head_1..head_h) W_O,  head_i = Attn(X W_Q^i, X W_K^i, X W_V^i).
// An attention variant is one file with its math: it derives from MultiHeadAttentionImpl and
// overrides the dense core's hook that differs (see dense_core.h); its Options derive from
// MultiHeadOptions<Options>, which holds the options every attention shares with their
// defaults (written once, here), declared by declare_multi_head_options() and checked by
// check_multi_head() (heads divides dim, kv_heads divides heads, the rotary head width) from
// multi_head_config(), with ConfigErrors located at the option.
//
// State-dict names (qkv.weight, proj.weight, q_norm, k_norm, gate, mask.*) are flat, as before
// the parts existed. Shapes: x [B, N, C] -> [B, N, C].
#pragma once

#include <string>

#include "blocks/attention/parts/dense_core.h"
#include "blocks/attention/parts/output.h"
#include "blocks/attention/parts/projection.h"
#include "blocks/common/options.h"

namespace blocklab {

// The options every multi-head attention has; a variant's Options derive from
// MultiHeadOptions<Options> (setters return the variant's Options, so they chain).
#define BLOCKLAB_HEAD_ARG(T, name, value)   \
  D& name(const T& v) {                     \
    name##_ = v;                            \
    return static_cast<D&>(*this);          \
  }                                         \
  const T& name() const { return name##_; } \
  T name##_ = value;

template <class D>
struct MultiHeadOptions {
  BLOCKLAB_HEAD_ARG(std::int64_t, heads, 4)        // attention heads h (default 4); h divides dim
  BLOCKLAB_HEAD_ARG(std::int64_t, kv_heads, 0)     // key/value heads (default 0 = heads); divides heads
  BLOCKLAB_HEAD_ARG(std::int64_t, head_dim, 0)     // head width d (default 0 = dim / heads)
  BLOCKLAB_HEAD_ARG(bool, qkv_bias, true)          // bias on the q/k/v projection (default true)
  BLOCKLAB_HEAD_ARG(bool, qk_norm, false)          // LayerNorm over d on q and k (default false)
  BLOCKLAB_HEAD_ARG(std::string, rotary, "none")   // rotary positions: none | 1d | 2d (default none)
  BLOCKLAB_HEAD_ARG(double, rotary_base, 10000.0)  // rotary base (default 10000)
  BLOCKLAB_HEAD_ARG(bool, gate, false)             // sigmoid output gate per head channel (default false)
  BLOCKLAB_HEAD_ARG(double, attn_drop, 0.0)        // dropout on the attention weights (default 0)
  BLOCKLAB_HEAD_ARG(double, proj_drop, 0.0)        // dropout after the output projection (default 0)
};

// What a multi-head attention is built with: its shared options, the mask and max_tokens.
struct MultiHeadConfig {
  ProjectionConfig projection;
  bool gate = false;
  double attn_drop = 0.0;
  double proj_drop = 0.0;
  ConfigNode mask;              // a mask component ({type: mask/..., ...}); null = none
  std::int64_t max_tokens = 0;  // longest sequence (for masks sized by N)
};

// Throws ConfigError, located at params.<option> when given, unless the shared options fit
// dim: heads divides dim (when head_dim is 0), kv_heads divides heads, the head width suits
// the rotary embedding (even for 1d, divisible by 4 for 2d).
void check_multi_head(std::int64_t dim, const MultiHeadConfig& config, const ConfigNode& params = {});
// Throws ConfigError (located at params.heads when given) unless heads divides dim.
void check_heads(std::int64_t dim, std::int64_t heads, const ConfigNode& params = {});

template <class O>
MultiHeadConfig multi_head_config(const O& o) {
  MultiHeadConfig c;
  c.projection =
      ProjectionConfig{o.heads(), o.kv_heads(), o.head_dim(), o.qkv_bias(), o.qk_norm(), o.rotary(), o.rotary_base()};
  c.gate = o.gate();
  c.attn_drop = o.attn_drop();
  c.proj_drop = o.proj_drop();
  return c;
}
// The config of a registry-built attention: Options plus the `mask` component of `params`,
// checked against the width (ConfigErrors at the option).
template <class O>
MultiHeadConfig multi_head_config(const O& o, const ConfigNode& params, const MixerArgs& args) {
  MultiHeadConfig c = multi_head_config(o);
  if (const ConfigNode* mask = params.is_map() ? params.find("mask") : nullptr; mask && !mask->is_null())
    c.mask = *mask;
  c.max_tokens = args.max_tokens;
  check_multi_head(args.dim, c, params);
  return c;
}

// Declares the shared options of Options O (their defaults come from O) and the optional
// `mask` component.
template <class O>
void declare_multi_head_options(OptionsSchema<O>& s) {
  BLOCKLAB_OPTION(s, heads, "attention heads h (default 4); dim must be divisible by h").min = 1;
  BLOCKLAB_OPTION(s, qkv_bias, "bias on the query/key/value projection (default true)");
  rate(BLOCKLAB_OPTION(s, attn_drop, "dropout on the attention weights (default 0)"));
  rate(BLOCKLAB_OPTION(s, proj_drop, "dropout after the output projection (default 0)"));
  s.component("mask", "mask", "", "attention mask on the logits or weights, e.g. {type: mask/gmm} (default none)");
  BLOCKLAB_OPTION(s, kv_heads,
                  "key/value heads, each shared by heads / kv_heads query heads (GQA; 1 = multi-query); must "
                  "divide heads (default 0 = heads)")
      .min = 0;
  BLOCKLAB_OPTION(s, head_dim, "width d of each head (default 0 = dim / heads)").min = 0;
  BLOCKLAB_OPTION(s, qk_norm, "LayerNorm over the head width on q and k (default false)");
  s.choice(
      "rotary", {"none", "1d", "2d"},
      "rotary positions on q and k: 1d over the token order, 2d axial over the patch grid (prefix tokens "
      "unrotated) (default none)",
      [](O& o, const std::string& v) { o.rotary(v); }, [](const O& o) { return o.rotary(); });
  BLOCKLAB_OPTION(s, rotary_base, "base of the rotary frequencies (default 10000)").min = 1.0;
  BLOCKLAB_OPTION(s, gate, "sigmoid gate on each head's output from the input, before W_O (default false)");
}

class MultiHeadAttentionImpl : public TokenMixerImpl, public DenseCore {
 public:
  // `key` is the registry key recorded with probe captures.
  MultiHeadAttentionImpl(std::string key, std::int64_t dim, const MultiHeadConfig& config);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // Causal, normalised weights to the probe, variable lengths; a grid with rotary 2d.
  MixerCapabilities capabilities() const override;

  std::int64_t dim() const { return dim_; }
  std::int64_t heads() const { return projection_.heads(); }
  std::int64_t head_dim() const { return projection_.head_dim(); }

  // x [B,N,C] -> q, k, v [B,h,N,d]: strided views of one projection (no copies).
  std::array<torch::Tensor, 3> project(const torch::Tensor& x) { return projection_.split(x); }
  // o [B,h,N,d] -> [B,N,C]: (gate,) heads concatenated, output projection, dropout.
  torch::Tensor merge(const torch::Tensor& o, const torch::Tensor& x = {});

 protected:
  std::pair<torch::Tensor, torch::Tensor> queries_keys(const torch::Tensor& q, const torch::Tensor& k,
                                                       const MixerContext& ctx) override {
    return projection_.position(q, k, ctx);
  }

 private:
  std::int64_t dim_;
  QkvProjection projection_;
  OutputProjection output_;

 public:
  torch::nn::Linear& qkv;   // C -> (h + 2 kv) d, output laid out [q | k | v], heads contiguous in each
  torch::nn::Linear& proj;  // h d -> C (W_O)
};

// args.max_tokens for an option whose 0 means "the longest sequence the model sees"; a
// ConfigError at params.<name> (with `why` and `hint`) when the model gave fewer than `at_least`.
std::int64_t longest_sequence(const MixerArgs& args, const ConfigNode& params, const std::string& name,
                              std::int64_t at_least, const std::string& why, const std::string& hint);

// A registry factory for attentions whose options need no resolving: bind, check, build.
template <class Impl, class O>
TokenMixer make_attention(const OptionsSchema<O>& schema, const ConfigNode& params, const MixerArgs& args) {
  const auto options = bind_options(schema, params);
  return std::make_shared<Impl>(args.dim, options, multi_head_config(options, params, args));
}

}  // namespace blocklab
