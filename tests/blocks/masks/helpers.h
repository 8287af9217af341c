// Shared helpers of the masks' property tests (tests/blocks/masks/*.cpp).
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "blocks/attention/softmax.h"
#include "blocks/masks/mask.h"
#include "registry/yaml_io.h"
#include "tests/golden.h"

namespace blocklab::mask_tests {

inline ConfigNode yaml(const std::string& text) { return parse_yaml(text, "test"); }

inline bool close(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, rtol, atol);
}

inline MixerContext grid_context(std::int64_t h, std::int64_t w, std::int64_t prefix = 0,
                                 AttentionProbe* probe = nullptr) {
  MixerContext ctx;
  ctx.grid_height = h;
  ctx.grid_width = w;
  ctx.prefix_tokens = prefix;
  ctx.probe = probe;
  return ctx;
}

inline MixerContext sequence_context(AttentionProbe* probe = nullptr) {
  MixerContext ctx;
  ctx.probe = probe;
  return ctx;
}

// attention/softmax (float64, eval) with the mask given as YAML ("" for none).
inline std::shared_ptr<MultiHeadAttentionImpl> attention(std::int64_t dim, std::int64_t heads, std::int64_t max_tokens,
                                                         const std::string& mask) {
  std::string text = "{type: attention/softmax, fused: false, heads: " + std::to_string(heads);
  if (!mask.empty()) text += ", mask: " + mask;
  text += "}";
  auto m = std::dynamic_pointer_cast<MultiHeadAttentionImpl>(
      mixer_registry().create(yaml(text), MixerArgs{dim, max_tokens}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

template <class M>
inline std::shared_ptr<M> mask_of(const std::shared_ptr<MultiHeadAttentionImpl>& a) {
  auto m = std::dynamic_pointer_cast<M>(a->mask);
  REQUIRE(m);
  return m;
}

// The recorded attention weights [B, h, N, N] of one forward.
inline torch::Tensor probe_weights(MultiHeadAttentionImpl& a, const torch::Tensor& x, MixerContext ctx) {
  AttentionProbe probe;
  probe.enable();
  ctx.probe = &probe;
  torch::NoGradGuard no_grad;
  a.forward(x, ctx);
  REQUIRE(probe.records().size() == 1);
  return probe.records()[0].probs;
}

// Token index of grid cell (r, c) after `prefix` tokens.
inline std::int64_t cell(std::int64_t r, std::int64_t c, std::int64_t w, std::int64_t prefix = 0) {
  return prefix + r * w + c;
}

// m [h, N, N] over an h_grid x w_grid grid (no prefix) depends only on p_i - p_j: shifting both
// tokens by one row or one column leaves every entry unchanged.
inline void check_translation_invariant(const torch::Tensor& m, std::int64_t gh, std::int64_t gw) {
  int compared = 0;
  for (std::int64_t r1 = 0; r1 < gh; ++r1)
    for (std::int64_t c1 = 0; c1 < gw; ++c1)
      for (std::int64_t r2 = 0; r2 < gh; ++r2)
        for (std::int64_t c2 = 0; c2 < gw; ++c2) {
          const auto a = m.select(1, cell(r1, c1, gw)).select(1, cell(r2, c2, gw));
          if (r1 + 1 < gh && r2 + 1 < gh) {
            const auto b = m.select(1, cell(r1 + 1, c1, gw)).select(1, cell(r2 + 1, c2, gw));
            CHECK(close(a, b, 1e-12, 1e-14));
            ++compared;
          }
          if (c1 + 1 < gw && c2 + 1 < gw) {
            const auto b = m.select(1, cell(r1, c1 + 1, gw)).select(1, cell(r2, c2 + 1, gw));
            CHECK(close(a, b, 1e-12, 1e-14));
            ++compared;
          }
        }
  CHECK(compared > 0);
}

}  // namespace blocklab::mask_tests
