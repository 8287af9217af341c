// attention/rcmha: Relative Convolutional Multi-Head Attention, multi-head attention whose
// queries, keys and values pass a causal depth-wise convolution along the tokens (Primer's
// Multi-DConv-Head Attention) and whose logits take Transformer-XL's relative-position terms.
//
// Paper: "RCMHA: Relative Convolutional Multi-Head Attention for Natural Language Modelling",
// Sugiharto, Aradea and Mubarok, 2023, arXiv:2308.03429. Its two parts: MDHA of "Primer:
// Searching for Efficient Transformers for Language Modeling", So et al., 2021, arXiv:2109.08668
// (§3: a 3x1 depth-wise convolution along the sequence after each of the q, k, v projections),
// and the relative attention of "Transformer-XL: Attentive Language Models Beyond a
// Fixed-Length Context", Dai et al., 2019, arXiv:1901.02860, §3.3 (terms (a)-(d)).
//   q, k, v = x W_q, x W_k, x W_v                                        [B, h, N, d] each
//   DConv(z)_i = b + sum_{t<K} w_t ⊙ z_{i-(K-1)+t}   per head and channel, z_{<0} = 0
//   q~, k~, v~ = DConv_q(q), DConv_k(k), DConv_v(v)
//   S_ij = [(q~_i + u) . k~_j + (q~_i + v_r) . (W_R r_{i-j})] / sqrt(d)
//   r_p = [sin(p w_0), .., sin(p w_{C/2-1}), cos(p w_0), .., cos(p w_{C/2-1})],  w_k = 10000^(-2k/C)
//   A = softmax(S) (causal mask when ctx.causal),  out = Concat_h(A v~) W_o
// with u, v_r in R^d per head and W_R: C -> h d (no bias). The relative term is formed per
// offset, (q~ + v_r) (W_R r)^T [B, h, N, 2N-1] (N offsets when causal), and moved to
// query-by-key layout by the Music Transformer skew of blocks/common/relative_positions.h
// (Transformer-XL's "relative shift").
//
// Sources and decisions (catalog B-28 was reconstructed from the abstract):
// - The authors' code (github hermansh-id/rcmha, rcmha/attention.py, read for checking) builds
//   it from labml's Transformer-XL attention and Primer-EZ convolution: kernel 3, causal (pad
//   K-1 on both sides, crop the last K-1 outputs), a bias, PyTorch's default Conv1d init; but one
//   d-channel kernel shared by the heads, learned relative key embeddings plus a learned bias per
//   offset in place of W_R r and v_r . W_R r, u zero-initialised, no bias on W_q and W_k.
// - Here the catalog's paper form: Transformer-XL's sinusoids r (width C, the sin half then the
//   cos half, as its code; for odd C the last cosine is dropped), W_R, u and v_r per head, and
//   one kernel per channel of each head (Primer's "per channel" of each projection's output; a
//   Microsoft PyTorch port of Primer's DConv likewise convolves all 3 C channels of q, k, v with
//   left padding): 3 C K weights.
//   u and v_r start at 0 (as the authors' code starts u); W_R as a Linear (timm's init in a ViT).
// - conv_init: default (PyTorch's depth-wise Conv1d init, U(-1/sqrt(K), 1/sqrt(K)) for weights
//   and biases, as the authors' code) or identity (tap K-1 = 1, the rest and the bias 0: the
//   block starts as Transformer-XL relative attention).
// - The convolution is always causal (left padding), with ctx.causal or not: the paper is a
//   decoder, causal mode and bidirectional mode then differ only by the mask, and right padding
//   (ctx.lengths) never reaches a valid token through the convolution (no centred conv).
// - Grouped key/value heads (kv_heads): k and v are convolved per key/value head channel, so
//   their kernels are [kv_heads, d, K] (the convolution commutes with the head repetition).
// - Image tokens are taken as the 1-D sequence they are fed in (prefix tokens, then the grid in
//   row-major order), as attention/relative: the convolution runs across the prefix/grid seam
//   and the row ends. Not recurrent (a dense attention, no constant-size state).
// - The shared options compose: qk_norm and rotary act on the convolved q~, k~ (u added after),
//   the `mask` component on the logits, the output gate on A v~.
//
// Shapes: x [B, N, C] -> [B, N, C]; C % heads == 0. Parameters: the MHSA's plus
// (h + 2 kv) d K (convolutions) + (h + 2 kv) d (their biases, conv_bias) + C h d (W_R) + 2 h d
// (u, v_r): with h d = C and kv = h, MHSA + 3 C K + 3 C + C^2 + 2 C. Honours ctx.causal; the
// probe records the softmax weights (rows sum to 1).
#pragma once

#include <array>
#include <string>
#include <vector>

#include "blocks/common/multi_head.h"
#include "blocks/common/weight_decay.h"

namespace blocklab {

struct RcmhaOptions : MultiHeadOptions<RcmhaOptions> {
  TORCH_ARG(std::int64_t, conv_kernel) = 3;       // K: taps of the causal depth-wise convolutions (default 3)
  TORCH_ARG(bool, conv_bias) = true;              // a bias per convolved channel (default true)
  TORCH_ARG(std::string, conv_init) = "default";  // default (PyTorch's Conv1d init) | identity (default default)
};

class RcmhaImpl : public MultiHeadAttentionImpl, public DeclaresNoWeightDecay {
 public:
  static constexpr const char* kKey = "attention/rcmha";
  explicit RcmhaImpl(std::int64_t dim, const RcmhaOptions& options = {});
  RcmhaImpl(std::int64_t dim, const RcmhaOptions& options, const MultiHeadConfig& config);
  const RcmhaOptions& options() const { return options_; }

  // u, v_r and the convolution biases are biases of rank 2: no decay.
  std::vector<std::string> no_weight_decay() const override;

  // projection -> causal depth-wise convolutions -> relative attention -> output.
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;

  // q, k, v [B, h, N, d] (k, v with their key/value heads repeated) -> DConv_q(q), DConv_k(k), DConv_v(v).
  std::array<torch::Tensor, 3> convolve(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) const;
  // W_R r_{i-j} per offset: [h, 2L-1, d] for offsets j - i = -(L-1)..(L-1), the first L rows
  // (offsets -(L-1)..0) when causal.
  torch::Tensor relative_keys(std::int64_t tokens, bool causal, const torch::TensorOptions& options) const;
  // (q_i + v_r) . W_R r_{i-j} [B, h, L, L] for (convolved) queries q [B, h, L, d], unscaled;
  // with causal only j <= i is meaningful (the rest is masked by the attention).
  torch::Tensor relative_logits(const torch::Tensor& q, bool causal) const;

  torch::Tensor q_conv, k_conv, v_conv;                 // [h, d, K], [kv, d, K], [kv, d, K]; tap K-1 <-> token i
  torch::Tensor q_conv_bias, k_conv_bias, v_conv_bias;  // [h, d], [kv, d], [kv, d] (conv_bias)
  torch::nn::Linear rel_proj{nullptr};                  // W_R: C -> h d, no bias
  torch::Tensor rel_bias_u, rel_bias_v;                 // u, v_r [h, d]

 protected:
  torch::Tensor scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx) override;

 private:
  RcmhaOptions options_;
  std::int64_t kv_heads_;
};
TORCH_MODULE(Rcmha);

const OptionsSchema<RcmhaOptions>& rcmha_schema();

}  // namespace blocklab
