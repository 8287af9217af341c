// attention/cascaded-group: EfficientViT's cascaded group attention (CGA) in local windows. Each
// head sees its own split of the channels plus the previous head's output (the cascade), so
// the heads see different inputs and later heads refine earlier ones.
//
// Paper: "EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention", Liu
// et al. 2023, CVPR, arXiv:2305.07027, §3.2 (eqs. (1), (2)); read against microsoft/Cream
// EfficientViT/classification/model/efficientvit.py (CascadedGroupAttention,
// LocalWindowAttention) and timm's efficientvit_msra (catalog_002 B-51).
// On each M x M window of the grid tokens x [B, C, M, M], h heads, d_k = key_dim, d_v = C / h:
//   x_1, ..., x_h = split(x) along the channels (C / h each)
//   f_j = x_j + out_{j-1} (j > 1; f_1 = x_1)                                  (eq. (2), cascade)
//   q, k, v = ConvBN_1x1(f_j) (C/h -> 2 d_k + d_v);  q = ConvBN_DW(k x k)(q)
//   out_j = softmax(q^T k d_k^{-1/2} + B_j) v,  B_j[a, b] = T_j[|dy_ab|, |dx_ab|]  (eq. (1))
//   y = ConvBN_1x1(ReLU([out_1, ..., out_h]))  (C -> C, BN scale 0 at init: zero_init)
// B_j is LeViT's attention bias: one learned scalar per head per absolute offset (|dy|, |dx|)
// inside the window (zeros at init, as the official code), T_j stored at |dy| M + |dx|.
// Windows (LocalWindowAttention): a grid side not above `window` is one window of that side (per
// side, Swin's rule; the code's square window min(window, resolution) is the same on square
// grids); a larger grid is zero-padded at the bottom and right to whole windows (the padded
// tokens take part in the attention as keys, as in the official code) and the output is cropped
// back. The depth-wise convolution on q sees one window at a time (zero padding at its border).
// Our choices where the papers have no such tokens: prefix tokens (class, registers) are global
// tokens, as in the repo's other local attentions (local_core.h, with_prefix): every grid query
// also attends to them (no bias), they attend to every token, and they skip the depth-wise
// convolution. Plain sequences are refused (the convolution and the 2-D biases need a grid).
// The 1 x 1 ConvBNs act per token with batch statistics over every token in training (the padded
// grid's, as the official code, and the prefix tokens; blocks/common/conv_bn.h), running
// statistics in eval. The probe records each head's weights [B, h, N, N] over the real tokens
// (small N only); a query in a window with padding puts the rest of its weight on the padding.
//
// Shape contract: x [B, N, C] -> [B, N, C], N = prefix + grid_height * grid_width; heads divides
// C. Not causal. At init the output is 0 (the residual branch starts closed) unless zero_init is
// false. Parameters: h [(C/h)(2 d_k + C/h) + k^2 d_k + M^2] + C^2 + BN.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "blocks/attention/parts/local_core.h"
#include "blocks/common/conv_bn.h"
#include "blocks/common/options.h"
#include "blocks/common/weight_decay.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct CascadedGroupOptions {
  TORCH_ARG(std::int64_t, heads) = 4;     // h: channel groups, one head each (EfficientViT-M0: 4)
  TORCH_ARG(std::int64_t, key_dim) = 16;  // d_k of the queries and keys
  TORCH_ARG(std::int64_t, kernel) = 5;    // side of the depth-wise ConvBN on the queries (odd)
  TORCH_ARG(std::int64_t, window) = 7;    // window side M
  TORCH_ARG(bool, zero_init) = true;      // the projection's BN scale starts at 0 (the official code)
};

class CascadedGroupAttentionImpl : public TokenMixerImpl, public DeclaresNoWeightDecay {
 public:
  static constexpr const char* kKey = "attention/cascaded-group";
  CascadedGroupAttentionImpl(std::int64_t dim, const CascadedGroupOptions& options);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  // The bias tables (timm's no_weight_decay for EfficientViT).
  std::vector<std::string> no_weight_decay() const override { return {"attention_biases"}; }
  const CascadedGroupOptions& options() const { return options_; }
  // [out_1, ..., out_h] concatenated along the channels, [B, N, C], before the ReLU (tests).
  torch::Tensor head_outputs(const torch::Tensor& x, const MixerContext& ctx);

  torch::nn::ModuleList qkvs{nullptr};  // h x PointwiseConvBN: C/h -> 2 d_k + C/h, rows q | k | v
  torch::nn::ModuleList dws{nullptr};   // h x DepthwiseConvBN: d_k, kernel x kernel
  PointwiseConvBN proj{nullptr};        // C -> C, BN scale 0 at init (zero_init)
  torch::Tensor attention_biases;       // [h, M^2]: offset (|dy|, |dx|) at |dy| M + |dx|

 private:
  // The windows of a padded grid (a multiple of the window sides) behind `prefix` tokens.
  struct Windows {
    std::int64_t height = 0, width = 0, window_h = 0, window_w = 0, prefix = 0;
    torch::Device device = torch::kCPU;
    LocalPattern body, full;   // window_pattern over the grid; with the prefix tokens as global tokens
    torch::Tensor bias_index;  // [M_h M_w, M_h M_w]: the table entry of each pair in a window
  };
  const Windows& windows(const MixerContext& padded, const torch::Device& device);
  // f on x with the grid padded to whole windows, cropped back.
  torch::Tensor padded(const torch::Tensor& x, const MixerContext& ctx,
                       const std::function<torch::Tensor(const torch::Tensor&, const MixerContext&)>& f);
  // The cascade on a padded grid: out_1..out_h concatenated [B, N_padded, C]; `weights` (when
  // given) receives each head's dense map [B, 1, N_padded, N_padded].
  torch::Tensor cascade(const torch::Tensor& x, const MixerContext& padded, std::vector<torch::Tensor>* weights);
  // q [B, N, d_k] with the grid tokens through head j's depth-wise ConvBN, window by window.
  torch::Tensor convolved_queries(std::int64_t head, const torch::Tensor& q, const Windows& w);
  // The probe's maps [B, h, N, N] over the real tokens from the padded maps.
  torch::Tensor real_token_weights(const std::vector<torch::Tensor>& weights, const MixerContext& ctx,
                                   const MixerContext& padded) const;

  CascadedGroupOptions options_;
  std::int64_t head_dim_;  // C / h
  std::optional<Windows> cached_;
};
TORCH_MODULE(CascadedGroupAttention);

const OptionsSchema<CascadedGroupOptions>& cascaded_group_schema();

}  // namespace blocklab
