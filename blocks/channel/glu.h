// glu: gated linear unit feed-forward network (SwiGLU by default).
//
// Paper: "GLU Variants Improve Transformer", Shazeer, 2020, arXiv:2002.05202 (§2):
//   FFN_GLU(x) = (act(x W1) * x W3) W2   (act = sigmoid: GLU of Dauphin et al. 2016,
//   arXiv:1612.08083; silu/swish: SwiGLU; gelu: GEGLU; none: the bilinear GLU, TransNormerLLM's
//   SGLU, Qin et al. 2023, arXiv:2307.14995, §3.4, used there without biases).
// Default ratio 8/3: the paper shrinks the hidden width by 2/3 so that the three matrices
// (3 C H) hold as many parameters as an MLP of ratio 4 (2 C 4C = 8 C^2); H = round(8C/3).
// Biases: the paper omits them; they are on by default here (bias option) like our mlp and
// timm's SwiGLU, so mlp and glu ablate only the gating.
// W1 and W3 are one Linear C -> 2H (one matmul): rows [0, H) are W1 (gate), [H, 2H) are W3.
//
// Shape contract: x [..., C] -> [..., C]; tokens are never mixed.
#pragma once

#include "blocks/common/ffn.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct GluOptions {
  TORCH_ARG(double, ratio) = 8.0 / 3.0;         // hidden width / dim (default 8/3: parameters of an mlp of ratio 4)
  TORCH_ARG(std::string, activation) = "silu";  // gate activation: silu (SwiGLU) | gelu (GEGLU) | sigmoid (GLU)
  TORCH_ARG(double, drop) = 0.0;                // dropout after the gating and the output (default 0)
  TORCH_ARG(bool, bias) = true;                 // biases on the three projections (default true; the paper omits them)
};

class GluImpl : public ChannelMixerImpl {
 public:
  GluImpl(std::int64_t dim, const GluOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x) override;
  const GluOptions& options() const { return options_; }
  std::int64_t hidden() const { return hidden_; }

  torch::nn::Linear fc1{nullptr};  // C -> 2H: [W1 (gate); W3 (value)]
  torch::nn::Linear fc2{nullptr};  // H -> C: W2

 private:
  GluOptions options_;
  std::int64_t hidden_;
  ActivationFn act_;
};
TORCH_MODULE(Glu);

const OptionsSchema<GluOptions>& glu_schema();

}  // namespace blocklab
