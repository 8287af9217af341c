// block/tnt: Transformer in Transformer's block, an inner transformer over the "words" (pixel-level
// tokens) of each patch whose output is fused into the patch ("sentence") token before an outer
// pre-norm block.
//
// Paper: "Transformer in Transformer", Han et al. 2021, arXiv:2103.00112, §2.2 eq. 2-5; details
// as in the official code (huawei-noah/Efficient-AI-Backbones tnt_pytorch, and timm's tnt.py,
// non-legacy form). With w the m words of width c of one patch and o the outer tokens of width C:
//   inner:  w = w + drop_path(Attn_in(LN(w)));   w = w + drop_path(MLP_in(LN(w)))
//   fuse:   o_i = o_i + LN(W_f LN(flatten(w_i)))  for every body token i (W_f: m c -> C, no bias)
//   outer:  o = o + drop_path(mixer(LN(o)));    o = o + drop_path(channel(LN(o)))
// Attn_in is attention/softmax at width c (inner_heads heads, qkv bias as qkv_bias), MLP_in an
// mlp of ratio inner_mlp_ratio (GELU), both from the registries; the outer mixer and channel
// mixer are the block's BlockArgs.mixer / BlockArgs.channel at width C. The inner attention only
// mixes the m words of one patch (words [B N, m, c], one sequence per patch).
//
// Packing (how the words travel between blocks that pass one tensor): every token is
// [outer (C) | words (m c)], the m words of width c flattened word-major (word j at channels
// C + j c .. C + (j+1) c); the block's dim (BlockArgs.dim, the model's `dim`) is the packed width
// D = C + m c, so C = dim - words * inner_dim. Prefix tokens (the class token, ctx.prefix_tokens)
// have no words: their word part passes through unchanged (stem/tnt emits zeros there) and no
// fusion is added to them (TNT's class token). stem/tnt makes these tokens; its words and
// inner_dim must equal the block's (the defaults agree: 16 words of width 8). With inner_dim 0
// there are no words: the block is a plain pre-norm block (prenorm) of width dim.
//
// Decisions where the catalog is silent: LayerNorm eps 1e-5 (norm_eps; the official code's
// nn.LayerNorm); stochastic depth on the inner residuals is drawn per patch (the code applies
// DropPath to the [B N, m, c] words), on the outer ones per sample; a block built without a
// token mixer config (`blocklab block block/tnt`) uses attention/softmax with `heads` heads and
// the block's qkv_bias, without a channel config an mlp of ratio 4 (TNT's outer block); the probe
// sees the outer mixer only (the inner attention runs without it). Causal use is refused (TNT is
// an image model; catalog B 1-27: causal no).
//
// Shape contract: x [B, P + N, C + m c] -> [B, P + N, C + m c], P = ctx.prefix_tokens.
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct TntBlockOptions {
  TORCH_ARG(std::int64_t, inner_dim) = 8;    // c, the width of a word (default 8; 0 = no words)
  TORCH_ARG(std::int64_t, words) = 16;       // m, words per patch (default 16: stem/tnt's 4 x 4)
  TORCH_ARG(std::int64_t, inner_heads) = 2;  // heads of the inner attention (default 2)
  TORCH_ARG(double, inner_mlp_ratio) = 4.0;  // hidden width / c of the inner MLP (default 4)
  TORCH_ARG(bool, qkv_bias) = false;         // q/k/v bias of the inner (and default outer) attention (default false)
  TORCH_ARG(std::int64_t, heads) = 4;        // heads of the outer attention when no mixer is configured (default 4)
  TORCH_ARG(double, norm_eps) = 1e-5;        // eps of every LayerNorm of the block (default 1e-5)
};

class TntBlockImpl : public BlockImpl {
 public:
  static constexpr const char* kKey = "block/tnt";
  TntBlockImpl(const BlockArgs& args, const TntBlockOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;

  std::int64_t outer_dim() const { return outer_dim_; }            // C = dim - m c
  std::int64_t word_width() const { return words_ * inner_dim_; }  // m c

  // Inner transformer and fusion (null when inner_dim is 0).
  torch::nn::LayerNorm inner_norm1{nullptr}, inner_norm2{nullptr};
  TokenMixer inner_attn;
  ChannelMixer inner_mlp;
  torch::nn::LayerNorm fuse_norm1{nullptr}, fuse_norm2{nullptr};  // over m c and over C
  torch::nn::Linear fuse{nullptr};                                // m c -> C, no bias
  // Outer pre-norm block at width C (the names of prenorm's parts).
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  TokenMixer mixer;
  ChannelMixer channel;

 private:
  // The inner transformer on words [B', m, c] (one sequence per patch).
  torch::Tensor inner(const torch::Tensor& words);
  std::int64_t dim_, inner_dim_, words_, outer_dim_;
  double drop_path_;
};
TORCH_MODULE(TntBlock);

const OptionsSchema<TntBlockOptions>& tnt_block_schema();

// Throws ConfigError (located at the option) unless the options fit a block of width `dim`:
// words * inner_dim < dim, inner_heads divides inner_dim, and, when the block builds its own
// outer attention (no mixer config), heads divides C.
void check_tnt_block(const TntBlockOptions& options, const BlockArgs& args, const ConfigNode& params = {});

}  // namespace blocklab
