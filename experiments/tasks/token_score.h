// Per-token scoring (the recall task, experiments/tasks/recall.cpp; any task with per-token
// targets): predictions judged only where a target is set (MQAR's queries, the induction
// answer, the copied tokens); positions with kIgnoreTarget (prompt, noise, padding) count
// neither way.
#pragma once

#include <torch/torch.h>

#include "experiments/training/task_hooks.h"

namespace blocklab {

// Sums over the scored positions of a batch.
struct TokenScore {
  double correct = 0;   // argmax == target
  double scored = 0;    // positions with a target
  double loss_sum = 0;  // cross-entropy summed over them (nats)
  TokenScore& operator+=(const TokenScore& o);
  double accuracy() const { return scored > 0 ? correct / scored : 0.0; }
  double loss() const { return scored > 0 ? loss_sum / scored : 0.0; }
};

// logits [B, N, V] and targets [B, N] (kIgnoreTarget where not scored).
TokenScore score_tokens(const torch::Tensor& logits, const torch::Tensor& targets);

// The cross-entropy summed over the scored positions (nats), in the logits' dtype.
torch::Tensor summed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets);

// The mean cross-entropy over the scored positions (0 with a gradient when none is scored).
torch::Tensor scored_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets);

// The batch cut to its longest valid length (right padding beyond every row is dropped).
Batch trim_padding(const Batch& batch);

}  // namespace blocklab
