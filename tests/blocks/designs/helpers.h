// What the block-design tests share (tests/blocks/designs/).
#pragma once

#include <catch2/catch.hpp>

#include "blocks/interfaces.h"

namespace blocklab::design_tests {

// Stepping the block token by token (init_state, step) equals its causal forward on x [B, N, C]
// (float64, max abs error <= 1e-9 at every token).
inline void check_steps_like_causal_forward(BlockImpl& block, const torch::Tensor& x) {
  MixerContext causal;
  causal.causal = true;
  const auto parallel = block.forward(x, causal);
  MixerState state = block.init_state(x.size(0), x.options());
  for (std::int64_t t = 0; t < x.size(1); ++t) {
    MixerStep s = block.step(x.select(1, t), state, MixerContext{});
    CHECK((s.output - parallel.select(1, t)).abs().max().item<double>() <= 1e-9);
    state = std::move(s.state);
  }
}

}  // namespace blocklab::design_tests
