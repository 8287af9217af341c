// Weight initialisation and regularisers shared by backbones and blocks.
//
// - trunc_normal_: a normal truncated to [a, b], drawn by inverse CDF (as torch.nn.init.trunc_normal_).
// - init_vit_weights: timm's ViT init ("init_weights_vit_timm", the reference implementation of
//   Dosovitskiy et al. 2020, arXiv:2010.11929): every Linear weight trunc-normal std 0.02 with
//   absolute bounds [-2, 2] (timm's defaults), Linear biases zero, LayerNorm weight 1 and bias 0.
// - drop_path: stochastic depth per sample (Huang et al. 2016, "Deep Networks with Stochastic
//   Depth", arXiv:1603.09382), in the "DropPath" form of timm: in training, each sample's
//   residual branch is zeroed with probability p and otherwise scaled by 1/(1-p), so the
//   expectation is unchanged; identity in eval.
#pragma once

#include <torch/torch.h>

namespace blocklab {

// A Linear layer in -> out, without bias unless asked (the projections of many papers' code).
inline torch::nn::Linear make_linear(std::int64_t in, std::int64_t out, bool bias = false) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

// In place, without recording gradients; returns `t`.
torch::Tensor trunc_normal_(torch::Tensor t, double std, double a = -2.0, double b = 2.0, double mean = 0.0);

// A block that initialises its parameters as its paper's code does derives from KeepsOwnInit,
// and init_vit_weights leaves it and everything under it alone: Mamba's step-size projection
// (softplus(b_dt) in [0.001, 0.1], not softplus(0) = 0.69, which forgets within a few tokens),
// Titans' gate biases, Hyena's and M2's implicit filter MLPs. The state space, long-convolution
// and recurrent-memory blocks (issue 14) keep PyTorch's default Linear init plus their own parts,
// as their official code and zoology's models do.
class KeepsOwnInit {
 public:
  virtual ~KeepsOwnInit() = default;
};

// Re-initialises every Linear and LayerNorm under `root` (itself included) as timm's ViT does,
// except inside modules that derive from KeepsOwnInit. Visits modules in the order of
// root.modules() (pre-order), so the random draws do not depend on how the call is made.
void init_vit_weights(torch::nn::Module& root);

// x [B, ...]: one Bernoulli(1-p) draw per sample, scaled by 1/(1-p); identity when !training or p == 0.
torch::Tensor drop_path(const torch::Tensor& x, double p, bool training);

}  // namespace blocklab
