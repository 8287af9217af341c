// Property tests of the local attention mixers (tag [local]): each mixer equals the local
// core's dense oracle computed from its own weights, pattern and biases (prefix tokens, odd
// grids, dilation, causal sequences); a kernel that covers the grid is attention/softmax with
// the same weights; NAT's bias is its table at the offset; options that cannot work fail early.
// And every local/ mixer learns to classify images inside a ViT (family_trains.h).
#include <catch2/catch.hpp>

#include <string>

#include "blocks/attention/parts/local_core.h"
#include "blocks/attention/softmax.h"
#include "blocks/family_trains.h"
#include "blocks/local/neighborhood.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

using namespace blocklab;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kDim = 24;

std::int64_t tokens_of(const MixerContext& ctx, std::int64_t plain) {
  return ctx.has_grid() ? ctx.prefix_tokens + ctx.grid_height * ctx.grid_width : plain;
}

TokenMixer make(const std::string& yaml) {
  auto m = mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{kDim, 128});
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

// The mixer's output rebuilt from its parts: its projection, the dense oracle over its pattern
// with its biases, its output projection.
torch::Tensor by_oracle(LocalAttentionImpl& m, const torch::Tensor& x, const MixerContext& ctx) {
  const auto [q, k, v] = m.project(x);
  const auto n = x.size(1);
  return m.merge(local_attend_dense(q, k, v, m.pattern(ctx, n), m.biases(ctx, n), m.scale()), x);
}

}  // namespace

TEST_CASE("local/neighborhood: equals the dense oracle over its pattern, with NAT's bias", "[local]") {
  torch::manual_seed(5);
  struct Case {
    std::string yaml;
    MixerContext ctx;
    std::int64_t plain = 0;
  };
  const std::vector<Case> cases{
      {"{type: local/neighborhood, heads: 2, kernel: 3}", attention_tests::context(7, 9, 1)},
      {"{type: local/neighborhood, heads: 2, kernel: 3, dilation: 2}", attention_tests::context(9, 11, 2)},
      {"{type: local/neighborhood, heads: 3, kernel: 7}", attention_tests::context(4, 4, 1)},  // kernel fitted to 3
      {"{type: local/neighborhood, heads: 2, kernel: 5}", attention_tests::context(0, 0, 0), 23},
      {"{type: local/neighborhood, heads: 2, kernel: 5, dilation: 3}", attention_tests::context(0, 0, 0, true), 31},
      {"{type: local/neighborhood, heads: 2, kernel: 3, rel_bias: false}", attention_tests::context(6, 5, 0)},
  };
  for (const auto& c : cases) {
    INFO(c.yaml << " on " << tokens_of(c.ctx, c.plain) << " tokens, causal " << c.ctx.causal);
    auto m = make(c.yaml);
    auto& local = dynamic_cast<NeighborhoodAttentionImpl&>(*m);
    if (local.rpb.defined()) {
      torch::NoGradGuard no_grad;
      local.rpb.normal_(0.0, 1.0);  // far from its 0.02 init, so that the bias shows
    }
    const auto x = torch::randn({2, tokens_of(c.ctx, c.plain), kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, c.ctx), by_oracle(local, x, c.ctx)) <= 1e-10);
  }
}

TEST_CASE("local/neighborhood: NAT's bias is the table entry at the offset in dilation steps", "[local]") {
  torch::manual_seed(6);
  auto m = make("{type: local/neighborhood, heads: 2, kernel: 3, dilation: 2}");
  auto& local = dynamic_cast<NeighborhoodAttentionImpl&>(*m);
  const auto ctx = attention_tests::context(6, 7, 0);
  const auto pattern = local.pattern(ctx, 42);
  const auto dense = local_scatter_dense(local.biases(ctx, 42), pattern, 0.0);  // [h, 42, 42]
  const auto mask = local_dense_mask(pattern);
  int checked = 0;
  for (std::int64_t i = 0; i < 42; ++i)
    for (std::int64_t j = 0; j < 42; ++j) {
      if (!mask[i][j].item<bool>()) continue;
      const auto dy = (j / 7 - i / 7) / 2, dx = (j % 7 - i % 7) / 2;
      REQUIRE(((j / 7 - i / 7) % 2 == 0 && (j % 7 - i % 7) % 2 == 0));  // same dilation class
      for (std::int64_t h = 0; h < 2; ++h)
        CHECK(dense[h][i][j].item<double>() == local.rpb[h][dy + 2][dx + 2].item<double>());
      ++checked;
    }
  CHECK(checked == 42 * 9);
}

TEST_CASE("local/neighborhood: a kernel covering the grid is attention/softmax with the same weights", "[local]") {
  torch::manual_seed(7);
  auto local = make("{type: local/neighborhood, heads: 2, kernel: 7, rel_bias: false}");
  auto dense = make("{type: attention/softmax, heads: 2, fused: false}");
  {
    torch::NoGradGuard no_grad;
    const auto from = local->named_parameters(), to = dense->named_parameters();
    REQUIRE(from.size() == to.size());
    for (const auto& p : from) to[p.key()].copy_(p.value());
  }
  for (const auto& ctx : {attention_tests::context(7, 7, 0), attention_tests::context(7, 7, 3)}) {
    const auto x = torch::randn({2, tokens_of(ctx, 0), kDim}, torch::kFloat64);
    CHECK(max_diff(local->forward(x, ctx), dense->forward(x, ctx)) <= 1e-10);
  }
  const auto seq = torch::randn({2, 7, kDim}, torch::kFloat64);
  CHECK(max_diff(local->forward(seq, attention_tests::context(0, 0, 0, true)),
                 dense->forward(seq, attention_tests::context(0, 0, 0, true))) <= 1e-10);
}

TEST_CASE("local/neighborhood: options that cannot work fail at build time, at the option", "[local]") {
  const auto fails_with = [](const std::string& yaml, const std::string& text) {
    try {
      make(yaml);
      FAIL("no error for " << yaml);
    } catch (const ConfigError& e) {
      CHECK_THAT(e.what(), Catch::Contains(text));
    }
  };
  fails_with("{type: local/neighborhood, kernel: 4}", "kernel must be odd");
  fails_with("{type: local/neighborhood, kernel: 3, mask: {type: mask/alibi}}", "takes no attention mask");
}

TEST_CASE("wave 4: every local mixer learns to classify images in a ViT", "[local]") {
  const auto keys = family_trains::mixers_with_prefixes({"local/"});
  REQUIRE(!keys.empty());
  for (const std::string& key : keys) DYNAMIC_SECTION("mixer " << key) {
      family_trains::check_learns_vit(key);
    }
}
