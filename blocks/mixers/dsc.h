// mixer/dsc: dynamic span-based convolution, FlexiBERT's convolutional operation (DSC): a
// light-weight convolution over the sequence whose kernel each token generates from a local
// span, through span-aware keys from a depth-wise separable convolution.
//
// Papers: "ConvBERT: Improving BERT with Span-based Dynamic Convolution", Jiang, Yu, Zhou, Chen,
// Feng & Yan, 2020, arXiv:2008.02496, §3.2-3.3 (read against HF transformers
// models/convbert/modeling_convbert.py, ConvBertSelfAttention); used as an operation of
// "FlexiBERT: Are Current Transformer Architectures too Homogeneous and Rigid?", Tuli et al.,
// 2023 (JAIR), arXiv:2205.11656 (catalog_003_004.md C20; kernel 5 or 9). Width C, heads h,
// d = C / h, kernel k (odd), p = (k - 1) / 2, x_j = 0 outside the sequence:
//   k_s = SepConv(x) = W_pw DWConv_k(x) + b_pw      (depth-wise k taps per channel, no bias; pointwise C -> C)
//   q = W_q x + b_q,  v = W_v x + b_v
//   kernel_i = softmax over the k taps, per head, of W_f (q_i ⊙ k_s,i) + b_f      (W_f: C -> h k)
//   o_i[head, c] = sum_{j<k} kernel_i[head, j] v_{i+j-p}[head d + c]           (one kernel per head)
//   out = Concat_h(o) W_O + b_O
// Decisions where the catalog is silent:
// - As ConvBERT, W_f reads the whole q ⊙ k_s (all heads' channels) and gives h k logits, head h's
//   taps at [h k, (h+1) k); v is its own projection of x (ConvBERT's conv_out_layer), not the
//   attention's value. FlexiBERT's homogeneous DSC layer is ConvBERT's mixed attention (self-
//   attention heads next to these convolution heads); this mixer is the convolution alone.
// - q and v are one Linear C -> 2C ([q | v]); the pointwise convolution is a Linear C -> C
//   whose bias is ConvBERT's separate bias. PyTorch's default init (ViT's init reaches the
//   Linears); ConvBERT draws the separable convolution from N(0, 0.02).
// - A sequence operation, as in FlexiBERT: the tokens in order (prefix tokens included, a grid
//   flattened row by row); the grid is not used. Not causal (the taps reach p tokens ahead).
// - Padding (ctx.lengths): x and v are zeroed at padded tokens, so a valid token sees zeros
//   there, as at the end of a shorter sequence.
//
// Shape contract: x [B, N, C] -> [B, N, C]; heads divides C; kernel odd. Parameters:
// C k + 4 C^2 + 4 C + C h k + h k.
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct DscMixerOptions {
  TORCH_ARG(std::int64_t, kernel) = 9;  // k taps, odd (default 9; FlexiBERT: 5 or 9)
  TORCH_ARG(std::int64_t, heads) = 4;   // h, each with its own dynamic kernel (default 4); divides the width
};

class DscMixerImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "mixer/dsc";
  DscMixerImpl(std::int64_t dim, const DscMixerOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  const DscMixerOptions& options() const { return options_; }

  // The dynamic kernels [B, N, h, k] of x (softmax over the taps; tap j reads token i + j - p).
  torch::Tensor kernels(const torch::Tensor& x, const MixerContext& ctx);

  torch::nn::Conv1d depthwise{nullptr};    // C -> C, groups C, k taps, no bias
  torch::nn::Linear pointwise{nullptr};    // C -> C (with ConvBERT's bias)
  torch::nn::Linear qv{nullptr};           // C -> 2C: [q | v]
  torch::nn::Linear kernel_proj{nullptr};  // W_f: C -> h k
  torch::nn::Linear proj{nullptr};         // W_O: C -> C

 private:
  // x with padded tokens zeroed (ctx.lengths), else x.
  torch::Tensor valid_only(const torch::Tensor& t, const MixerContext& ctx) const;
  // The kernels from x (padding zeroed) and its queries q.
  torch::Tensor kernels_of(const torch::Tensor& x, const torch::Tensor& q);
  DscMixerOptions options_;
};
TORCH_MODULE(DscMixer);

}  // namespace blocklab
