// The recall task's scoring (experiments/tasks/token_score.h) on known logits: only positions with
// a target count, for accuracy and for the loss; padding beyond every row is cut.
#include <catch2/catch.hpp>

#include <cmath>

#include "datasets/dataset.h"
#include "experiments/tasks/token_score.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

TEST_CASE("recall: accuracy and loss count only the scored positions", "[recall]") {
  // Two rows of three positions over a vocabulary of 4; argmax per position below.
  torch::Tensor logits = torch::full({2, 3, 4}, -10.0);
  const std::int64_t argmax[2][3] = {{1, 2, 3}, {0, 0, 2}};
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 3; ++t) logits[b][t][argmax[b][t]] = 10.0;
  const std::int64_t I = kIgnoreTarget;
  // Scored: (0,1) right, (1,0) wrong, (1,2) right; every ignored position is wrong on purpose.
  const torch::Tensor targets =
      torch::tensor(std::vector<std::int64_t>{I, 2, I, 3, I, 2}, torch::kLong).reshape({2, 3});
  const TokenScore s = score_tokens(logits, targets);
  CHECK(s.scored == 3);
  CHECK(s.correct == 2);
  CHECK(s.accuracy() == Approx(2.0 / 3.0));
  // Per scored position: log(sum exp) - the target's logit; right: ~3 e^-20, wrong: ~20.
  const double right = std::log(std::exp(10.0) + 3 * std::exp(-10.0)) - 10.0;
  const double wrong = std::log(std::exp(10.0) + 3 * std::exp(-10.0)) + 10.0;
  CHECK(s.loss_sum == Approx(2 * right + wrong));
  CHECK(s.loss() == Approx((2 * right + wrong) / 3));
  CHECK(scored_cross_entropy(logits, targets).item<double>() == Approx(s.loss()));
  // Nothing scored: accuracy 0 and a zero loss, not NaN.
  const torch::Tensor none = torch::full({2, 3}, I, torch::kLong);
  CHECK(score_tokens(logits, none).scored == 0);
  CHECK(scored_cross_entropy(logits, none).item<double>() == 0.0);
}

TEST_CASE("recall: a padded batch is cut to its longest row", "[recall]") {
  const Batch batch{torch::arange(12).reshape({2, 6}), torch::zeros({2, 6}, torch::kLong),
                    torch::tensor(std::vector<std::int64_t>{3, 4}, torch::kLong)};
  const Batch cut = trim_padding(batch);
  CHECK(cut.inputs.sizes() == torch::IntArrayRef{2, 4});
  CHECK(cut.inputs.equal(batch.inputs.slice(1, 0, 4)));
  CHECK(cut.targets.size(1) == 4);
  CHECK(trim_padding(Batch{batch.inputs, batch.targets, {}}).inputs.size(1) == 6);
}

}  // namespace BLOCKLAB_TEST_FILE
