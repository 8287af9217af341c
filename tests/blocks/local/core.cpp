// Tests of the local attention core and its patterns (tag [local]): blocks/attention/parts/
// local_core.h and local_patterns.h. Every pattern equals its dense-equivalent oracle (values and
// gradients, float64); a window or kernel covering the grid is full softmax attention; the
// patterns equal the papers' own procedures written independently here (NATTEN's window-start
// rule, Swin's roll/partition/region mask, MaxViT's grid partition, timm's halo unfold).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "blocks/attention/parts/local_core.h"
#include "blocks/attention/parts/local_patterns.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kBatch = 2, kHeads = 3, kDim = 4, kValueDim = 5;
constexpr double kTolerance = 1e-9;

torch::Tensor randn(torch::IntArrayRef shape) { return torch::randn(shape, torch::kFloat64); }

struct Named {
  std::string name;
  LocalPattern pattern;
  std::int64_t height, width, halo = -1;  // halo >= 0: keys are the zero-padded grid
  std::int64_t prefix = 0;                // prefix tokens before the grid (with_prefix)
};

std::vector<Named> patterns() {
  return {
      {"neighborhood 1-D", neighborhood_pattern(1, 13, 3, 1, false), 1, 13},
      {"neighborhood 1-D dilated", neighborhood_pattern(1, 13, 3, 2, false), 1, 13},
      {"neighborhood 1-D dilation 4, uneven sub-sequences", neighborhood_pattern(1, 14, 3, 4, false), 1, 14},
      {"neighborhood 2-D odd grid", neighborhood_pattern(7, 9, 3, 1, false), 7, 9},
      {"neighborhood 2-D dilated", neighborhood_pattern(9, 11, 3, 2, false), 9, 11},
      {"neighborhood 2-D kernel 5 dilation 2", neighborhood_pattern(10, 11, 5, 2, false), 10, 11},
      {"neighborhood 1-D causal", neighborhood_pattern(1, 12, 4, 1, true), 1, 12},
      {"neighborhood 2-D causal dilated", neighborhood_pattern(6, 7, 3, 2, true), 6, 7},
      {"windows", window_pattern(8, 12, 4, 4), 8, 12},
      {"shifted windows", window_pattern(8, 12, 4, 4, 2, 2), 8, 12},
      {"shifted rectangular windows", window_pattern(6, 9, 3, 3, 1, 2), 6, 9},
      {"grid", grid_pattern(8, 12, 4, 4), 8, 12},
      {"halo", halo_pattern(8, 8, 4, 1), 8, 8, 1},
      {"halo, padding masked", halo_pattern(8, 8, 4, 1, true), 8, 8, 1},
      {"halo 2 on an odd grid", halo_pattern(6, 9, 3, 2), 6, 9, 2},
      {"axial columns", axial_pattern(5, 7, 0), 5, 7},
      {"axial rows", axial_pattern(5, 7, 1), 5, 7},
      {"shifted windows behind 2 prefix tokens", with_prefix(window_pattern(6, 9, 3, 3, 1, 2), 2), 6, 9, -1, 2},
      {"neighborhood behind 1 prefix token", with_prefix(neighborhood_pattern(5, 6, 3, 1, false), 1), 5, 6, -1, 1},
      {"halo behind 3 prefix tokens", with_prefix(halo_pattern(6, 9, 3, 2), 3), 6, 9, 2, 3},
      {"causal neighborhood behind 3 prefix tokens", with_prefix(neighborhood_pattern(6, 7, 3, 2, true), 3), 6, 7, -1,
       3},
  };
}

struct Inputs {
  torch::Tensor q, k, v;
};

// Queries on the grid; keys and values on the grid, zero-padded for halo patterns (timm pads
// the projected keys and values with zeros).
Inputs inputs(const Named& n, bool requires_grad = false) {
  const auto tokens = n.prefix + n.height * n.width;
  auto q = randn({kBatch, kHeads, tokens, kDim});
  auto k = randn({kBatch, kHeads, tokens, kDim});
  auto v = randn({kBatch, kHeads, tokens, kValueDim});
  if (requires_grad)
    for (auto* t : {&q, &k, &v}) t->requires_grad_(true);
  if (n.halo < 0) return {q, k, v};
  const auto pad = [&](const torch::Tensor& x) {
    return torch::cat({x.narrow(2, 0, n.prefix),
                       pad_grid_tokens(x.narrow(2, n.prefix, tokens - n.prefix), n.height, n.width, n.halo)},
                      2);
  };
  return {q, pad(k), pad(v)};
}

// A random bias for every part, [h, G, b, m], as leaves of the autograd graph.
std::vector<torch::Tensor> pair_biases(const LocalPattern& p) {
  std::vector<torch::Tensor> biases;
  for (const auto& part : p.parts)
    biases.push_back(randn({kHeads, part.groups(), part.group_queries(), part.group_keys()}).requires_grad_(true));
  return biases;
}

torch::Tensor full_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal) {
  auto s = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  if (causal) {
    const auto n = s.size(-1);
    s = s.masked_fill(torch::ones({n, n}, torch::kBool).triu(1), -INFINITY);
  }
  return torch::matmul(torch::softmax(s, -1), v);
}

double scale() { return 1.0 / std::sqrt(static_cast<double>(kDim)); }

}  // namespace

TEST_CASE("local core: every pattern equals its dense-equivalent oracle, values and gradients", "[local]") {
  torch::manual_seed(0);
  for (const auto& n : patterns()) {
    for (const bool with_bias : {false, true}) {
      INFO(n.name << (with_bias ? ", with a pair bias" : ""));
      auto [q, k, v] = inputs(n, true);
      const auto biases = with_bias ? pair_biases(n.pattern) : std::vector<torch::Tensor>{};
      const auto local = local_attend(q, k, v, n.pattern, biases, scale());
      const auto dense = local_attend_dense(q, k, v, n.pattern, biases, scale());
      REQUIRE(local.sizes() == torch::IntArrayRef({kBatch, kHeads, n.prefix + n.height * n.width, kValueDim}));
      CHECK(max_diff(local, dense) <= kTolerance);
      // The same gradients through both forms.
      std::vector<torch::Tensor> leaves{q, k, v};
      leaves.insert(leaves.end(), biases.begin(), biases.end());
      const auto upstream = randn(local.sizes());
      const auto g_local = torch::autograd::grad({(local * upstream).sum()}, leaves);
      const auto g_dense = torch::autograd::grad({(dense * upstream).sum()}, leaves);
      for (std::size_t i = 0; i < leaves.size(); ++i) CHECK(max_diff(g_local[i], g_dense[i]) <= kTolerance);
    }
  }
}

TEST_CASE("local core: a window or kernel that covers the whole grid is full softmax attention", "[local]") {
  torch::manual_seed(1);
  const auto check_full = [](const LocalPattern& p, std::int64_t tokens, bool causal) {
    const auto q = randn({kBatch, kHeads, tokens, kDim}), k = randn({kBatch, kHeads, tokens, kDim});
    const auto v = randn({kBatch, kHeads, tokens, kValueDim});
    CHECK(max_diff(local_attend(q, k, v, p, {}, scale()), full_attention(q, k, v, causal)) <= kTolerance);
  };
  check_full(window_pattern(6, 8, 6, 8), 48, false);
  check_full(neighborhood_pattern(7, 7, 7, 1, false), 49, false);
  check_full(neighborhood_pattern(1, 9, 9, 1, false), 9, false);
  check_full(neighborhood_pattern(1, 10, 10, 1, true), 10, true);
  check_full(halo_pattern(6, 6, 6, 0), 36, false);
  check_full(axial_pattern(1, 11, 1), 11, false);
  check_full(grid_pattern(4, 6, 4, 6), 24, false);
}

namespace {

// NATTEN's window start (v0.17 reference kernels, as the catalog quotes them: 0-27), written
// independently of neighborhood_pattern's clamp: per residue class of the dilation, the
// padded length, then the start shifted back at the right border.
std::int64_t natten_window_start(std::int64_t index, std::int64_t length, std::int64_t kernel, std::int64_t dilation) {
  const auto half = kernel / 2;
  const auto residue = index % dilation, sub_index = index / dilation;
  auto sub_length = (length + dilation - 1) / dilation;
  const auto padded = sub_length * dilation - length;
  if (residue >= dilation - padded) sub_length -= 1;
  const auto start = std::max<std::int64_t>(sub_index - half, 0) +
                     (sub_index + half >= sub_length ? sub_length - sub_index - half - 1 : 0);
  return start * dilation + residue;
}

// The allowed keys of query n of a pattern whose groups are single queries (neighborhoods).
std::set<std::int64_t> allowed_keys(const LocalPattern& p, std::int64_t n) {
  std::set<std::int64_t> keys;
  const auto& part = p.parts.at(0);
  const auto row = part.key_index[n];
  for (std::int64_t j = 0; j < part.group_keys(); ++j)
    if (!part.allowed.defined() || part.allowed[n][0][j].item<bool>()) keys.insert(row[j].item<std::int64_t>());
  return keys;
}

}  // namespace

TEST_CASE("neighborhood: NATTEN's window rule, exactly kernel keys per axis, causal windows", "[local]") {
  for (std::int64_t length = 5; length <= 19; ++length)
    for (const std::int64_t kernel : {3, 5, 7})
      for (const std::int64_t dilation : {1, 2, 3}) {
        if (kernel * dilation > length) continue;
        INFO("L = " << length << ", k = " << kernel << ", dilation = " << dilation);
        const auto p = neighborhood_pattern(1, length, kernel, dilation, false);
        const auto causal = neighborhood_pattern(1, length, kernel, dilation, true);
        for (std::int64_t i = 0; i < length; ++i) {
          std::set<std::int64_t> expected, expected_causal;
          const auto start = natten_window_start(i, length, kernel, dilation);
          for (std::int64_t t = 0; t < kernel; ++t) expected.insert(start + t * dilation);
          for (std::int64_t t = 0; t < kernel && i - t * dilation >= 0; ++t) expected_causal.insert(i - t * dilation);
          CHECK(allowed_keys(p, i) == expected);
          CHECK(allowed_keys(causal, i) == expected_causal);
        }
      }
  // 2-D: the product of the two axes' windows, kernel^2 keys for every query.
  const auto p = neighborhood_pattern(9, 11, 3, 2, false);
  const auto rows = neighborhood_pattern(1, 9, 3, 2, false), cols = neighborhood_pattern(1, 11, 3, 2, false);
  for (std::int64_t y = 0; y < 9; ++y)
    for (std::int64_t x = 0; x < 11; ++x) {
      std::set<std::int64_t> expected;
      for (const auto r : allowed_keys(rows, y))
        for (const auto c : allowed_keys(cols, x)) expected.insert(r * 11 + c);
      CHECK(allowed_keys(p, y * 11 + x) == expected);
      CHECK(expected.size() == 9);
    }
}

namespace {

// [B, h, H * W, d] -> windows [B, h, (H / wh) * (W / ww), wh * ww, d] (row-major windows).
torch::Tensor partition(const torch::Tensor& x, std::int64_t height, std::int64_t width, std::int64_t wh,
                        std::int64_t ww) {
  const auto b = x.size(0), h = x.size(1), d = x.size(-1);
  return x.reshape({b, h, height / wh, wh, width / ww, ww, d})
      .permute({0, 1, 2, 4, 3, 5, 6})
      .reshape({b, h, -1, wh * ww, d});
}
torch::Tensor unpartition(const torch::Tensor& w, std::int64_t height, std::int64_t width, std::int64_t wh,
                          std::int64_t ww) {
  const auto b = w.size(0), h = w.size(1), d = w.size(-1);
  return w.reshape({b, h, height / wh, width / ww, wh, ww, d})
      .permute({0, 1, 2, 4, 3, 5, 6})
      .reshape({b, h, height * width, d});
}

torch::Tensor windowed_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const torch::Tensor& block_mask) {
  auto s = torch::matmul(q, k.transpose(-2, -1)) * scale();
  if (block_mask.defined()) s = s.masked_fill(block_mask, -INFINITY);
  return torch::matmul(torch::softmax(s, -1), v);
}

}  // namespace

TEST_CASE("window: shifted windows equal Swin's roll, partition, region mask and reverse roll", "[local]") {
  torch::manual_seed(2);
  const std::int64_t height = 8, width = 12, wh = 4, ww = 4, sh = 2, sw = 1;
  const auto q = randn({kBatch, kHeads, height * width, kDim}), k = randn({kBatch, kHeads, height * width, kDim});
  const auto v = randn({kBatch, kHeads, height * width, kValueDim});
  // Swin (Liu et al. 2021, §3.2): roll by -shift, partition, mask pairs of different regions of
  // the slices (0, -window), (-window, -shift), (-shift, end), attend, un-partition, roll back.
  const auto roll = [&](const torch::Tensor& x, std::int64_t a, std::int64_t b) {
    return x.unflatten(2, {height, width}).roll({a, b}, {2, 3}).flatten(2, 3);
  };
  auto regions = torch::zeros({1, 1, height, width, 1}, torch::kLong);
  std::int64_t label = 0;
  for (const auto& [h0, h1] : std::vector<std::pair<std::int64_t, std::int64_t>>{
           {0, height - wh}, {height - wh, height - sh}, {height - sh, height}})
    for (const auto& [w0, w1] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {0, width - ww}, {width - ww, width - sw}, {width - sw, width}})
      regions.slice(2, h0, h1).slice(3, w0, w1).fill_(label++);
  const auto ids = partition(regions.flatten(2, 3), height, width, wh, ww).squeeze(-1);  // [1, 1, nW, M]
  const auto block_mask = ids.unsqueeze(-1) != ids.unsqueeze(-2);
  const auto part = [&](const torch::Tensor& x) { return partition(roll(x, -sh, -sw), height, width, wh, ww); };
  const auto swin =
      roll(unpartition(windowed_attention(part(q), part(k), part(v), block_mask), height, width, wh, ww), sh, sw);
  CHECK(max_diff(local_attend(q, k, v, window_pattern(height, width, wh, ww, sh, sw), {}, scale()), swin) <=
        kTolerance);
}

TEST_CASE("grid: MaxViT's grid partition, halo: timm's zero-padded unfold", "[local]") {
  torch::manual_seed(3);
  const std::int64_t height = 8, width = 12;
  const auto q = randn({kBatch, kHeads, height * width, kDim}), k = randn({kBatch, kHeads, height * width, kDim});
  const auto v = randn({kBatch, kHeads, height * width, kValueDim});
  SECTION("grid") {
    // MaxViT's grid_partition: view (g, H/g, g, W/g), the two grid axes moved inward.
    const std::int64_t g = 4;
    const auto grid = [&](const torch::Tensor& x) {
      return x.reshape({kBatch, kHeads, g, height / g, g, width / g, x.size(-1)})
          .permute({0, 1, 3, 5, 2, 4, 6})
          .reshape({kBatch, kHeads, -1, g * g, x.size(-1)});
    };
    const auto o = windowed_attention(grid(q), grid(k), grid(v), {})
                       .reshape({kBatch, kHeads, height / g, width / g, g, g, kValueDim})
                       .permute({0, 1, 4, 2, 5, 3, 6})
                       .reshape({kBatch, kHeads, height * width, kValueDim});
    CHECK(max_diff(local_attend(q, k, v, grid_pattern(height, width, g, g), {}, scale()), o) <= kTolerance);
  }
  SECTION("halo") {
    // timm's HaloAttn: query blocks; keys and values zero-padded by the halo and unfolded into
    // (block + 2 halo)^2 windows with stride block; the zero keys stay in the softmax.
    const std::int64_t block = 4, halo = 2, window = block + 2 * halo;
    const auto unfold = [&](const torch::Tensor& x) {
      return pad_grid_tokens(x, height, width, halo)
          .unflatten(2, {height + 2 * halo, width + 2 * halo})
          .unfold(2, window, block)
          .unfold(3, window, block)  // [B, h, nby, nbx, d, win, win]
          .permute({0, 1, 2, 3, 5, 6, 4})
          .reshape({kBatch, kHeads, -1, window * window, x.size(-1)});
    };
    const auto o = unpartition(windowed_attention(partition(q, height, width, block, block), unfold(k), unfold(v), {}),
                               height, width, block, block);
    const auto p = halo_pattern(height, width, block, halo);
    const auto kp = pad_grid_tokens(k, height, width, halo), vp = pad_grid_tokens(v, height, width, halo);
    CHECK(max_diff(local_attend(q, kp, vp, p, {}, scale()), o) <= kTolerance);
  }
}

TEST_CASE("local core: the probe's dense map, relative offsets and the pattern checks", "[local]") {
  torch::manual_seed(4);
  const auto p = window_pattern(6, 9, 3, 3, 1, 2);
  const auto q = randn({1, 2, 54, kDim}), k = randn({1, 2, 54, kDim}), v = randn({1, 2, 54, kValueDim});
  std::vector<torch::Tensor> weights;
  local_attend(q, k, v, p, {}, scale(), &weights);
  const auto dense = local_weights_dense(weights, p);
  REQUIRE(dense.sizes() == torch::IntArrayRef({1, 2, 54, 54}));
  CHECK(max_diff(dense.sum(-1), torch::ones({1, 2, 54}, torch::kFloat64)) <= kTolerance);
  CHECK((dense.masked_select(local_dense_mask(p).logical_not()) == 0).all().item<bool>());

  // Offsets key - query: within a 3 x 3 window of a grid that is not shifted, |dy|, |dx| <= 2.
  const auto windows = window_pattern(6, 9, 3, 3);
  CHECK(pair_offsets(windows, windows.parts[0]).abs().max().item<std::int64_t>() == 2);
  const auto halo = halo_pattern(4, 4, 2, 1);
  const auto halo_offsets = pair_offsets(halo, halo.parts[0]);
  CHECK(halo_offsets.min().item<std::int64_t>() == -2);  // block 2 + halo 1: up to 2 behind
  CHECK(halo_offsets.max().item<std::int64_t>() == 2);

  const auto throws_with = [](const std::function<void()>& f, const std::string& text) {
    try {
      f();
      FAIL("no error; expected one with \"" << text << "\"");
    } catch (const std::invalid_argument& e) {
      CHECK_THAT(e.what(), Catch::Contains(text));
    }
  };
  throws_with([] { neighborhood_pattern(1, 10, 5, 3, false); }, "kernel 5 x dilation 3 exceeds an axis of 10 tokens");
  throws_with([] { neighborhood_pattern(4, 4, 2, 1, false); }, "the kernel must be odd");
  throws_with([] { window_pattern(7, 8, 4, 4); }, "the grid 7 x 8 is not a multiple of the window 4 x 4");
  throws_with([] { grid_pattern(6, 6, 4, 4); }, "is not a multiple of the attention grid 4 x 4");
  LocalPattern broken;
  broken.queries = broken.keys = 4;
  broken.parts.resize(1);
  auto& part = broken.parts[0];
  part.query_index = torch::tensor({0, 1, 2, 2}, torch::kLong).view({2, 2});
  part.key_index = torch::tensor({0, 1, 2, 3}, torch::kLong).view({2, 2});
  throws_with([&] { finish_pattern(broken); }, "every query exactly once");
  part.query_index = torch::tensor({0, 1, 2, 3}, torch::kLong).view({2, 2});
  part.key_index = torch::tensor({0, 0, 2, 3}, torch::kLong).view({2, 2});
  throws_with([&] { finish_pattern(broken); }, "a key appears twice in a group");
  part.key_index = torch::tensor({0, 1, 2, 3}, torch::kLong).view({2, 2});
  part.allowed = torch::ones({2, 2, 2}, torch::kBool);
  part.allowed[1][0].fill_(false);
  throws_with([&] { finish_pattern(broken); }, "a query has no allowed key");
}

TEST_CASE("local core: prefix tokens are global: they see every token and every token sees them", "[local]") {
  const std::int64_t prefix = 2;
  const auto grid = halo_pattern(4, 6, 2, 1);
  const auto p = with_prefix(grid, prefix);
  const auto mask = local_dense_mask(p);  // [2 + 4 * 6, 2 + 6 * 8] over the padded keys
  const auto grid_mask = local_dense_mask(grid);
  REQUIRE(mask.sizes() == torch::IntArrayRef({prefix + 24, prefix + 48}));
  // Prefix queries: every real token's key (prefix and grid), none of the zero padding.
  const auto real = torch::zeros({prefix + 48}, torch::kBool);
  real.narrow(0, 0, prefix).fill_(true);
  real.index_fill_(0, grid.token_keys + prefix, true);
  CHECK(torch::equal(mask.narrow(0, 0, prefix), real.expand({prefix, prefix + 48})));
  CHECK(real.sum().item<std::int64_t>() == prefix + 24);
  // Grid queries: every prefix key, then their own window, shifted by the prefix.
  CHECK(mask.narrow(0, prefix, 24).narrow(1, 0, prefix).all().item<bool>());
  CHECK(torch::equal(mask.narrow(0, prefix, 24).narrow(1, prefix, 48), grid_mask));
}

TEST_CASE("local core: causal prefix tokens see only the earlier prefix tokens", "[local]") {
  const auto p = with_prefix(neighborhood_pattern(4, 5, 3, 1, true), 3);
  const auto mask = local_dense_mask(p);  // [3 + 20, 3 + 20]
  // Causal in token order: nothing above the diagonal...
  CHECK_FALSE(mask.triu(1).any().item<bool>());
  // ... the prefix rows are the lower triangle of the prefix, and every grid row sees every prefix key.
  CHECK(torch::equal(mask.narrow(0, 0, 3).narrow(1, 0, 3), torch::ones({3, 3}, torch::kBool).tril()));
  CHECK(mask.narrow(0, 3, 20).narrow(1, 0, 3).all().item<bool>());
}

}  // namespace BLOCKLAB_TEST_FILE
