// SRMSNorm: RMS normalisation without a learnable scale (TransNormerLLM, Qin et al. 2023,
// arXiv:2307.14995, §3.4; OpenNLPLab/lightning-attention srmsnorm.py):
//   SRMSNorm(x) = x / sqrt(mean_c(x_c^2) + eps),  eps 1e-6, over the last dimension,
// computed in float32 at least and cast back. Every token then has RMS 1 (up to eps).
#pragma once

#include <torch/torch.h>

namespace blocklab {

torch::Tensor srms_norm(const torch::Tensor& x, double eps = 1e-6);

}  // namespace blocklab
