// attention/single-head: SHViT's single-head self-attention (SHSA). Only a slice of C_p channels
// is mixed across tokens, by one head with a narrow query/key width; the other channels pass
// through, and a projection of both follows.
//
// Paper: "SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design", Yun & Ro
// 2024, CVPR, arXiv:2401.16456, §4 (eq. (3)); read against ysj9909/SHViT model/shvit.py
// (SHSA; catalog_002 B-13).
//   x1, x2 = x[:, :C_p], x[:, C_p:]
//   q, k, v = ConvBN_1x1(GroupNorm_1(x1))             (q, k: d_qk = 16; v: C_p)
//   x1 = softmax(q k^T / sqrt(d_qk)) v                 (one head over every token)
//   out = ConvBN_1x1(ReLU([x1, x2]))                    (C -> C, BN scale 0 at init)
// The 1 x 1 ConvBNs act per token with batch statistics (blocks/common/conv_bn.h); GroupNorm
// with one group normalises each sample's C_p x N slice. Every token, prefix tokens included,
// attends to every token: no grid is needed (1 x 1 operations only).
//
// Shape contract: x [B, N, C] -> [B, N, C]. Not causal. At init the output is 0 (the residual
// branch starts closed) unless zero_init is false.
#pragma once

#include "blocks/common/conv_bn.h"
#include "blocks/common/options.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct SingleHeadOptions {
  TORCH_ARG(std::int64_t, partial) = 0;  // C_p: channels mixed across tokens (0: round(C / 4.67), SHViT's ratio)
  TORCH_ARG(std::int64_t, qk_dim) = 16;  // d_qk
  TORCH_ARG(bool, zero_init) = true;     // the projection's BN scale starts at 0 (SHViT's code)
};

class SingleHeadAttentionImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "attention/single-head";
  SingleHeadAttentionImpl(std::int64_t dim, const SingleHeadOptions& options);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  std::int64_t partial() const { return partial_; }

  torch::nn::GroupNorm pre_norm{nullptr};  // GroupNorm(1, C_p)
  PointwiseConvBN qkv{nullptr};            // C_p -> 2 d_qk + C_p
  PointwiseConvBN proj{nullptr};           // C -> C, BN scale 0 at init (zero_init)

 private:
  std::int64_t partial_, qk_dim_;
};
TORCH_MODULE(SingleHeadAttention);

const OptionsSchema<SingleHeadOptions>& single_head_schema();

}  // namespace blocklab
