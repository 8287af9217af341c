// Shared helpers of the linear-attention family's tests (tests/blocks/linear/*.cpp).
#pragma once

#include <catch2/catch.hpp>

#include <string>

#include "blocks/interfaces.h"

namespace blocklab::linear_tests {

inline double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// A parameter of `m` by its state-dict name.
inline torch::Tensor param(torch::nn::Module& m, const std::string& name) { return m.named_parameters()[name]; }

inline std::int64_t count(const torch::nn::Module& m) {
  std::int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// A plain sequence, causal or not.
inline MixerContext context(bool causal) {
  MixerContext ctx;
  ctx.causal = causal;
  return ctx;
}

// [B, N, h d] -> [B, h, N, d] and back.
inline torch::Tensor split_heads(const torch::Tensor& t, std::int64_t heads) {
  return t.view({t.size(0), t.size(1), heads, -1}).transpose(1, 2);
}
inline torch::Tensor merge_heads(const torch::Tensor& t) {
  return t.transpose(1, 2).reshape({t.size(0), t.size(2), -1});
}

}  // namespace blocklab::linear_tests
