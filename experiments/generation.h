// Sampling text from a trained causal language model (`blocklab generate`).
//
// Two ways through the model, with the same distribution:
//   step  ModelImpl::init_state/step, one token at a time with constant work per token, when
//         every layer's token mixer is recurrent (MixerCapabilities::recurrent) and the stem
//         embeds any position it will be asked for (learned positions stop at the context);
//   full  the full forward over the last `context` tokens for every new token (attention).
// Sampling (Holtzman et al. 2020, arXiv:1904.09751, §3 for top-k): logits / temperature, the
// k largest kept (top_k > 0), a draw from the softmax with a CPU generator seeded by `seed`;
// temperature 0 takes the most likely token (greedy). Same model, prompt and options: same text.
#pragma once

#include <cstdint>
#include <vector>

#include "blocks/model.h"

namespace blocklab {

struct SamplingOptions {
  std::int64_t tokens = 300;  // new tokens
  double temperature = 0.8;   // 0: greedy
  std::int64_t top_k = 0;     // 0: every token
  std::uint64_t seed = 0;
};

enum class GenerationPath { automatic, step, full };

// Whether `automatic` steps for `total` tokens (prompt + new): a recurrent model whose stem
// can embed position total - 1.
bool steps_for(ModelImpl& model, std::int64_t total);

struct Generated {
  std::vector<std::int64_t> ids;  // the new tokens only
  bool stepped = false;           // which path produced them
};

// The continuation of `prompt` (non-empty ids). `context`: the longest input of the full
// forward. The model runs in eval mode without gradients, on the CPU.
Generated generate_tokens(ModelImpl& model, const std::vector<std::int64_t>& prompt, std::int64_t context,
                          const SamplingOptions& options, GenerationPath path = GenerationPath::automatic);

}  // namespace blocklab
