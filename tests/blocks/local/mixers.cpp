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
#include "blocks/local/axial.h"
#include "blocks/local/halo.h"
#include "blocks/local/neighborhood.h"
#include "blocks/local/window.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

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
  const auto [keys, values] = m.pattern_keys_values(ctx, q, k, v);
  const auto o = local_attend_dense(q, keys, values, m.pattern(ctx, x.size(1)), m.biases(ctx, q), m.scale());
  return m.merge(o, x);
}

// Queries of n tokens for the biases that do not depend on them.
torch::Tensor any_queries(LocalAttentionImpl& m, std::int64_t n) {
  return torch::zeros({1, m.heads(), n, m.head_dim()}, torch::kFloat64);
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
  const auto dense = local_scatter_dense(local.biases(ctx, any_queries(local, 42)), pattern, 0.0);  // [h, 42, 42]
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

TEST_CASE("local mixers: options that cannot work fail at build time, at the option", "[local]") {
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
  fails_with("{type: local/window, window: 4, shift: 4}", "shift must be below the window (4), got 4");
}

TEST_CASE(
    "local/window, local/maxvit-block, local/maxvit-grid: equal the dense oracle over their groups, with their bias",
    "[local]") {
  torch::manual_seed(8);
  const std::vector<std::pair<std::string, MixerContext>> cases{
      {"{type: local/window, heads: 2, window: 4}", attention_tests::context(8, 12, 1)},
      {"{type: local/window, heads: 2, window: 4, shift: 2}", attention_tests::context(8, 12, 1)},
      {"{type: local/window, heads: 3, window: 3, shift: 1}", attention_tests::context(6, 9, 0)},
      {"{type: local/window, heads: 2, window: 7, shift: 3}", attention_tests::context(4, 4, 2)},  // one window
      {"{type: local/maxvit-block, heads: 2, window: 4}", attention_tests::context(8, 12, 1)},
      {"{type: local/maxvit-grid, heads: 2, grid: 4}", attention_tests::context(8, 12, 1)},
      {"{type: local/maxvit-grid, heads: 3, grid: 3}", attention_tests::context(6, 9, 0)},
      {"{type: local/davit-window, heads: 2, window: 3}", attention_tests::context(6, 9, 1)},
  };
  for (const auto& [yaml, ctx] : cases) {
    INFO(yaml << " on a " << ctx.grid_height << "x" << ctx.grid_width << " grid");
    auto m = make(yaml);
    auto& local = dynamic_cast<WindowAttentionImpl&>(*m);
    if (local.relative_position_bias_table.defined()) {
      torch::NoGradGuard no_grad;
      local.relative_position_bias_table.normal_(0.0, 1.0);
    }
    const auto x = torch::randn({2, tokens_of(ctx, 0), kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, ctx), by_oracle(local, x, ctx)) <= 1e-10);
  }
  // DaViT's windows have no bias: the parameters of attention/softmax, nothing more.
  CHECK(make("{type: local/davit-window, heads: 2}")->parameters().size() ==
        make("{type: attention/softmax, heads: 2}")->parameters().size());
}

TEST_CASE("local/window: Swin's bias index, zero padding to whole windows, a window covering the grid", "[local]") {
  torch::manual_seed(9);
  auto m = make("{type: local/window, heads: 2, window: 4}");
  auto& local = dynamic_cast<WindowAttentionImpl&>(*m);
  // Swin's relative_position_index: coords (row, col) of the M^2 members, query - key + M - 1,
  // row * (2M - 1) + col.
  const auto ctx = attention_tests::context(4, 4, 0);
  const auto bias = local.biases(ctx, any_queries(local, 16)).at(0);  // [h, 1, 16, 16]
  for (std::int64_t i = 0; i < 16; ++i)
    for (std::int64_t j = 0; j < 16; ++j) {
      const auto index = (i / 4 - j / 4 + 3) * 7 + (i % 4 - j % 4 + 3);
      for (std::int64_t h = 0; h < 2; ++h)
        CHECK(bias[h][0][i][j].item<double>() == local.relative_position_bias_table[index][h].item<double>());
    }
  // A 7 x 10 grid: zeros padded to 8 x 12 (bottom and right) before the projection, cropped after.
  const auto x = torch::randn({2, 1 + 70, kDim}, torch::kFloat64);
  const auto grid = x.narrow(1, 1, 70).unflatten(1, {7, 10});
  const auto padded =
      torch::cat({x.narrow(1, 0, 1), torch::constant_pad_nd(grid, {0, 0, 0, 2, 0, 1}).flatten(1, 2)}, 1);
  const auto y = m->forward(padded, attention_tests::context(8, 12, 1));
  const auto expected = torch::cat(
      {y.narrow(1, 0, 1), y.narrow(1, 1, 96).unflatten(1, {8, 12}).narrow(1, 0, 7).narrow(2, 0, 10).flatten(1, 2)}, 1);
  CHECK(max_diff(m->forward(x, attention_tests::context(7, 10, 1)), expected) <= 1e-12);
  // One window over the whole grid, no bias: attention/softmax with the same weights.
  auto whole = make("{type: local/window, heads: 2, window: 6, shift: 3, rel_bias: false}");
  auto dense = make("{type: attention/softmax, heads: 2, fused: false}");
  {
    torch::NoGradGuard no_grad;
    auto to = dense->named_parameters();
    for (const auto& p : whole->named_parameters()) to[p.key()].copy_(p.value());
  }
  const auto z = torch::randn({2, 2 + 36, kDim}, torch::kFloat64);
  const auto six = attention_tests::context(6, 6, 2);
  CHECK(max_diff(whole->forward(z, six), dense->forward(z, six)) <= 1e-10);
}

TEST_CASE(
    "local/maxvit-block and local/maxvit-grid: the oracle, global at full size, the grid of one, "
    "a global receptive field together",
    "[local]") {
  torch::manual_seed(10);
  // G = 1: every group is one token, which attends to itself only: the output is W_O v.
  auto one = make("{type: local/maxvit-grid, heads: 2, grid: 1}");
  auto& single = dynamic_cast<WindowAttentionImpl&>(*one);
  const auto x = torch::randn({2, 36, kDim}, torch::kFloat64);
  const auto v = single.project(x)[2];
  CHECK(max_diff(one->forward(x, attention_tests::context(6, 6, 0)), single.merge(v, x)) <= 1e-12);
  // Block then grid attention: every output depends on every input (MaxViT's global receptive field).
  auto block = make("{type: local/maxvit-block, heads: 2, window: 3}");
  auto grid = make("{type: local/maxvit-grid, heads: 2, grid: 3}");
  const auto ctx = attention_tests::context(9, 9, 0);
  const auto input = torch::randn({1, 81, kDim}, torch::kFloat64).requires_grad_(true);
  const auto y = grid->forward(block->forward(input, ctx), ctx);
  for (const std::int64_t i : {0, 40, 80}) {
    const auto g = torch::autograd::grad({y[0][i].sum()}, {input}, {}, true)[0];
    CHECK((g[0].abs().sum(-1) > 0).all().item<bool>());
  }
  // Either alone is not global: a block output sees its window only.
  const auto g = torch::autograd::grad({block->forward(input, ctx)[0][0].sum()}, {input})[0];
  CHECK((g[0].abs().sum(-1) > 0).sum().item<std::int64_t>() == 9);
}

TEST_CASE("local/axial: the two axes' oracles summed; a pixel reaches its row and column, two hops everything",
          "[local]") {
  torch::manual_seed(11);
  auto m = make("{type: local/axial, heads: 2}");
  auto& axial = dynamic_cast<AxialAttentionImpl&>(*m);
  CHECK_FALSE(axial.rows->qkv->options.bias());  // lucidrains: q, k, v without bias
  const auto with_prefix = attention_tests::context(5, 7, 2);
  const auto x = torch::randn({2, 37, kDim}, torch::kFloat64);
  CHECK(max_diff(m->forward(x, with_prefix),
                 by_oracle(*axial.rows, x, with_prefix) + by_oracle(*axial.columns, x, with_prefix)) <= 1e-10);
  // Sum mode: perturbing pixel (2, 3) of a 5 x 7 grid changes the outputs of row 2 and column 3 only.
  const auto ctx = attention_tests::context(5, 7, 0);
  const auto input = torch::randn({1, 35, kDim}, torch::kFloat64);
  auto moved = input.clone();
  moved[0][2 * 7 + 3] += 1.0;
  const auto changed = (m->forward(moved, ctx) - m->forward(input, ctx)).abs().sum(-1)[0] > 1e-12;
  for (std::int64_t i = 0; i < 35; ++i) CHECK(changed[i].item<bool>() == (i / 7 == 2 || i % 7 == 3));
  // Sequential mode: rows then columns reach the whole grid in one layer.
  auto sequential = make("{type: local/axial, heads: 2, sum: false}");
  const auto all = (sequential->forward(moved, ctx) - sequential->forward(input, ctx)).abs().sum(-1)[0] > 1e-12;
  CHECK(all.all().item<bool>());
}

TEST_CASE("local/halo: the oracle over the padded keys with the relative logits; halo 0 is block-local", "[local]") {
  torch::manual_seed(12);
  for (const auto& ctx : {attention_tests::context(8, 12, 2), attention_tests::context(6, 6, 0)}) {
    auto m = make("{type: local/halo, heads: 2, block: 2, halo: 1}");
    auto& halo = dynamic_cast<HaloAttentionImpl&>(*m);
    const auto x = torch::randn({2, tokens_of(ctx, 0), kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, ctx), by_oracle(halo, x, ctx)) <= 1e-10);
  }
  // Halo 0: a block's outputs depend on its own block only.
  auto local = make("{type: local/halo, heads: 2, block: 3, halo: 0}");
  const auto ctx = attention_tests::context(6, 6, 0);
  const auto input = torch::randn({1, 36, kDim}, torch::kFloat64).requires_grad_(true);
  const auto g = torch::autograd::grad({local->forward(input, ctx)[0][0].sum()}, {input})[0][0].abs().sum(-1);
  for (std::int64_t i = 0; i < 36; ++i) CHECK((g[i].item<double>() > 0) == (i / 6 < 3 && i % 6 < 3));
  // One block covering the grid and no halo: attention/softmax plus the relative logits; without
  // them, attention/softmax itself.
  auto whole = make("{type: local/halo, heads: 2, block: 6, halo: 0, rel_pos: false, qkv_bias: true}");
  auto dense = make("{type: attention/softmax, heads: 2, fused: false}");
  {
    torch::NoGradGuard no_grad;
    auto to = dense->named_parameters();
    for (const auto& p : whole->named_parameters()) to[p.key()].copy_(p.value());
  }
  const auto z = torch::randn({2, 36, kDim}, torch::kFloat64);
  CHECK(max_diff(whole->forward(z, ctx), dense->forward(z, ctx)) <= 1e-10);
}

TEST_CASE("wave 4: every local mixer learns to classify images in a ViT", "[local]") {
  const auto keys = family_trains::mixers_with_prefixes({"local/"});
  REQUIRE(!keys.empty());
  for (const std::string& key : keys) DYNAMIC_SECTION("mixer " << key) {
      family_trains::check_learns_vit(key);
    }
}

}  // namespace BLOCKLAB_TEST_FILE
