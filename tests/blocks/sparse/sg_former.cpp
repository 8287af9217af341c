// Property tests of sparse/sg-former, SG-Former's hybrid-scale and reallocation attentions (tag
// [sparse]): the significance terms are means of row-stochastic matrices (the global term sums
// to 1 over the reduced keys, the local term to 1 inside every window); with uniform
// significance the reallocation is a fixed grouping of the tokens in raster (row- or column-major)
// order; odd grids keep their shapes; and both roles equal the paper's rule rebuilt here densely
// from the mixer's weights (float64, <= 1e-9). The ViT learning check is in mixers.cpp (the
// registry example, role hybrid); here the reallocation role fits a
// token-mean target (its loss falls).
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <numeric>

#include "blocks/sparse/sg_former.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::context;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kSgDim = 8;

SgFormerAttentionImpl& sg_of(TokenMixer& m) { return dynamic_cast<SgFormerAttentionImpl&>(*m); }

TokenMixer make_sg(const std::string& options) {
  torch::manual_seed(3);
  auto m = mixer_registry().create(parse_yaml("{type: sparse/sg-former, heads: 2, " + options + "}", "t.yaml"),
                                   MixerArgs{kSgDim, 256});
  m->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;  // biases off zero so that every term shows
    for (auto& p : m->parameters()) p.normal_(0.0, 0.5);
  }
  m->eval();
  return m;
}

torch::Tensor linear_by_hand(const torch::nn::Linear& l, const torch::Tensor& x) {
  auto y = torch::matmul(x, l->weight.t());
  return l->bias.defined() ? y + l->bias : y;
}

// [B, N, h d] -> [B, h, N, d] and back.
torch::Tensor split_heads(const torch::Tensor& t, std::int64_t heads) {
  return t.view({t.size(0), t.size(1), heads, -1}).transpose(1, 2);
}
torch::Tensor join_heads(const torch::Tensor& t) { return t.transpose(1, 2).reshape({t.size(0), t.size(2), -1}); }

// Dense softmax attention with an optional boolean mask [N_q, N_k].
torch::Tensor dense_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                              const torch::Tensor& allowed = {}) {
  auto s = torch::matmul(q, k.transpose(-2, -1)) * scale;
  if (allowed.defined()) s = s.masked_fill(allowed.logical_not(), -1e300);
  return torch::matmul(torch::softmax(s, -1), v);
}

// LePE on the grid tokens and W_o, as the paper: proj(o + lepe) with lepe on the grid only.
torch::Tensor finish_by_hand(SgFormerAttentionImpl& m, const torch::Tensor& o, const torch::Tensor& x, std::int64_t h,
                             std::int64_t w, std::int64_t prefix) {
  const auto grid = x.narrow(1, prefix, h * w);
  const auto image = linear_by_hand(m.lepe_linear, grid).transpose(1, 2).reshape({x.size(0), kSgDim, h, w});
  const auto k = m.lepe_conv->weight.size(-1);
  const auto local =
      torch::conv2d(image, m.lepe_conv->weight, m.lepe_conv->bias, 1, k / 2, 1, kSgDim).flatten(2).transpose(1, 2);
  return linear_by_hand(m.proj, torch::cat({o.narrow(1, 0, prefix), o.narrow(1, prefix, h * w) + local}, 1));
}

// The grid zero-padded at the bottom/right to (hp, wp) rows/columns, as tokens [B, hp wp, C].
torch::Tensor pad_grid(const torch::Tensor& grid, std::int64_t h, std::int64_t w, std::int64_t hp, std::int64_t wp) {
  auto out = torch::zeros({grid.size(0), hp, wp, grid.size(2)}, grid.options());
  out.narrow(1, 0, h).narrow(2, 0, w).copy_(grid.view({grid.size(0), h, w, -1}));
  return out.flatten(1, 2);
}

// The hybrid role densely from the paper's rule.
torch::Tensor hybrid_oracle(SgFormerAttentionImpl& m, const torch::Tensor& x, std::int64_t h, std::int64_t w,
                            std::int64_t prefix) {
  const auto sr = m.options().sr(), half = m.options().heads() / 2;
  const double scale = m.scale();
  const auto hr = (h + sr - 1) / sr, wr = (w + sr - 1) / sr;
  const auto grid = x.narrow(1, prefix, h * w), xp = x.narrow(1, 0, prefix);
  // Global half: x_r = GELU(LN(Conv_{k=s=sr}(x))) on the zero-padded grid.
  const auto image =
      pad_grid(grid, h, w, hr * sr, wr * sr).transpose(1, 2).reshape({x.size(0), kSgDim, hr * sr, wr * sr});
  auto xr = torch::conv2d(image, m.reduce->weight, m.reduce->bias, sr).flatten(2).transpose(1, 2);
  xr = torch::gelu(torch::layer_norm(xr, {kSgDim}, m.reduce_norm->weight, m.reduce_norm->bias, 1e-5));
  const auto kv1 = linear_by_hand(m.kv1, torch::cat({xp, xr}, 1));
  const auto o1 =
      dense_attention(split_heads(linear_by_hand(m.q1, x), half), split_heads(kv1.narrow(2, 0, kSgDim / 2), half),
                      split_heads(kv1.narrow(2, kSgDim / 2, kSgDim / 2), half), scale);
  // Local half: windows of the grid padded to a multiple of the window, prefix tokens global.
  const auto mh = std::min(m.options().window(), h), mw = std::min(m.options().window(), w);
  const auto hp = (h + mh - 1) / mh * mh, wp = (w + mw - 1) / mw * mw, n = prefix + hp * wp;
  const auto xl = torch::cat({xp, pad_grid(grid, h, w, hp, wp)}, 1);
  auto allowed = torch::zeros({n, n}, torch::kBool);
  auto mask = allowed.accessor<bool, 2>();
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      const auto gi = i - prefix, gj = j - prefix;
      const bool same = gi >= 0 && gj >= 0 && gi / wp / mh == gj / wp / mh && gi % wp / mw == gj % wp / mw;
      mask[i][j] = i < prefix || j < prefix || same;
    }
  const auto kv2 = linear_by_hand(m.kv2, xl);
  auto o2 = join_heads(dense_attention(split_heads(linear_by_hand(m.q2, xl), half),
                                       split_heads(kv2.narrow(2, 0, kSgDim / 2), half),
                                       split_heads(kv2.narrow(2, kSgDim / 2, kSgDim / 2), half), scale, allowed));
  const auto o2_grid = o2.narrow(1, prefix, hp * wp).view({x.size(0), hp, wp, -1}).narrow(1, 0, h).narrow(2, 0, w);
  o2 = torch::cat({o2.narrow(1, 0, prefix), o2_grid.reshape({x.size(0), h * w, -1})}, 1);
  return finish_by_hand(m, torch::cat({join_heads(o1), o2}, 2), x, h, w, prefix);
}

// Token order of the grid: row-major, or column-major (position p -> token index).
std::vector<std::int64_t> raster(std::int64_t h, std::int64_t w, bool column_major) {
  std::vector<std::int64_t> order;
  for (std::int64_t a = 0; a < (column_major ? w : h); ++a)
    for (std::int64_t b = 0; b < (column_major ? h : w); ++b) order.push_back(column_major ? b * w + a : a * w + b);
  return order;
}

// The aggregated tokens of one sample by loops: grid tokens [N, C], significance [N] (row-major).
torch::Tensor aggregate_by_hand(SgFormerAttentionImpl& m, const torch::Tensor& grid, const std::vector<double>& sig,
                                std::int64_t h, std::int64_t w, bool column_major) {
  auto order = raster(h, w, column_major);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return sig[a] < sig[b]; });
  const auto n = std::int64_t(order.size());
  std::vector<torch::Tensor> out;
  double cumulative = 0.0;
  std::int64_t start = 0;
  const auto& fractions = m.options().fractions();
  for (std::size_t i = 0; i < fractions.size(); ++i) {
    cumulative += fractions[i];
    const auto end = i + 1 == fractions.size() ? n : std::int64_t(std::floor(n * cumulative + 1e-9));
    const auto g = m.options().group_sizes()[i];
    const auto& f = m.aggregators[i];
    for (std::int64_t first = start; first < end; first += g) {
      auto acc = torch::zeros({grid.size(1)}, grid.options()) + f->bias;  // [1] broadcast over C
      for (std::int64_t j = 0; j < g && first + j < end; ++j) acc = acc + f->weight[0][j] * grid[order[first + j]];
      out.push_back(acc);
    }
    start = end;
  }
  return torch::stack(out);  // [T, C]
}

// The reallocation role densely from the rule (its own significance computed here by loops).
torch::Tensor reallocation_oracle(SgFormerAttentionImpl& m, const torch::Tensor& x, std::int64_t h, std::int64_t w,
                                  std::int64_t prefix) {
  const auto sr = m.options().sr(), heads = m.options().heads(), half = heads / 2;
  const double scale = m.scale();
  const auto hr = (h + sr - 1) / sr, wr = (w + sr - 1) / sr;
  std::vector<torch::Tensor> outputs;
  for (std::int64_t b = 0; b < x.size(0); ++b) {
    const auto xb = x[b], grid = xb.narrow(0, prefix, h * w), xp = xb.narrow(0, 0, prefix);
    auto pooled = torch::zeros({hr * wr, kSgDim}, x.options());  // mean over sr x sr cells, zeros outside
    for (std::int64_t t = 0; t < h * w; ++t) pooled[t / w / sr * wr + t % w / sr] += grid[t] / double(sr * sr);
    const auto k = split_heads(linear_by_hand(m.kv1, pooled).narrow(1, 0, kSgDim / 2).unsqueeze(0), half);
    const auto qg = split_heads(linear_by_hand(m.q, grid).unsqueeze(0), heads).narrow(1, 0, half);
    const auto a = torch::softmax(torch::matmul(qg, k.transpose(-2, -1)) * scale, -1);  // [1, h/2, HW, Nr]
    const auto reduced = a.mean(1).mean(1)[0];
    std::vector<double> sig(h * w);
    for (std::int64_t t = 0; t < h * w; ++t) sig[t] = reduced[t / w / sr * wr + t % w / sr].item<double>();
    const auto kv1 = linear_by_hand(m.kv1, torch::cat({xp, aggregate_by_hand(m, grid, sig, h, w, false)}));
    const auto kv2 = linear_by_hand(m.kv2, torch::cat({xp, aggregate_by_hand(m, grid, sig, h, w, true)}));
    const auto keys = torch::cat({split_heads(kv1.narrow(1, 0, kSgDim / 2).unsqueeze(0), half),
                                  split_heads(kv2.narrow(1, 0, kSgDim / 2).unsqueeze(0), half)},
                                 1);
    const auto values = torch::cat({split_heads(kv1.narrow(1, kSgDim / 2, kSgDim / 2).unsqueeze(0), half),
                                    split_heads(kv2.narrow(1, kSgDim / 2, kSgDim / 2).unsqueeze(0), half)},
                                   1);
    const auto q = split_heads(linear_by_hand(m.q, xb).unsqueeze(0), heads);
    outputs.push_back(join_heads(dense_attention(q, keys, values, scale))[0]);
  }
  return finish_by_hand(m, torch::stack(outputs), x, h, w, prefix);
}

}  // namespace

TEST_CASE("sparse/sg-former: the significance terms are means of row-stochastic maps", "[sparse]") {
  for (const auto& [h, w] : std::vector<std::pair<std::int64_t, std::int64_t>>{{6, 6}, {5, 7}}) {
    auto mixer = make_sg("sr: 2, window: 3");
    auto& m = sg_of(mixer);
    const auto x = torch::randn({2, h * w, kSgDim}, torch::kFloat64);
    const auto [out, sig] = m.forward_hybrid(x, context(h, w));
    CHECK(sig.global_reduced.sizes().vec() == std::vector<std::int64_t>{2, (h + 1) / 2, (w + 1) / 2});
    CHECK(max_diff(sig.global_reduced.sum({1, 2}), torch::ones({2}, torch::kFloat64)) < 1e-12);
    // The local term summed inside each 3 x 3 window of the padded grid is 1.
    const auto hp = sig.local_padded.size(1), wp = sig.local_padded.size(2);
    CHECK(hp % 3 == 0);
    CHECK(wp % 3 == 0);
    const auto per_window = sig.local_padded.view({2, hp / 3, 3, wp / 3, 3}).sum({2, 4});
    CHECK(max_diff(per_window, torch::ones_like(per_window)) < 1e-12);
    // The map: the global term upsampled nearest plus the local one, on the grid.
    CHECK(sig.map.sizes().vec() == std::vector<std::int64_t>{2, h, w});
    CHECK(max_diff(sig.map[1][4][2] - sig.local_padded[1][4][2], sig.global_reduced[1][2][1]) < 1e-15);
  }
}

TEST_CASE("sparse/sg-former: with uniform significance reallocation groups tokens in raster order", "[sparse]") {
  auto mixer = make_sg("role: reallocation, sr: 2, group_sizes: [3, 2]");
  auto& m = sg_of(mixer);
  const std::int64_t h = 3, w = 5, n = h * w;  // fractions 7 + 8 tokens: groups 3,3,1(+2 zeros) and 2,2,2,2
  const auto x = torch::randn({2, n, kSgDim}, torch::kFloat64);
  for (const bool column_major : {false, true}) {
    const auto got = m.aggregate(x, torch::ones({2, h, w}, torch::kFloat64), column_major);
    REQUIRE(got.sizes().vec() == std::vector<std::int64_t>{2, 3 + 4, kSgDim});
    const auto order = raster(h, w, column_major);
    // Fixed grouping: consecutive tokens of the raster order, weighted by the fraction's Linear(g -> 1).
    const std::vector<std::vector<std::int64_t>> groups{{0, 1, 2}, {3, 4, 5}, {6}, {7, 8}, {9, 10}, {11, 12}, {13, 14}};
    for (std::size_t t = 0; t < groups.size(); ++t) {
      const auto& f = m.aggregators[t < 3 ? 0 : 1];
      auto expected = f->bias.expand({2, kSgDim}).clone();
      for (std::size_t j = 0; j < groups[t].size(); ++j)
        expected = expected + f->weight[0][std::int64_t(j)] * x.select(1, order[groups[t][j]]);
      CHECK(max_diff(got.select(1, std::int64_t(t)), expected) < 1e-12);
    }
  }
}

TEST_CASE("sparse/sg-former: both roles equal the paper's rule computed densely", "[sparse]") {
  const std::vector<std::array<std::int64_t, 3>> layouts{{6, 6, 0}, {5, 3, 1}, {7, 7, 2}, {1, 1, 0}};
  for (const auto& [h, w, prefix] : layouts) {
    const auto x = torch::randn({2, prefix + h * w, kSgDim}, torch::kFloat64);
    for (const auto& options : {"sr: 2, window: 3", "sr: 3, window: 2, qkv_bias: false"}) {
      auto mixer = make_sg(options);
      CHECK(max_diff(mixer->forward(x, context(h, w, prefix)), hybrid_oracle(sg_of(mixer), x, h, w, prefix)) < 1e-9);
    }
    for (const auto& options : {"sr: 2", "sr: 4, group_sizes: [4, 3, 2]", "sr: 4"}) {
      auto mixer = make_sg(std::string("role: reallocation, ") + options);
      CHECK(max_diff(mixer->forward(x, context(h, w, prefix)), reallocation_oracle(sg_of(mixer), x, h, w, prefix)) <
            1e-9);
    }
  }
}

TEST_CASE("sparse/sg-former: shapes on odd grids, the paper's token counts, no causal form", "[sparse]") {
  for (const auto& role : {"hybrid", "reallocation"}) {
    auto mixer = make_sg(std::string("role: ") + role + ", sr: 2, window: 7");
    for (const auto& [h, w] : std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {3, 5}, {7, 7}, {9, 4}}) {
      const auto x = torch::randn({1, 1 + h * w, kSgDim}, torch::kFloat64);
      CHECK(mixer->forward(x, context(h, w, 1)).sizes() == x.sizes());
    }
    auto causal = context(3, 3);
    causal.causal = true;
    CHECK_THROWS(mixer->forward(torch::randn({1, 9, kSgDim}, torch::kFloat64), causal));
  }
  // Aggregated token counts: sr 2 on 14 x 14 is the paper's 147 (98/2 + 98/1); sr 4 on 14 x 14
  // gives 1 + 7 + 7; sr 8's sizes on 56 x 56 give the paper's 60; 7 x 7 with sr 2: 12 + 25.
  const std::vector<std::array<std::int64_t, 3>> counts{{2, 14, 147}, {4, 14, 15}, {2, 7, 37}, {8, 56, 60}};
  for (const auto& [sr, side, tokens] : counts) {
    auto mixer = make_sg("role: reallocation, sr: " + std::to_string(sr));
    const auto sig = torch::rand({1, side, side}, torch::kFloat64);
    CHECK(sg_of(mixer).aggregate(torch::randn({1, side * side, kSgDim}, torch::kFloat64), sig, true).size(1) == tokens);
  }
  CHECK_THROWS_AS(make_sg("heads: 3"), ConfigError);
  CHECK_THROWS_AS(make_sg("role: reallocation, fractions: [0.5, 0.25]"), ConfigError);
}

TEST_CASE("sparse/sg-former: the reallocation role trains (its loss falls)", "[sparse]") {
  torch::manual_seed(5);
  auto mixer = mixer_registry().create(parse_yaml("{type: sparse/sg-former, heads: 2, role: reallocation}", "t.yaml"),
                                       MixerArgs{kSgDim, 64});
  // Target: the mean token of the grid, which only mixing can give each token.
  const auto x = torch::randn({8, 36, kSgDim});
  const auto target = x.mean(1, true).expand_as(x);
  torch::optim::Adam opt(mixer->parameters(), torch::optim::AdamOptions(1e-2));
  double first = 0.0, last = 0.0;
  for (int step = 0; step < 50; ++step) {
    const auto loss = torch::mse_loss(mixer->forward(x, context(6, 6)), target);
    opt.zero_grad();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  CHECK(last < 0.3 * first);
}

}  // namespace BLOCKLAB_TEST_FILE
