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

// In place, without recording gradients; returns `t`.
torch::Tensor trunc_normal_(torch::Tensor t, double std, double a = -2.0, double b = 2.0, double mean = 0.0);

// Re-initialises every Linear and LayerNorm under `root` (itself included) as timm's ViT does.
void init_vit_weights(torch::nn::Module& root);

// x [B, ...]: one Bernoulli(1-p) draw per sample, scaled by 1/(1-p); identity when !training or p == 0.
torch::Tensor drop_path(const torch::Tensor& x, double p, bool training);

}  // namespace blocklab
