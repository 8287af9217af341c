// mixer/autoint: AutoInt's interacting layer as a token mixer: multi-head self-attention over
// feature fields with activated projections, a projected residual, ReLU and LayerNorm.
//
// Paper: "AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks",
// Song, Shi, Xiao, Duan, Xu, Zhang & Tang, CIKM 2019, arXiv:1810.11921 (the interacting layer);
// read against the official code DeepGraphLearning/RecommenderSystems featureRec/autoint/model.py
// (multihead_attention; catalog_000_001.md B 0-25). For fields (tokens) E [N, C], d = C / h:
//   Q = act(E W_Q + b_Q),  K = act(E W_K + b_K),  V = act(E W_V + b_V)     act = ReLU (the code)
//   A^h = softmax(Q_h K_h^T / sqrt(d))                                     (dropout on A)
//   O = ReLU(Concat_h(A^h V_h) + ReLU(E W_res + b_res)),  out = LayerNorm(O)
// As a token mixer the output width d_o equals the input width C; the code's layer stacks are
// blocks of the model. Parameters: 4 C^2 + 4 C (W_Q, W_K, W_V, W_res and their biases) + 2 C
// (the LayerNorm).
//
// Decisions:
// - qkv_act: relu (default, the code's dense layers) or none (the paper's linear W_Q, W_K, W_V).
//   It applies to Q, K and V only; the residual projection keeps the code's ReLU either way (the
//   paper's e^Res = ReLU(e~ + W_Res e) has none there), as the catalog writes the layer.
// - The logits are scaled by 1 / sqrt(d), as the code does (the paper's psi is the plain inner
//   product).
// - Q, K, V are one Linear C -> 3C ([q | k | v], heads contiguous: the shared projection,
//   parts/projection.h) and the attention is the shared dense core (parts/dense_core.h): the
//   probe records A [B, h, N, N], padded keys (ctx.lengths) are masked, and the fused softmax
//   kernel runs when the probe is off. There is no W_O: the heads are concatenated.
// - LayerNorm eps 1e-8, the code's `normalize`.
// - Fields are a set: no positions, so the mixer is permutation-equivariant over tokens. The
//   paper is not causal; ctx.causal is honoured anyway, since the dense core masks the future and
//   everything else acts per token.
//
// Shapes: x [B, N, C] -> [B, N, C]; heads divides C.
#pragma once

#include <array>
#include <string>

#include "blocks/attention/parts/dense_core.h"
#include "blocks/attention/parts/projection.h"
#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct AutoIntOptions {
  TORCH_ARG(std::int64_t, heads) = 2;        // h (default 2, the code's); divides the width
  TORCH_ARG(std::string, qkv_act) = "relu";  // activation on Q, K, V: relu (default, the code's) | none
  TORCH_ARG(double, attn_drop) = 0.0;        // dropout on A (default 0, the code's keep probability 1)
};

class AutoIntMixerImpl : public TokenMixerImpl, public DenseCore {
 public:
  static constexpr const char* kKey = "mixer/autoint";
  explicit AutoIntMixerImpl(std::int64_t dim, const AutoIntOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // The dense core's: causal, normalised weights, variable lengths.
  MixerCapabilities capabilities() const override { return core_capabilities(); }

  // x [B, N, C] -> Q, K, V [B, h, N, d] after the activation.
  std::array<torch::Tensor, 3> project(const torch::Tensor& x);
  // The heads' outputs o [B, h, N, d] -> LayerNorm(ReLU(Concat(o) + ReLU(x W_res + b_res))).
  torch::Tensor merge(const torch::Tensor& o, const torch::Tensor& x);

  std::int64_t heads() const { return projection_.heads(); }

 protected:
  // A = softmax(Q K^T / sqrt(d)): the fused kernel's contract.
  bool fused_path(const MixerContext&) const override { return true; }

 private:
  std::int64_t dim_;
  bool relu_;
  QkvProjection projection_;

 public:
  torch::nn::Linear& qkv;              // C -> 3C: W_Q | W_K | W_V (with biases)
  torch::nn::Linear res{nullptr};      // W_res: C -> C (with bias)
  torch::nn::LayerNorm norm{nullptr};  // over C, eps 1e-8
};
TORCH_MODULE(AutoIntMixer);

const OptionsSchema<AutoIntOptions>& autoint_schema();

}  // namespace blocklab
