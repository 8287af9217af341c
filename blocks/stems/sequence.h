// What the sequence stems (stem/tokens, stem/series) share: their sizes (the option when set,
// else the data's, else a ConfigError at the option), a learned 1-D position table registered on
// the stem (normal std 0.02, no weight decay), and their layout (no grid, no prefix, causal).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "blocks/common/options.h"
#include "blocks/layout.h"

namespace blocklab {

inline std::int64_t size_from_option_or_data(std::int64_t option, std::int64_t data, const ConfigNode& params,
                                             const std::string& stem, const std::string& name) {
  if (option > 0) return option;
  if (data > 0) return data;
  config_fail(params, name, stem + " needs its " + name + ": the data do not give it",
              {"set " + name + " in the stem's config"});
}

struct SequencePositions {
  torch::Tensor pos_embed;  // [1, tokens, dim] when learned

  SequencePositions() = default;
  SequencePositions(torch::nn::Module& owner, bool learned, std::int64_t tokens, std::int64_t dim) {
    if (learned) pos_embed = owner.register_parameter("pos_embed", torch::zeros({1, tokens, dim}));
  }
  // x [B, n, dim] with n <= tokens: positions 0..n-1 added.
  torch::Tensor add(const torch::Tensor& x) const {
    return pos_embed.defined() ? x + pos_embed.slice(1, 0, x.size(1)) : x;
  }
  void init() {
    torch::NoGradGuard no_grad;
    if (pos_embed.defined()) pos_embed.normal_(0.0, 0.02);
  }
  std::vector<std::string> no_weight_decay() const {
    return pos_embed.defined() ? std::vector<std::string>{"pos_embed"} : std::vector<std::string>{};
  }
};

inline MixerContext sequence_layout(bool causal, const torch::Tensor& lengths = {}) {
  MixerContext ctx;
  ctx.causal = causal;
  ctx.lengths = lengths;
  return ctx;
}

}  // namespace blocklab
