// Hyena (blocks/conv/hyena.h, hyena_filter.h) and Hyena-2D (hyena_2d.h), tag [conv]:
// the FFT path equals direct convolution through the whole mixer (float64, <= 1e-9), outputs
// and gradients; causality; the filter's window (value 1 at t = 0, the fastest channel at the
// target at t = fast_decay, |h_t| bounded by the window times the FFN's output-weight norm);
// pure gating when h = 0; the two-sided long convolution equals its Toeplitz matrix and the
// sum written out; lengths beyond max_tokens refused; Hyena-2D's FFT convolution equals the
// direct 2-D sum and the mixer equals its direct path.
#include <catch2/catch.hpp>

#include "blocks/conv/hyena.h"
#include "blocks/conv/hyena_2d.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

torch::Tensor randn(std::vector<std::int64_t> shape) { return torch::randn(shape, torch::kFloat64); }

Hyena hyena64(std::int64_t dim, std::int64_t max_tokens, const HyenaOptions& o, std::uint64_t seed) {
  torch::manual_seed(seed);
  Hyena m(dim, max_tokens, o);
  m->to(torch::kFloat64);
  return m;
}

// Output and the gradients of a weighted sum w.r.t. the input and every parameter.
std::vector<torch::Tensor> output_and_grads(torch::nn::Module& m, const torch::Tensor& y, const torch::Tensor& x,
                                            const torch::Tensor& weights) {
  std::vector<torch::Tensor> inputs{x};
  for (auto& p : m.parameters()) inputs.push_back(p);
  auto g = torch::autograd::grad({(y * weights).sum()}, inputs);
  g.insert(g.begin(), y.detach());
  return g;
}

}  // namespace

TEST_CASE("hyena: the FFT path equals direct convolution through the mixer, outputs and gradients", "[conv]") {
  for (std::int64_t order : {2, 3}) {
    for (std::int64_t n : {1, 9, 40}) {
      INFO("order " << order << ", " << n << " tokens");
      auto fft = hyena64(8, 48, HyenaOptions().order(order).filter_width(8), 1);
      auto direct = hyena64(8, 48, HyenaOptions().order(order).filter_width(8).conv("direct"), 1);
      torch::manual_seed(2);
      const auto x = randn({2, n, 8}).requires_grad_(true);
      const auto w = randn({2, n, 8});
      const auto a = output_and_grads(*fft, fft->forward(x, {}), x, w);
      const auto b = output_and_grads(*direct, direct->forward(x, {}), x, w);
      REQUIRE(a.size() == b.size());
      for (std::size_t i = 0; i < a.size(); ++i) CHECK(max_diff(a[i], b[i]) <= 1e-9);
      CHECK((a[0].abs().max().item<double>() > 1e-3));  // not trivially zero
    }
  }
}

TEST_CASE("hyena: causal, output t depends on inputs up to t only", "[conv]") {
  for (const char* conv : {"fft", "direct"}) {
    INFO("conv " << conv);
    auto m = hyena64(8, 32, HyenaOptions().filter_width(8).conv(conv), 3);
    torch::manual_seed(4);
    const auto x = randn({1, 30, 8});
    auto changed = x.clone();
    changed.select(1, 17).add_(1.0);
    MixerContext ctx;
    ctx.causal = false;  // causal only: ignores the request
    const auto diff = (m->forward(changed, ctx) - m->forward(x, ctx)).abs().amax({0, 2});
    CHECK(diff.narrow(0, 0, 17).max().item<double>() <= 1e-12);
    CHECK(diff.narrow(0, 17, 13).min().item<double>() > 1e-8);
  }
}

TEST_CASE("hyena filter: the exponential window decays and bounds the filter", "[conv]") {
  torch::manual_seed(5);
  const auto o = HyenaFilterOptions().filter_width(8);
  HyenaFilter f(6, 11, o);  // t = i / 10
  f->to(torch::kFloat64);
  const auto w = f->window(11);
  CHECK(max_diff(w[0], torch::ones({6}, torch::kFloat64)) <= 1e-12);  // modulation 1 at t = 0
  // The fastest channel (the last) falls to decay_target at t = fast_decay = 0.3, the slowest
  // (the first) at t = slow_decay = 1.5: exp(-1 * ln(100)/1.5) at t = 1.
  CHECK(w[3][5].item<double>() == Approx(1e-2).epsilon(1e-6));
  CHECK(w[10][0].item<double>() == Approx(std::pow(1e-2, 1.0 / 1.5)).epsilon(1e-6));
  CHECK((w.narrow(0, 1, 10) < w.narrow(0, 0, 10)).all().item<bool>());                 // strictly decaying in t
  CHECK((w.narrow(1, 1, 5) < w.narrow(1, 0, 5)).narrow(0, 1, 10).all().item<bool>());  // faster channels
  // |h_t[c]| <= window_t[c] sum_k |W_out[c, k]|, since |sin| <= 1.
  const auto h = f->filter(11);
  const auto out_weight = f->mlps[0]->layers[o.filter_layers() + 1]->as<torch::nn::Linear>()->weight;
  const auto bound = w * out_weight.abs().sum(1).unsqueeze(0);
  CHECK((h.abs() <= bound + 1e-12).all().item<bool>());
  CHECK((h.abs() > 0).any().item<bool>());
  // A longer table's filter has the same prefix only if normalised the same way: here n < max_tokens
  // reads the first rows.
  CHECK(max_diff(f->filter(4), h.narrow(0, 0, 4)) <= 1e-15);
  CHECK_THROWS_WITH(f->filter(12), Catch::Contains("at most 11"));
}

TEST_CASE("hyena: with h = 0 and beta = 1 it is pure gating x_0 ⊙ x_1 ⊙ v", "[conv]") {
  auto m = hyena64(6, 16, HyenaOptions().filter_width(4), 6);
  {
    torch::NoGradGuard no_grad;
    m->filter->mlps[0]->layers[3]->as<torch::nn::Linear>()->weight.zero_();
    m->skip.fill_(1.0);
  }
  torch::manual_seed(7);
  const auto x = randn({2, 10, 6});
  const auto z = m->short_conv->forward(m->in_proj->forward(x)).split(6, -1);
  const auto expected = m->out_proj->forward(z[0] * z[1] * z[2]);
  CHECK(max_diff(m->forward(x, {}), expected) <= 1e-12);
}

TEST_CASE("hyena: refuses sequences longer than max_tokens; lengths zero the padding", "[conv]") {
  auto m = hyena64(4, 8, HyenaOptions().filter_width(4), 8);
  CHECK_THROWS_WITH(m->forward(randn({1, 9, 4}), {}), Catch::Contains("max_tokens"));
  torch::manual_seed(9);
  const auto x = randn({2, 8, 4});
  MixerContext ctx;
  ctx.lengths = torch::tensor({8, 3}, torch::kLong);
  auto padded = x.clone();
  padded.select(0, 1).narrow(0, 3, 5).normal_();
  const auto y = m->forward(x, ctx), y2 = m->forward(padded, ctx);
  CHECK(max_diff(y.select(0, 1).narrow(0, 0, 3), y2.select(0, 1).narrow(0, 0, 3)) == 0.0);
}

TEST_CASE("long conv: the two-sided implicit convolution equals its Toeplitz matrix and the sum written out",
          "[conv]") {
  torch::manual_seed(10);
  for (std::int64_t n : {1, 2, 7, 33}) {
    INFO(n << " tokens");
    const auto v = randn({2, n, 3}), h = randn({n, 3}), h_rev = randn({n, 3});
    auto expected = torch::zeros({2, n, 3}, torch::kFloat64);
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t s = 0; s < n; ++s)
        expected.select(1, t) += (s <= t ? h[t - s] : h_rev[s - t - 1]) * v.select(1, s);
    CHECK(max_diff(implicit_long_conv(v, h, h_rev, false), expected) <= 1e-9);
    CHECK(max_diff(implicit_long_conv(v, h, h_rev, true), expected) <= 1e-9);
    const auto matrix = long_conv_matrix(h, h_rev);  // [C, n, n]
    CHECK(max_diff(torch::einsum("cts,bsc->btc", {matrix, v}), expected) <= 1e-9);
    // Causal: the lower triangle only.
    const auto causal = implicit_long_conv(v, h, {}, false);
    CHECK(max_diff(causal, torch::einsum("cts,bsc->btc", {long_conv_matrix(h, {}), v})) <= 1e-9);
  }
}

namespace {

// The window of the linear 2-D convolution written out, one output at a time.
torch::Tensor conv_2d_by_hand(const torch::Tensor& u, const torch::Tensor& k, std::int64_t from_h,
                              std::int64_t from_w) {
  const auto h = u.size(1), w = u.size(2);
  auto y = torch::zeros_like(u);
  for (std::int64_t i = 0; i < h; ++i)
    for (std::int64_t j = 0; j < w; ++j)
      for (std::int64_t a = 0; a < k.size(0); ++a)
        for (std::int64_t b = 0; b < k.size(1); ++b) {
          const auto r = i + from_h - a, c = j + from_w - b;
          if (r >= 0 && r < h && c >= 0 && c < w) y.select(1, i).select(1, j) += k[a][b] * u.select(1, r).select(1, c);
        }
  return y;
}

Hyena2d hyena_2d64(std::int64_t dim, const Hyena2dOptions& o, std::uint64_t seed) {
  torch::manual_seed(seed);
  Hyena2d m(dim, o);
  m->to(torch::kFloat64);
  return m;
}

MixerContext grid_context(std::int64_t prefix, std::int64_t h, std::int64_t w) {
  MixerContext ctx;
  ctx.prefix_tokens = prefix;
  ctx.grid_height = h;
  ctx.grid_width = w;
  return ctx;
}

}  // namespace

TEST_CASE("hyena-2d: the FFT 2-D convolution equals direct summation and the sum written out", "[conv]") {
  torch::manual_seed(11);
  for (auto [h, w] : std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {3, 4}, {5, 5}, {4, 7}}) {
    INFO(h << "x" << w << " grid");
    const auto u = randn({2, h, w, 3});
    const auto full = randn({2 * h - 1, 2 * w - 1, 3}), quadrant = randn({h, w, 3});
    const auto expected_full = conv_2d_by_hand(u, full, h - 1, w - 1);
    CHECK(max_diff(conv_2d(u, full, h - 1, w - 1, false), expected_full) <= 1e-9);
    CHECK(max_diff(conv_2d(u, full, h - 1, w - 1, true), expected_full) <= 1e-12);
    const auto expected_quadrant = conv_2d_by_hand(u, quadrant, 0, 0);
    CHECK(max_diff(conv_2d(u, quadrant, 0, 0, false), expected_quadrant) <= 1e-9);
    CHECK(max_diff(conv_2d(u, quadrant, 0, 0, true), expected_quadrant) <= 1e-12);
  }
}

TEST_CASE("hyena-2d: the FFT path equals direct convolution through the mixer, outputs and gradients", "[conv]") {
  for (const char* span : {"full", "quadrant"})
    for (std::int64_t prefix : {0, 2})
      for (std::int64_t order : {2, 3}) {
        INFO("span " << span << ", prefix " << prefix << ", order " << order);
        auto fft = hyena_2d64(6, Hyena2dOptions().span(span).order(order).filter_width(8), 12);
        auto direct = hyena_2d64(6, Hyena2dOptions().span(span).order(order).filter_width(8).conv("direct"), 12);
        torch::manual_seed(13);
        const auto x = randn({2, prefix + 12, 6}).requires_grad_(true);
        const auto wts = randn({2, prefix + 12, 6});
        const auto ctx = grid_context(prefix, 3, 4);
        const auto a = output_and_grads(*fft, fft->forward(x, ctx), x, wts);
        const auto b = output_and_grads(*direct, direct->forward(x, ctx), x, wts);
        for (std::size_t i = 0; i < a.size(); ++i) CHECK(max_diff(a[i], b[i]) <= 1e-9);
      }
}

TEST_CASE("hyena-2d: full span reads the whole grid, quadrant span only the upper-left; prefix reads the grid",
          "[conv]") {
  torch::manual_seed(14);
  const auto x = randn({1, 1 + 25, 4});
  const auto ctx = grid_context(1, 5, 5);
  // Perturb the bottom-right grid token (4, 4): token 1 + 24.
  auto changed = x.clone();
  changed.select(1, 25).add_(1.0);
  for (const char* span : {"full", "quadrant"}) {
    INFO("span " << span);
    auto m = hyena_2d64(4, Hyena2dOptions().span(span).filter_width(8), 15);
    const auto diff = (m->forward(changed, ctx) - m->forward(x, ctx)).abs().amax({0, 2});  // [26]
    CHECK(diff[0].item<double>() > 1e-8);  // the class token reads every grid token
    const auto grid = diff.narrow(0, 1, 25).view({5, 5});
    if (std::string(span) == "full") {
      CHECK(grid.min().item<double>() > 1e-12);  // small far away (the window), but nonzero
    } else {
      // Quadrant: (i, j) reads (i', j') with i' <= i, j' <= j, widened by the 3x3 short convolution.
      CHECK(grid.narrow(0, 0, 3).max().item<double>() <= 1e-12);
      CHECK(grid.narrow(1, 0, 3).max().item<double>() <= 1e-12);
      CHECK(grid[4][4].item<double>() > 1e-8);
    }
  }
  // Grid tokens never read the prefix.
  auto m = hyena_2d64(4, Hyena2dOptions().filter_width(8), 16);
  auto prefix_changed = x.clone();
  prefix_changed.select(1, 0).add_(1.0);
  const auto diff = (m->forward(prefix_changed, ctx) - m->forward(x, ctx)).abs().amax({0, 2});
  CHECK(diff.narrow(0, 1, 25).max().item<double>() == 0.0);
  CHECK_THROWS_WITH(m->forward(x, grid_context(0, 5, 5)), Catch::Contains("needs a token grid"));
}

TEST_CASE("hyena-2d filter: the window is 1 at offset (0, 0) and bounds the filter", "[conv]") {
  torch::manual_seed(17);
  const auto o = HyenaFilterOptions().filter_width(8);
  HyenaFilter2d f(5, o);
  f->to(torch::kFloat64);
  const auto h = f->filter(4, 6, true);  // [7, 11, 5]
  REQUIRE(h.sizes() == torch::IntArrayRef({7, 11, 5}));
  const auto out_weight = f->mlp->layers[o.filter_layers() + 1]->as<torch::nn::Linear>()->weight;
  const auto norm = out_weight.abs().sum(1);  // |h| <= window * norm
  const auto ratio = h.abs() / norm;
  CHECK((ratio <= 1.0 + 1e-12).all().item<bool>());
  // The window decays with |offset| in both directions: the corners are the smallest.
  const auto corner = (ratio.select(0, 0).select(0, 0) <= torch::exp(-f->decay * 2.0) + 1e-12);
  CHECK(corner.all().item<bool>());
  // The quadrant filter is the full filter's non-negative offsets only in the window; its
  // features are the same offsets.
  CHECK(max_diff(hyena_offset_features(torch::arange(3), 3, 3).select(1, 0),
                 torch::tensor({0.0, 0.5, 1.0}, torch::kFloat64)) <= 1e-15);
}

TEST_CASE("hyena: the output equals its data-controlled operator H(u) applied to v (eq. (3))", "[conv]") {
  for (std::int64_t order : {2, 3, 4}) {
    INFO("order " << order);
    auto m = hyena64(6, 16, HyenaOptions().order(order).filter_width(8), 18);
    torch::manual_seed(19);
    const auto x = randn({2, 11, 6});
    const auto h = m->mixing_matrix(x);  // [B, C, n, n]
    REQUIRE(h.sizes() == torch::IntArrayRef({2, 6, 11, 11}));
    CHECK(h.triu(1).abs().max().item<double>() == 0.0);  // causal: lower triangular
    const auto v = m->short_conv->forward(m->in_proj->forward(x)).split(6, -1)[order];
    const auto expected = m->out_proj->forward(torch::einsum("bcts,bsc->btc", {h, v}));
    CHECK(max_diff(m->forward(x, {}), expected) <= 1e-10);
  }
}

}  // namespace BLOCKLAB_TEST_FILE
