// mixer/nin: NiNformer's Mixer Gating Unit (MGU): an MLP-Mixer block, computed from the tokens,
// gates a linear projection of the same tokens (a raw product, no sigmoid).
//
// Paper: "NiNformer: A Network in Network Transformer with Token Mixing Generated Gating Function",
// Abdullah Nazhat Abdullah and Tarkan Aydin, 2024, arXiv:2403.02411; read against
// Abdullah-88/NiNformer ninformer.py (MixerGatingUnit, MixerBlock). Catalog B-30:
//   u = x W_u + b_u                                                   (C -> C)
//   v = x + TokenMLP(LN_1(x)^T)^T          TokenMLP: M -> d_tok -> M over the token axis, GELU
//   v = v + ChannelMLP(LN_2(v))            ChannelMLP: C -> d_ch -> C, GELU
//   out = u ⊙ v
// Each MLP is Linear, GELU, dropout, Linear, dropout (the code's FeedForward). The enclosing block
// supplies NiNformer's outer residual, norm and FFN (x + MGU(LN(x)); x + FFN(LN(x))), so this is
// the MGU only.
//
// Decisions where the catalog is silent:
// - Sequence length. The token MLP's weights are sized for M = MixerArgs.max_tokens (the ViT's
//   token count, prefix tokens included). A sequence of N < M tokens is read as the M-token
//   sequence whose normalised tokens LN_1(x) are zero after N: the token MLP runs on the zero-padded
//   tokens and the first N outputs are kept (exact at N = M; computed with the leading N columns of
//   W_tok1 and rows of W_tok2, which is the same arithmetic). N > M is an error naming max_tokens.
// - Padding (ctx.lengths): padded tokens are zeroed after LN_1 by the same rule, so a padded
//   sample's valid outputs equal those of its unpadded prefix (variable lengths honoured).
// - Prefix (class/register) tokens are tokens like any other: the token MLP mixes all N, in order.
// - Widths as ratios of C (the house's hidden widths, round(ratio * C)): the official CIFAR-10 model
//   uses one d_ffn = 512 at C = 256 for d_tok and d_ch, so both ratios default to 2 (MLP-Mixer
//   also scales its token width with C: D_S = C / 2 for every size).
// - LayerNorm eps 1e-5 (torch's default, which the official code uses). Dropout default 0 (the
//   paper's CIFAR-10 recipe trains with 0.5 throughout the model).
// - Not causal: every token reads every other through the token MLP (ctx.causal is refused).
//
// Shape contract: x [B, N, C] -> [B, N, C], 1 <= N <= max_tokens.
#pragma once

#include "blocks/channel/mlp.h"
#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct NinMixerOptions {
  TORCH_ARG(double, token_ratio) = 2.0;    // d_tok / C, token MLP hidden width (NiNformer: 512 / 256 = 2)
  TORCH_ARG(double, channel_ratio) = 2.0;  // d_ch / C, channel MLP hidden width (NiNformer: 512 / 256 = 2)
  TORCH_ARG(double, dropout) = 0.0;        // after each MLP's GELU and output (default 0; NiNformer trains 0.5)
};

class NinMixerImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "mixer/nin";
  NinMixerImpl(std::int64_t dim, std::int64_t max_tokens, const NinMixerOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  std::int64_t max_tokens() const { return max_tokens_; }

  // v = MixerBlock(x), the gate (the MGU's output divided by u).
  torch::Tensor mixer_block(const torch::Tensor& x, const MixerContext& ctx);

  torch::nn::Linear proj{nullptr};                                  // W_u, b_u: C -> C
  torch::nn::LayerNorm token_norm{nullptr}, channel_norm{nullptr};  // LN_1, LN_2 over C
  torch::nn::Linear token_fc1{nullptr}, token_fc2{nullptr};         // M -> d_tok -> M
  Mlp channel_mlp{nullptr};                                         // C -> d_ch -> C

 private:
  torch::Tensor token_mlp(const torch::Tensor& z);  // z [B, N, C] -> [B, N, C], over the token axis
  std::int64_t max_tokens_;
  double dropout_;
};
TORCH_MODULE(NinMixer);

}  // namespace blocklab
