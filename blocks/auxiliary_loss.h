// Auxiliary losses: terms a block adds to the training loss from what it computed in its last
// training forward (e.g. Hedgehog's attention distillation; later an MoE balance loss). The
// training loop adds every module's term to the task loss after each forward
// (experiments/training/loop.cpp), so any task trains them without knowing the block.
#pragma once

#include <torch/torch.h>

namespace blocklab {

class AuxiliaryLoss {
 public:
  virtual ~AuxiliaryLoss() = default;
  // The term of the last training forward (undefined if none), forgotten once taken.
  virtual torch::Tensor take_auxiliary_loss() = 0;
};

// The sum of the terms of every module under `root` that has one; undefined when none does.
inline torch::Tensor take_auxiliary_losses(torch::nn::Module& root) {
  torch::Tensor total;
  for (const auto& m : root.modules(/*include_self=*/true))
    if (auto* source = dynamic_cast<AuxiliaryLoss*>(m.get())) {
      const auto term = source->take_auxiliary_loss();
      if (term.defined()) total = total.defined() ? total + term : term;
    }
  return total;
}

}  // namespace blocklab
