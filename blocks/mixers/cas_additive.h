// mixer/cas-additive: CAS-ViT's convolutional additive token mixer: the query and key each pass
// a spatial and a channel gate, are added (no q k^T, no softmax), mixed by a depth-wise
// convolution and multiply the values; linear in the tokens.
//
// Paper: "CAS-ViT: Convolutional Additive Self-attention Vision Transformers for Efficient Mobile
// Applications", Zhang et al. 2024, arXiv:2408.03703, §3.3 (eq. 5-7); read against
// Tianfang-Zhang/CAS-ViT classification/model/rcvit.py (AdditiveTokenMixer, SpatialOperation,
// ChannelOperation):
//   q, k, v = Conv1x1_{C -> 3C}(x)                                   (no bias by default)
//   S(t) = t ⊙ sigmoid(Conv1x1_{C -> 1}(ReLU(BN(DWConv3x3(t)))))      (DWConv with bias; 1x1 without)
//   Ch(t) = t ⊙ sigmoid(Conv1x1_{C -> C}(GAP(t)))                     (without bias)
//   out = DWConv3x3_proj(DWConv3x3(Ch(S(q)) + Ch(S(k))) ⊙ v)         (S and Ch: separate weights for q, k)
// Prefix tokens are not mixed (output 0).
//
// Shape contract: x [B, P + H*W, C] on ctx's grid -> the same; not causal.
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct CasAdditiveOptions {
  TORCH_ARG(bool, qkv_bias) = false;  // bias of the q, k, v 1x1 convolution (CAS-ViT: false)
};

// Ch(S(t)): CAS-ViT's spatial gate then channel gate, for the query or the key.
class AdditiveGatesImpl : public torch::nn::Module {
 public:
  explicit AdditiveGatesImpl(std::int64_t dim);
  torch::Tensor forward(const torch::Tensor& t);       // [B, C, H, W]
  torch::Tensor spatial_gate(const torch::Tensor& t);  // sigmoid(...) [B, 1, H, W]
  torch::Tensor channel_gate(const torch::Tensor& s);  // sigmoid(...) [B, C, 1, 1]

  torch::nn::Conv2d spatial_dw{nullptr}, spatial_out{nullptr}, channel_fc{nullptr};
  torch::nn::BatchNorm2d spatial_norm{nullptr};
};
TORCH_MODULE(AdditiveGates);

class CasAdditiveMixerImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "mixer/cas-additive";
  CasAdditiveMixerImpl(std::int64_t dim, const CasAdditiveOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;

  torch::nn::Conv2d qkv{nullptr}, mix{nullptr}, proj{nullptr};
  AdditiveGates query_gates{nullptr}, key_gates{nullptr};
};
TORCH_MODULE(CasAdditiveMixer);

}  // namespace blocklab
