// block/gtrxl: GTrXL's gated transformer block: the identity-map reordering (pre-norm, a ReLU on
// each sub-layer's output) with the residual additions replaced by gating layers.
//
// Paper: "Stabilizing Transformers for Reinforcement Learning", Parisotto et al. 2019 (ICML 2020),
// arXiv:1910.06764, §3 (eq. in §3.1-3.2; catalog_000_001 B 1-22). No official code.
//   Y  = g_MHA(E, ReLU(Mixer(LN(E))))
//   E' = g_MLP(Y, ReLU(Channel(LN(Y))))
// with a gate g(x, y) (x the stream, y the sub-layer's output), per `gate`:
//   gru (default)  r = s(W_r y + U_r x),  z = s(W_z y + U_z x - b_g),  h = tanh(W_g y + U_g (r . x)),
//                  g = (1 - z) . x + z . h
//   input          g = s(W_g x) . x + y
//   output         g = x + s(W_g x - b_g) . y
//   highway        g = s(W_g x + b_g) . x + (1 - s(W_g x + b_g)) . y
//   sigmoid_tanh   g = x + s(W_g y - b_g) . tanh(U_g y)
// (s the logistic sigmoid; W, U bias-free C x C; b_g a learnable [C] vector initialised to
// gate_bias = 2, with its sign chosen so that a larger b_g moves every gate but `input` towards
// the identity g = x: b_g -> infinity makes the block exactly the identity, the paper's
// "initialise close to the identity".) Parameters per gru gate 6 C^2 + C.
// The Transformer-XL memory and relative positions are the token mixer's business (any
// registered mixer); the gates act token by token, so the block is causal when its mixer is and
// has a recurrent form when its mixer has one.
// Decisions where the paper is silent: the LayerNorms have eps 1e-6 (the house ViT norm);
// stochastic depth (the block's drop_path) drops a gate's update g(x, y) - x per sample, so a
// dropped block is the identity; b_g is a separate parameter, not a Linear bias, so the model's
// ViT init (zero Linear biases) keeps gate_bias.
//
// Shape contract: x [B, N, C] -> [B, N, C].
#pragma once

#include <string>

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

// One gating layer g(x, y) of the paper's §3.2 (the kinds above), token-wise on [..., C].
class GtrxlGateImpl : public torch::nn::Module {
 public:
  GtrxlGateImpl(std::int64_t dim, const std::string& kind = "gru", double bias = 2.0);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& y);
  const std::string& kind() const { return kind_; }

  // Those of the kind's formula; the others stay null / undefined.
  torch::nn::Linear w_r{nullptr}, u_r{nullptr}, w_z{nullptr}, u_z{nullptr}, w_g{nullptr}, u_g{nullptr};
  torch::Tensor b_g;  // [C]

 private:
  std::string kind_;
};
TORCH_MODULE(GtrxlGate);

struct GtrxlBlockOptions {
  TORCH_ARG(std::string, gate) = "gru";  // gru | input | output | highway | sigmoid_tanh (default gru)
  TORCH_ARG(double, gate_bias) = 2.0;    // b_g's initial value (default 2)
};

class GtrxlBlockImpl : public BlockImpl {
 public:
  static constexpr const char* kKey = "block/gtrxl";
  GtrxlBlockImpl(const BlockArgs& args, const GtrxlBlockOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // The recurrent form, when the mixer has one: the same two gated sub-layers on one token.
  bool recurrent() const override { return mixer->capabilities().recurrent; }
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  TokenMixer mixer;
  ChannelMixer channel;
  GtrxlGate gate1{nullptr}, gate2{nullptr};  // g_MHA, g_MLP

 private:
  // gate(x, ReLU(branch)), the update g - x under the block's stochastic depth.
  torch::Tensor gated(GtrxlGate& gate, const torch::Tensor& x, const torch::Tensor& branch);
  // The second half: g_MLP(Y, ReLU(Channel(LN(Y)))).
  torch::Tensor channel_half(const torch::Tensor& y);
  double drop_path_;
};
TORCH_MODULE(GtrxlBlock);

const OptionsSchema<GtrxlBlockOptions>& gtrxl_block_schema();

}  // namespace blocklab
