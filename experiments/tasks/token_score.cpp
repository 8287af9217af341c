#include "experiments/tasks/token_score.h"

#include "datasets/dataset.h"

namespace blocklab {

TokenScore& TokenScore::operator+=(const TokenScore& o) {
  correct += o.correct;
  scored += o.scored;
  loss_sum += o.loss_sum;
  return *this;
}

TokenScore score_tokens(const torch::Tensor& logits, const torch::Tensor& targets) {
  const torch::Tensor flat = logits.reshape({-1, logits.size(-1)}), goal = targets.reshape({-1});
  const torch::Tensor scored = goal.ne(kIgnoreTarget);
  TokenScore s;
  s.scored = scored.sum().item<double>();
  s.correct = (flat.argmax(1).eq(goal) & scored).sum().item<double>();
  s.loss_sum = summed_cross_entropy(flat, goal).item<double>();
  return s;
}

torch::Tensor summed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  return torch::nn::functional::cross_entropy(
      logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnoreTarget).reduction(torch::kSum));
}

torch::Tensor scored_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  const torch::Tensor sum = summed_cross_entropy(logits, targets);
  return sum / targets.ne(kIgnoreTarget).sum().clamp_min(1).to(sum.dtype());
}

Batch trim_padding(const Batch& batch) {
  if (!batch.lengths.defined() || batch.lengths.numel() == 0) return batch;
  const std::int64_t n = batch.lengths.max().item<std::int64_t>();
  if (n >= batch.inputs.size(1)) return batch;
  return {batch.inputs.slice(1, 0, n), batch.targets.slice(1, 0, n), batch.lengths};
}

}  // namespace blocklab
