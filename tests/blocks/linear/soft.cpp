// linear/soft property tests (tag [linear]): the Newton-Schulz pseudo-inverse and its custom
// backward, the output written out by hand from the module's weights (landmarks by the conv,
// K1, K2, the local conv, both normalisations), the recorded map, the grid handling, the
// parameter count of catalog_000_001 B 0-03 and the option errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "blocks/linear/soft.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/linear/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::linear_tests;

namespace {

MixerContext grid_context(std::int64_t prefix, std::int64_t height, std::int64_t width,
                          AttentionProbe* probe = nullptr) {
  MixerContext ctx;
  ctx.prefix_tokens = prefix;
  ctx.grid_height = height;
  ctx.grid_width = width;
  ctx.probe = probe;
  ctx.layer = 5;
  return ctx;
}

// [B, N, h d] -> [B, h, N, d] and back.

torch::Tensor eye_like(const torch::Tensor& k2) { return torch::eye(k2.size(-1), k2.options()); }
torch::Tensor ridged(const torch::Tensor& k2) { return k2 + 0.01 * eye_like(k2); }

// kappa of m points on a line `spacing` apart: the closer the points, the worse conditioned K2.
torch::Tensor line_kernel(double spacing, std::int64_t m = 8) {
  const auto points = (torch::arange(m, torch::kFloat64) * spacing).unsqueeze(-1);
  return soft_gaussian_kernel(points, points);
}

// Weights away from the (tiny) timm init, so that K1 and K2 are far from 0 and from I.
void randomise(SoftImpl& m) {
  torch::NoGradGuard no_grad;
  m.query->weight.normal_(0.0, 0.1);
  m.query->bias.normal_(0.0, 0.1);
  m.value->weight.normal_(0.0, 0.3);
  m.value->bias.normal_(0.0, 0.3);
  m.landmark->weight.normal_(0.0, 0.3);
  m.landmark_norm->weight.uniform_(0.2, 0.5);
  m.landmark_norm->bias.uniform_(-0.3, 0.3);
  if (m.local) m.local->weight.normal_(0.0, 0.3);
  m.proj->weight.normal_(0.0, 0.3);
  m.proj->bias.normal_(0.0, 0.3);
}

// Newton-Schulz by hand, matrix by matrix: P = K2 + 0.01 I, V_0 = 1.8 / (max row sum of K2)^2 P,
// V <- 2 V - V P V.
torch::Tensor newton_by_hand(const torch::Tensor& k2, int iterations) {
  auto out = torch::empty_like(k2);
  for (std::int64_t b = 0; b < k2.size(0); ++b)
    for (std::int64_t h = 0; h < k2.size(1); ++h) {
      const auto k = k2[b][h];
      const auto p = k + 0.01 * eye_like(k);
      const double row_max = k.sum(1).max().item<double>();
      auto v = 1.8 / (row_max * row_max) * p;
      for (int t = 0; t < iterations; ++t) v = 2 * v - v.mm(p).mm(v);
      out[b][h].copy_(v);
    }
  return out;
}

}  // namespace

TEST_CASE("linear/soft: the Newton-Schulz iterate converges to (K2 + 0.01 I)^-1, its error falling with the steps",
          "[linear]") {
  const auto k2 = line_kernel(0.6);  // smallest eigenvalue of K2 + 0.01 I ~ 0.0105
  const auto p = ridged(k2);
  const auto exact = torch::inverse(p);
  double previous = std::numeric_limits<double>::infinity();
  for (int t : {4, 8, 12, 16, 20}) {
    const double error = (soft_newton_inverse(k2, t) - exact).norm().item<double>();  // Frobenius
    INFO("after " << t << " iterations: |V - P^-1|_F = " << error);
    CHECK(error < previous);
    previous = error;
  }
  CHECK(previous > 1e-6);  // 20 steps are not yet enough for this K2 ...
  const auto converged = soft_newton_inverse(k2, 30);
  CHECK(max_diff(converged, exact) <= 1e-10);  // ... 30 are
  CHECK(max_diff(converged, torch::linalg_pinv(p)) <= 1e-9);
  CHECK(max_diff(converged.matmul(p), eye_like(p)) <= 1e-6);  // catalog: |V P - I|_max < 1e-6
  // A well-conditioned K2 (points 1 apart): the default 20 steps suffice.
  const auto well = line_kernel(1.0);
  CHECK(max_diff(soft_newton_inverse(well, 20), torch::inverse(ridged(well))) <= 1e-10);
  // alpha is per matrix: a batch of two kernels (different row sums) is iterated as each one
  // alone, also before convergence (a batch-wide alpha would change the 4th iterate by ~0.1).
  const auto nearer = line_kernel(0.8), batch = torch::stack({well, nearer});
  for (int t : {4, 20}) {
    INFO(t << " iterations");
    CHECK(max_diff(soft_newton_inverse(batch, t)[0], soft_newton_inverse(well, t)) <= 1e-12);
    CHECK(max_diff(soft_newton_inverse(batch, t)[1], soft_newton_inverse(nearer, t)) <= 1e-12);
  }
}

TEST_CASE("linear/soft: the custom backward of pinv is the exact inverse's gradient -V^T G V^T", "[linear]") {
  torch::manual_seed(2);
  // Points near a line (1 apart), one set per batch and head: K2 [2, 3, 8, 8], well conditioned.
  const auto line = torch::stack({torch::arange(8, torch::kFloat64), torch::zeros({8}, torch::kFloat64)}, -1);
  const auto points = line + 0.1 * torch::randn({2, 3, 8, 2}, torch::kFloat64);
  const auto kernel = soft_gaussian_kernel(points, points);
  const auto g = torch::randn({2, 3, 8, 8}, torch::kFloat64);  // upstream gradient, not symmetric
  auto k2 = kernel.clone().requires_grad_(true);
  const auto inverse = soft_pinv(k2, 40);
  CHECK(max_diff(inverse, soft_newton_inverse(kernel, 40)) <= 1e-14);  // the forward is the iterate
  (inverse * g).sum().backward();
  auto reference = kernel.clone().requires_grad_(true);
  (torch::inverse(ridged(reference)) * g).sum().backward();  // autograd through the exact inverse
  REQUIRE(k2.grad().defined());
  CHECK(reference.grad().abs().max().item<double>() > 1e-2);
  CHECK(max_diff(k2.grad(), reference.grad()) <= 1e-9);
  // Through the kernel to the points as well.
  const auto a = points.clone().requires_grad_(true), b = points.clone().requires_grad_(true);
  (soft_pinv(soft_gaussian_kernel(a, a), 40) * g).sum().backward();
  const auto kb = soft_gaussian_kernel(b, b);
  (torch::inverse(ridged(kb)) * g).sum().backward();
  CHECK(max_diff(a.grad(), b.grad()) <= 1e-9);
}

TEST_CASE("linear/soft: the output is K1 pinv(K2) K1^T V + DWConv(V), written out from the module's weights",
          "[linear]") {
  // A 3 x 5 grid (padded to 4 x 6 for s = 2: 2 x 3 landmarks) after one prefix token.
  const std::int64_t c = 16, h = 2, d = 8, s = 2, height = 3, width = 5, prefix = 1, n = prefix + height * width;
  const std::int64_t rows = 2, cols = 3, m = rows * cols;
  for (const std::string normalisation : {"none", "symmetric"}) {
    INFO("normalisation " << normalisation);
    torch::manual_seed(3);
    Soft soft(c, SoftOptions().heads(h).ratio(s).local_kernel(3).normalisation(normalisation));
    soft->to(torch::kFloat64);
    randomise(*soft);
    torch::NoGradGuard no_grad;
    const auto x = torch::randn({2, n, c}, torch::kFloat64);
    // Q / d^(1/4) (= K) and V per head.
    const auto q = split_heads(torch::linear(x, soft->query->weight, soft->query->bias), h) / std::pow(8.0, 0.25);
    const auto v = split_heads(torch::linear(x, soft->value->weight, soft->value->bias), h);
    // Landmarks: the s x s conv over each patch (rows i, columns j), zero beyond the grid's edge.
    const auto w = soft->landmark->weight;  // [d, d, s, s]
    auto pooled = torch::zeros({2, h, m, d}, torch::kFloat64);
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j)
        for (std::int64_t a = 0; a < s; ++a)
          for (std::int64_t b = 0; b < s; ++b) {
            const auto r = s * i + a, col = s * j + b;
            if (r < height && col < width)
              pooled.select(2, i * cols + j)
                  .add_(q.select(2, prefix + r * width + col).matmul(w.select(3, b).select(2, a).t()));
          }
    // LayerNorm over d (eps 1e-5), then the exact GELU.
    const auto centred = pooled - pooled.mean(-1, true);
    const auto normed = centred / (centred.square().mean(-1, true) + 1e-5).sqrt() * soft->landmark_norm->weight +
                        soft->landmark_norm->bias;
    const auto landmarks = 0.5 * normed * (1 + torch::erf(normed / std::sqrt(2.0)));
    // Gaussian kernels from the differences.
    const auto kappa = [](const torch::Tensor& a, const torch::Tensor& b) {
      return (-0.5 * (a.unsqueeze(-2) - b.unsqueeze(-3)).square().sum(-1)).exp();
    };
    const auto k1 = kappa(q, landmarks), k2 = kappa(landmarks, landmarks);  // [2, h, N, m], [2, h, m, m]
    CHECK((k2 - eye_like(k2)).abs().max().item<double>() > 0.1);            // far from the identity
    auto inverse = newton_by_hand(k2, 20);
    if (normalisation == "symmetric") {
      const auto diag = torch::diag_embed(k2.sum(-1).pow(-0.5));  // D = diag(rowsum(K2))^(-1/2)
      inverse = diag.matmul(inverse).matmul(diag);
    }
    auto mixed = k1.matmul(inverse).matmul(k1.transpose(-1, -2)).matmul(v);
    // The local term: a 3 x 3 filter per head over the grid values ("same" padding), none at the prefix.
    const auto filter = soft->local->weight;  // [h, 1, 3, 3]
    for (std::int64_t head = 0; head < h; ++head)
      for (std::int64_t r = 0; r < height; ++r)
        for (std::int64_t col = 0; col < width; ++col)
          for (std::int64_t a = 0; a < 3; ++a)
            for (std::int64_t b = 0; b < 3; ++b) {
              const auto sr = r + a - 1, sc = col + b - 1;
              if (sr < 0 || sr >= height || sc < 0 || sc >= width) continue;
              mixed.select(1, head)
                  .select(1, prefix + r * width + col)
                  .add_(filter[head][0][a][b].item<double>() * v.select(1, head).select(1, prefix + sr * width + sc));
            }
    const auto expected = torch::linear(merge_heads(mixed), soft->proj->weight, soft->proj->bias);
    CHECK(max_diff(soft->forward(x, grid_context(prefix, height, width)), expected) <= 1e-10);
  }
}

TEST_CASE("linear/soft: symmetric normalisation is D pinv(K2) D with D = diag(rowsum(K2))^(-1/2)", "[linear]") {
  torch::manual_seed(4);
  Soft none(16, SoftOptions().heads(2)), symmetric(16, SoftOptions().heads(2).normalisation("symmetric"));
  const auto points = torch::randn({2, 2, 6, 3}, torch::kFloat64);
  const auto k2 = soft_gaussian_kernel(points, points);
  const auto diag = torch::diag_embed(k2.sum(-1).rsqrt());
  CHECK(max_diff(none->landmark_inverse(k2), soft_newton_inverse(k2, 20)) <= 1e-14);
  CHECK(max_diff(symmetric->landmark_inverse(k2), diag.matmul(soft_newton_inverse(k2, 20)).matmul(diag)) <= 1e-12);
}

TEST_CASE("linear/soft: the probe records K1 pinv(K2) K1^T, the map that mixes the values", "[linear]") {
  torch::manual_seed(5);
  Soft soft(16, SoftOptions().heads(2).local_kernel(0));
  soft->to(torch::kFloat64);
  randomise(*soft);
  soft->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 1 + 3 * 4, 16}, torch::kFloat64);
  AttentionProbe probe;
  probe.enable();
  const auto plain = soft->forward(x, grid_context(1, 3, 4));
  CHECK(max_diff(plain, soft->forward(x, grid_context(1, 3, 4, &probe))) <= 1e-12);  // capture changes nothing
  REQUIRE(probe.records().size() == 1);
  const auto& record = probe.records().front();
  CHECK(record.layer == 5);
  CHECK(record.mixer == "linear/soft");
  const auto a = record.probs;
  REQUIRE(a.sizes() == torch::IntArrayRef({2, 2, 13, 13}));
  // Without the local term the output is W_o (A V) + b_o.
  const auto v = split_heads(torch::linear(x, soft->value->weight, soft->value->bias), 2);
  CHECK(max_diff(torch::linear(merge_heads(a.matmul(v)), soft->proj->weight, soft->proj->bias), plain) <= 1e-10);
  CHECK(max_diff(a, a.transpose(-1, -2)) <= 1e-10);                             // K = Q: a symmetric map
  CHECK(max_diff(a.sum(-1), torch::ones({2, 2, 13}, torch::kFloat64)) > 1e-3);  // rows need not sum to 1
  const auto caps = soft->capabilities();
  CHECK(caps.weights == MixerCapabilities::Weights::unnormalised);
  CHECK(caps.needs_grid);
  CHECK_FALSE(caps.causal);
  CHECK_FALSE(caps.recurrent);
}

TEST_CASE("linear/soft: ceil(H/s) ceil(W/s) landmarks on any grid; plain, causal or mismatched layouts refused",
          "[linear]") {
  torch::manual_seed(6);
  struct Case {
    std::int64_t ratio, prefix, height, width, landmarks;
  };
  for (const Case& k : {Case{2, 1, 3, 5, 6}, Case{2, 0, 4, 4, 4}, Case{2, 2, 1, 1, 1}, Case{4, 1, 2, 3, 1},
                        Case{3, 0, 7, 2, 3}, Case{1, 1, 2, 3, 6}}) {
    INFO("ratio " << k.ratio << ", " << k.prefix << " prefix + " << k.height << "x" << k.width << " grid");
    Soft soft(16, SoftOptions().heads(2).ratio(k.ratio));
    soft->to(torch::kFloat64);
    const auto x = torch::randn({2, k.prefix + k.height * k.width, 16}, torch::kFloat64);
    const auto ctx = grid_context(k.prefix, k.height, k.width);
    const auto terms = soft->terms(x, ctx);
    CHECK(terms.landmarks.sizes() == torch::IntArrayRef({2, 2, k.landmarks, 8}));
    CHECK(terms.inverse.sizes() == torch::IntArrayRef({2, 2, k.landmarks, k.landmarks}));
    const auto y = soft->forward(x, ctx);
    CHECK(y.sizes() == x.sizes());
    CHECK(torch::isfinite(y).all().item<bool>());
  }
  Soft soft(16, SoftOptions().heads(2));
  const auto x = torch::randn({1, 17, 16});
  CHECK_THROWS_WITH(soft->forward(x, MixerContext{}), Catch::Contains("needs the tokens of an image grid"));
  auto causal = grid_context(1, 4, 4);
  causal.causal = true;
  CHECK_THROWS_WITH(soft->forward(x, causal), Catch::Contains("not causal"));
  CHECK_THROWS_WITH(soft->forward(x, grid_context(0, 4, 4)), Catch::Contains("does not match 17 tokens"));
}

TEST_CASE("linear/soft: parameters 2C^2 + 2C + C^2 + C + s^2 d^2 + 2d + h k^2 (catalog_000_001 B 0-03)", "[linear]") {
  const auto expected = [](std::int64_t c, std::int64_t h, std::int64_t s, std::int64_t k, bool bias) {
    const auto d = c / h;
    return 2 * c * c + (bias ? 2 * c : 0) + c * c + c + s * s * d * d + 2 * d + h * k * k;
  };
  CHECK(count(*Soft(32, SoftOptions())) == expected(32, 4, 2, 3, true));
  CHECK(count(*Soft(32, SoftOptions().heads(2).ratio(3).local_kernel(5))) == expected(32, 2, 3, 5, true));
  CHECK(count(*Soft(32, SoftOptions().local_kernel(0).qkv_bias(false))) == expected(32, 4, 2, 0, false));
  const auto made = mixer_registry().create(parse_yaml("{type: linear/soft, heads: 4, ratio: 4, local_kernel: 9}", "t"),
                                            MixerArgs{64, 64});
  CHECK(count(*made) == expected(64, 4, 4, 9, true));
}

TEST_CASE("linear/soft: option errors name the option", "[linear]") {
  const auto make = [](const std::string& yaml, std::int64_t dim) {
    return mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{dim, 64});
  };
  CHECK_THROWS_AS(make("{type: linear/soft, ratio: 0}", 32), ConfigError);
  CHECK_THROWS_WITH(make("{type: linear/soft, ratio: 0}", 32), Catch::Contains("ratio"));
  CHECK_THROWS_WITH(make("{type: linear/soft, local_kernel: 4}", 32),
                    Catch::Contains("local_kernel") && Catch::Contains("odd"));
  CHECK_THROWS_WITH(make("{type: linear/soft, local_kernel: -1}", 32), Catch::Contains("local_kernel"));
  CHECK_THROWS_WITH(make("{type: linear/soft, newton_iterations: 0}", 32), Catch::Contains("newton_iterations"));
  CHECK_THROWS_WITH(make("{type: linear/soft, normalisation: sinkhorn}", 32), Catch::Contains("normalisation"));
  CHECK_THROWS_WITH(make("{type: linear/soft, heads: 3}", 32), Catch::Contains("heads"));
  CHECK_THROWS_WITH(make("{type: linear/soft, proj_drop: 1.5}", 32), Catch::Contains("proj_drop"));
  // Built directly (no registry): the same rules.
  CHECK_THROWS_WITH(Soft(32, SoftOptions().ratio(0)), Catch::Contains("ratio"));
  CHECK_THROWS_WITH(Soft(32, SoftOptions().local_kernel(2)), Catch::Contains("local_kernel"));
  CHECK_THROWS_WITH(Soft(32, SoftOptions().normalisation("Symmetric")), Catch::Contains("normalisation"));
  CHECK_NOTHROW(make("{type: linear/soft, heads: 2, ratio: 1, local_kernel: 0, normalisation: symmetric}", 32));
}

}  // namespace BLOCKLAB_TEST_FILE
