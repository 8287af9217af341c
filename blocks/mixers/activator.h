// mixer/activator: the Activator's gating unit, a GLU-style MLP in the token mixer's place. It
// mixes no tokens at all (every token is processed alone): a "bag of patches" baseline whose only
// cross-token interaction is the model's pooling.
//
// Paper: "Activator: GLU Activation Function as the Core Component of a Vision Transformer",
// Abdullah Nazhat Abdullah and Tarkan Aydin, 2024, arXiv:2405.15953; read against
// Abdullah-88/Activator activator.py (ActivatorGatingUnit). Catalog B 1-33:
//   GatingUnit(x) = W_3 ( LN_F(GELU(W_1 x + b_1)) ⊙ LN_F(W_2 x + b_2) ) + b_3
// W_1, W_2: C -> F, W_3: F -> C, biases on; ONE LayerNorm LN_F over F shared by both branches
// (one module, one gamma and beta, as the code). The enclosing block supplies the Activator
// block's residual, norm and FFN (x + GU(LN(x)); x + FFN(LN(x))).
//
// Decisions where the catalog is silent:
// - Hidden width F = round(ratio * C), default ratio 2: the official CIFAR-10 model uses
//   d_ffn = 512 at C = 256 for the gating unit (and its FFN).
// - GELU exact (erf), LayerNorm eps 1e-5 (torch's defaults, which the code uses).
// - Token-wise, so trivially causal and padding-proof; recurrent with an empty state: a step is
//   the same map on x_t (the state only counts positions).
//
// Shape contract: x [B, N, C] -> [B, N, C] (any N); step x_t [B, C] -> [B, C].
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct ActivatorOptions {
  TORCH_ARG(double, ratio) = 2.0;  // hidden width F / C (Activator: 512 / 256 = 2)
};

class ActivatorMixerImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "mixer/activator";
  ActivatorMixerImpl(std::int64_t dim, const ActivatorOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;

  // The gating unit on x [..., C] -> [..., C], token by token.
  torch::Tensor gate(const torch::Tensor& x);

  torch::nn::Linear w1{nullptr}, w2{nullptr}, w3{nullptr};  // C -> F, C -> F, F -> C
  torch::nn::LayerNorm norm{nullptr};                       // LN_F, shared by both branches
};
TORCH_MODULE(ActivatorMixer);

}  // namespace blocklab
