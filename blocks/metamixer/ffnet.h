// metamixer/ffnet: FFNet's FFNified token mixer, the convolutional instance of MetaMixer.
//
// Paper: "FFNet: MetaMixer-based Efficient Convolutional Mixer Design", Yun, Lee & Ro 2024,
// arXiv:2406.02021, §3 (MetaMixer) and §4 (FFNification); read against ysj9909/FFNet
// models/ffnet.py (Token_Mixer, RepVGGDW, Conv2d_BN).
// MetaMixer: a token mixer in query-key-value form with unspecified sub-operations,
//   out = V(act(K(Q(x))))
// self-attention is one instance (Q linear, K "q k^T", act softmax, V "· v") and the FFN another
// (Q identity, K = W_1, act GELU, V = W_2). The FFNified token mixer (the official Token_Mixer):
//   Q = 1x1 Conv-BN,  K = depth-wise k1 x k1,  act = GELU,  V = depth-wise k2 x k2
// where a depth-wise 7 x 7 is RepVGG's pair, Conv-BN 7x7 + Conv-BN 3x3 (both depth-wise; one
// 7x7 after fusion), and other sizes are a depth-wise convolution with bias.
// The options choose each sub-operation, so the MetaMixer view is testable: query identity with
// key and value pointwise (1x1 convolutions with bias through ratio x C channels) is exactly an
// FFN on every token. Prefix tokens are not mixed (output 0).
//
// Shape contract: x [B, P + H*W, C] on ctx's grid -> the same; not causal.
#pragma once

#include <string>

#include "blocks/common/conv_bn.h"
#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct FFNetMixerOptions {
  TORCH_ARG(std::string, query) = "conv-bn";    // conv-bn (1x1 Conv-BN) | identity
  TORCH_ARG(std::string, key) = "depthwise";    // depthwise (k1 x k1) | pointwise (1x1, C -> ratio C)
  TORCH_ARG(std::string, value) = "depthwise";  // depthwise (k2 x k2) | pointwise (1x1, back to C)
  TORCH_ARG(std::int64_t, key_kernel) = 7;      // k1 (FFNet: 3 in early stages, 7 later)
  TORCH_ARG(std::int64_t, value_kernel) = 7;    // k2
  TORCH_ARG(double, ratio) = 1.0;               // hidden width / C of a pointwise key
  TORCH_ARG(std::string, activation) = "gelu";  // gelu | relu (FFNet's use_gelu)
};

// RepVGG's depth-wise pair at training time: Conv-BN k x k + Conv-BN (k/2) x (k/2), summed.
class RepDepthwiseImpl : public torch::nn::Module {
 public:
  RepDepthwiseImpl(std::int64_t channels, std::int64_t kernel);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, H, W]

  DepthwiseConvBN large{nullptr}, small{nullptr};
};
TORCH_MODULE(RepDepthwise);

class FFNetMixerImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "metamixer/ffnet";
  FFNetMixerImpl(std::int64_t dim, const FFNetMixerOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;

  PointwiseConvBN query{nullptr};   // null for query: identity
  torch::nn::AnyModule key, value;  // depth-wise (a conv or a RepDepthwise) or a 1x1 conv

 private:
  bool gelu_;
};
TORCH_MODULE(FFNetMixer);

}  // namespace blocklab
