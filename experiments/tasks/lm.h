// task `lm`: next-token language modelling (causal), scored in bits per token.
//
// Loss: the cross-entropy of the next token at every position, targets equal to kIgnoreTarget
// (padding) not scored. Evaluation: per split, the mean loss in nats per predicted token, bits
// per token (characters for text/kjv: bpc = loss / ln 2, as in Graves 2013, arXiv:1308.0850)
// and perplexity exp(loss).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace blocklab {

// Summed next-token loss over the scored positions of a split.
struct TokenLoss {
  double nats = 0;          // sum of -ln p(target)
  std::int64_t tokens = 0;  // positions scored (targets != kIgnoreTarget)

  TokenLoss& operator+=(const TokenLoss& o);
  double loss() const;        // nats per token
  double bits() const;        // bits per token (bpc on characters)
  double perplexity() const;  // exp(loss)
};

// logits [B, N, V], targets [B, N] (kIgnoreTarget where not scored).
TokenLoss token_loss(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace blocklab
