// Re-parameterisable BatchNorm for Transformer blocks (SLAB, Guo et al., 2024, "SLAB: Efficient
// Transformers with Simplified Linear Attention and Progressive Re-parameterized Batch
// Normalization", arXiv:2405.11582, §3.1; official code xinghaochen/SLAB prepbn.py;
// catalog_003_004 D26):
//   RepBN(x) = BN_C(x) + alpha x            BN over the channels with statistics over batch x
//                                           tokens; alpha a scalar, init 1. At eval a per-channel
//                                           affine map (foldable into the next Linear).
//   PRepBN(x) = lambda LN(x) + (1 - lambda) RepBN(x) in training, lambda = iter / steps, where
//             iter starts at `steps` and falls by one every training forward to 0 (after `warm`
//             forwards of LN alone); at eval RepBN alone (the re-parameterised network).
// The counters are buffers, so a resumed run continues the schedule. Batch statistics mix the
// tokens of a sequence: these norms suit non-causal models (images), not causal LMs.
//
// Shape contract: x [..., C] -> [..., C].
#pragma once

#include <torch/torch.h>

namespace blocklab {

class RepBatchNormImpl : public torch::nn::Module {
 public:
  explicit RepBatchNormImpl(std::int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::BatchNorm1d bn{nullptr};
  torch::Tensor alpha;  // [1]
};
TORCH_MODULE(RepBatchNorm);

class ProgressiveRepBatchNormImpl : public torch::nn::Module {
 public:
  ProgressiveRepBatchNormImpl(std::int64_t channels, std::int64_t steps, std::int64_t warm = 0);
  torch::Tensor forward(const torch::Tensor& x);
  // lambda of the next training forward (1 during the warm-up).
  double lambda() const;

  torch::nn::LayerNorm ln{nullptr};
  RepBatchNorm rep{nullptr};
  torch::Tensor warm, iter;  // int64 buffers: LN-only forwards left, schedule position

 private:
  std::int64_t steps_;
};
TORCH_MODULE(ProgressiveRepBatchNorm);

}  // namespace blocklab
