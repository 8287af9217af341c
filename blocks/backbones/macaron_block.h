// block/macaron: Macaron Net's FFN-attention-FFN block, the Strang-Marchuk splitting of the
// Transformer read as a multi-particle ODE: a half step of the "diffusion" term (the FFN), a
// whole step of the "convection" term (the attention), another half step of diffusion.
//
// Paper: "Understanding and Improving Transformer From a Multi-Particle Dynamic System Point of
// View", Lu et al. 2019, arXiv:1906.02762, §3-4 (eq. 9-12); the pre-norm form is Conformer's
// (Gulati et al. 2020, arXiv:2005.08100, eq. 1). No official code was found.
//   norm pre (default):  x += s F_1(LN_1 x);   x += A(LN_2 x);   x += s F_2(LN_3 x)
//   norm post (paper):   x = LN_1(x + s F_1 x); x = LN_2(x + A x); x = LN_3(x + s F_2 x)
// s = ffn_scale (1/2: the half steps). F_1 and F_2 are two channel mixers from the block's channel
// config (separate weights), A its token mixer; each residual has the block's stochastic depth.
// Recurrent when A is (the FFNs act token by token); causal when A is.
//
// Shape contract: x [B, N, C] -> [B, N, C].
#pragma once

#include <functional>
#include <string>

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct MacaronBlockOptions {
  TORCH_ARG(std::string, norm) = "pre";  // pre (Conformer) | post (the paper's fairseq form)
  TORCH_ARG(double, ffn_scale) = 0.5;    // s, the half step of each FFN
};

class MacaronBlockImpl : public BlockImpl {
 public:
  static constexpr const char* kKey = "block/macaron";
  MacaronBlockImpl(const BlockArgs& args, const MacaronBlockOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  bool recurrent() const override { return mixer->capabilities().recurrent; }
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  ChannelMixer ffn1, ffn2;
  TokenMixer mixer;

 private:
  // One sub-layer: x + branch(N(x)) (pre) or N(x + branch(x)) (post), branch scaled by `scale`.
  torch::Tensor sublayer(const torch::Tensor& x, torch::nn::LayerNorm& norm, double scale,
                         const std::function<torch::Tensor(const torch::Tensor&)>& branch);
  bool pre_;
  double ffn_scale_, drop_path_;
};
TORCH_MODULE(MacaronBlock);

}  // namespace blocklab
