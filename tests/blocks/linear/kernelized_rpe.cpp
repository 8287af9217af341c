// Property tests of linear/kernelized-rpe (Luo et al. 2021, arXiv:2106.12566; catalog C43),
// tag [linear]: the FFT path equals the O(n^2) formula written out by hand, b = 0 is Performer
// linear attention, many features approximate softmax attention with the relative bias, the
// recorded map is what the output averages, the random features are block-orthogonal and
// seeded, and option errors name the option.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "blocks/linear/kernelized_rpe.h"
#include "blocks/probe.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/linear/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::linear_tests;

namespace {

// [B, N, h d] -> [B, h, N, d]

// A float64 mixer with a random relative bias b ~ U(-1, 1) (zero at init).
KernelizedRpe make_mixer(std::int64_t dim, const KernelizedRpeOptions& options, bool random_bias = true) {
  KernelizedRpe m(dim, options);
  m->to(torch::kFloat64);
  if (random_bias) {
    torch::NoGradGuard no_grad;
    m->rpe_bias.uniform_(-1.0, 1.0);
  }
  return m;
}

// FAVOR+ positive features by hand: m^(-1/2) exp(W x~ - |x~|^2 / 2).
torch::Tensor prf(const torch::Tensor& x_tilde, const torch::Tensor& w) {
  return (x_tilde.matmul(w.t()) - x_tilde.square().sum(-1, true) / 2).exp() / std::sqrt(static_cast<double>(w.size(0)));
}

// x~ of the paper's §3.3 choice: rho_h x / |x|.
torch::Tensor normalised(const torch::Tensor& x, const torch::Tensor& rho) {
  return x / x.norm(2, {-1}, true) * rho.view({1, -1, 1, 1});
}

// C [h, n, n], C[:, i, j] = exp(b_{j-i}) (b column j - i + max_length - 1), 0 above the diagonal
// when causal: element by element.
torch::Tensor toeplitz_by_hand(const torch::Tensor& bias, std::int64_t n, std::int64_t max_length, bool causal) {
  auto c = torch::zeros({bias.size(0), n, n}, torch::kFloat64);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      if (!causal || j <= i) c.select(1, i).select(1, j).copy_(bias.select(1, j - i + max_length - 1).exp());
  return c;
}

// z_i = sum_j S_ij v_j / sum_j S_ij with S = (phi(Q) phi(K)^T) ⊙ C: the O(n^2) form.
torch::Tensor direct(const torch::Tensor& phi_q, const torch::Tensor& phi_k, const torch::Tensor& v,
                     const torch::Tensor& c) {
  const auto s = phi_q.matmul(phi_k.transpose(-1, -2)) * c;
  return s.matmul(v) / s.sum(-1, true);
}

}  // namespace

TEST_CASE("linear/kernelized-rpe: the FFT Toeplitz product equals C u with C[i, j] = c_{j-i}", "[linear]") {
  torch::manual_seed(1);
  for (std::int64_t n : {1, 2, 13, 16}) {
    INFO(n << " tokens");
    const auto c = torch::rand({3, 2 * n - 1}, torch::kFloat64) + 0.1;
    const auto u = torch::randn({2, 3, n, 5}, torch::kFloat64);
    auto dense = torch::zeros({3, n, n}, torch::kFloat64);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) dense.select(1, i).select(1, j).copy_(c.select(1, j - i + n - 1));
    CHECK(max_diff(toeplitz_product(c, u), dense.matmul(u)) <= 1e-12);
  }
}

TEST_CASE("linear/kernelized-rpe: the FFT numerator / denominator equal the direct O(n^2) formula, causal too",
          "[linear]") {
  torch::manual_seed(2);
  const std::int64_t h = 2, n = 11, max_length = 15;
  for (bool normalise : {true, false}) {
    auto m =
        make_mixer(16, KernelizedRpeOptions().heads(h).features(12).max_length(max_length).qk_normalize(normalise));
    if (normalise) {
      torch::NoGradGuard no_grad;
      m->qk_scale.copy_(torch::tensor({0.7, 1.4}, torch::kFloat64));
    }
    const auto q = torch::randn({2, h, n, 8}, torch::kFloat64), k = torch::randn({2, h, n, 8}, torch::kFloat64);
    const auto v = torch::randn({2, h, n, 8}, torch::kFloat64);
    const auto tilde = [&](const torch::Tensor& x) {
      return normalise ? normalised(x, m->qk_scale) : x / std::pow(8.0, 0.25);
    };
    const auto phi_q = prf(tilde(q), m->random_features), phi_k = prf(tilde(k), m->random_features);
    for (bool causal : {false, true}) {
      INFO("qk_normalize " << normalise << ", causal " << causal);
      const auto expected = direct(phi_q, phi_k, v, toeplitz_by_hand(m->rpe_bias, n, max_length, causal));
      CHECK(max_diff(m->mix(q, k, v, context(causal)), expected) <= 1e-10);  // the dense map at n = 11
      const auto c = m->toeplitz_coefficients(n, causal);
      CHECK(max_diff(kernelized_rpe_attention(phi_q, phi_k, v, c, 1e-30), expected) <= 1e-10);  // the FFT
    }
  }
  // The mixer takes the dense map for short sequences (49 ViT patches) and the FFT for long ones.
  CHECK(dense_is_cheaper(49, 64, 16));
  CHECK_FALSE(dense_is_cheaper(16384, 64, 16));
}

TEST_CASE("linear/kernelized-rpe: causal outputs do not depend on later tokens", "[linear]") {
  torch::manual_seed(3);
  auto m = make_mixer(16, KernelizedRpeOptions().heads(2).features(8).max_length(12));
  const auto x = torch::randn({2, 12, 16}, torch::kFloat64);
  auto later = x.clone();
  later.narrow(1, 7, 5).add_(torch::randn({2, 5, 16}, torch::kFloat64));
  const auto y = m->forward(x, context(true)), y2 = m->forward(later, context(true));
  CHECK(max_diff(y.narrow(1, 0, 7), y2.narrow(1, 0, 7)) <= 1e-12);
  CHECK(max_diff(y.narrow(1, 7, 5), y2.narrow(1, 7, 5)) > 1e-6);
}

TEST_CASE("linear/kernelized-rpe: b = 0 is Performer linear attention, from the module's weights", "[linear]") {
  torch::manual_seed(4);
  const std::int64_t c = 16, h = 2, n = 10;
  auto m = make_mixer(c, KernelizedRpeOptions().heads(h).features(20).max_length(n), /*random_bias=*/false);
  {
    torch::NoGradGuard no_grad;
    m->qk_scale.copy_(torch::tensor({0.8, 1.3}, torch::kFloat64));
  }
  REQUIRE(m->rpe_bias.abs().max().item<double>() == 0.0);  // zero init
  const auto x = torch::randn({2, n, c}, torch::kFloat64);
  const auto y = torch::linear(x, param(*m, "qkv.weight"), param(*m, "qkv.bias"));
  const auto q = split_heads(y.narrow(-1, 0, c), h), k = split_heads(y.narrow(-1, c, c), h);
  const auto v = split_heads(y.narrow(-1, 2 * c, c), h);
  const auto phi_q = prf(normalised(q, m->qk_scale), m->random_features);
  const auto phi_k = prf(normalised(k, m->qk_scale), m->random_features);
  // Bidirectional: phi(q_i) (phi(K)^T V) / phi(q_i) . sum_j phi(k_j).
  const auto z = phi_q.matmul(phi_k.transpose(-1, -2).matmul(v)) / phi_q.matmul(phi_k.sum(2, true).transpose(-1, -2));
  // Causal: the same with prefix sums over j <= i.
  const auto kv = (phi_k.unsqueeze(-1) * v.unsqueeze(-2)).cumsum(2);  // [B, h, N, m, d]
  const auto z_causal = phi_q.unsqueeze(-2).matmul(kv).squeeze(-2) / (phi_q * phi_k.cumsum(2)).sum(-1, true);
  const auto out = [&](const torch::Tensor& heads) {
    return torch::linear(merge_heads(heads), param(*m, "proj.weight"), param(*m, "proj.bias"));
  };
  CHECK(max_diff(m->forward(x, context(false)), out(z)) <= 1e-10);
  CHECK(max_diff(m->forward(x, context(true)), out(z_causal)) <= 1e-10);
}

TEST_CASE("linear/kernelized-rpe: with many features it approximates softmax attention with the RPE bias", "[linear]") {
  // m = 4096 orthogonal features, d = 4, small q and k: the PRF estimate of exp(q.k / sqrt(d))
  // has a relative error of a few per cent, far below the bias's effect on the output.
  torch::manual_seed(5);
  const std::int64_t h = 2, n = 12, d = 4;
  auto m = make_mixer(h * d, KernelizedRpeOptions().heads(h).features(4096).max_length(n).qk_normalize(false));
  const auto q = 0.5 * torch::randn({2, h, n, d}, torch::kFloat64);
  const auto k = 0.5 * torch::randn({2, h, n, d}, torch::kFloat64);
  const auto v = torch::randn({2, h, n, d}, torch::kFloat64);
  auto bias = torch::zeros({h, n, n}, torch::kFloat64);  // b_{j-i}
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) bias.select(1, i).select(1, j).copy_(m->rpe_bias.select(1, j - i + n - 1));
  const auto future = torch::ones({n, n}, torch::kBool).triu(1);
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    auto logits = q.matmul(k.transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
    if (causal) logits = logits.masked_fill(future, -INFINITY);
    const auto softmax_rpe = torch::softmax(logits + bias, -1).matmul(v);
    const auto softmax_plain = torch::softmax(logits, -1).matmul(v);
    const double error = (m->mix(q, k, v, context(causal)) - softmax_rpe).abs().mean().item<double>();
    const double effect = (softmax_plain - softmax_rpe).abs().mean().item<double>();
    INFO("mean abs error " << error << ", mean abs effect of the bias " << effect);
    CHECK(error <= 0.025);
    CHECK(error <= 0.25 * effect);
  }
}

TEST_CASE("linear/kernelized-rpe: the recorded map has rows summing to 1 and is what the output averages", "[linear]") {
  torch::manual_seed(6);
  const std::int64_t c = 16, h = 2, n = 9;
  auto m = make_mixer(c, KernelizedRpeOptions().heads(h).features(10).max_length(n));
  const auto x = torch::randn({2, n, c}, torch::kFloat64);
  const auto y = torch::linear(x, param(*m, "qkv.weight"), param(*m, "qkv.bias"));
  const auto v = split_heads(y.narrow(-1, 2 * c, c), h);
  for (bool causal : {false, true}) {
    for (bool padded : {false, true}) {
      INFO("causal " << causal << ", padded " << padded);
      AttentionProbe probe;
      probe.enable();
      MixerContext ctx = context(causal);
      if (padded) ctx.lengths = torch::tensor({n, std::int64_t{5}}, torch::kLong);
      const auto plain = m->forward(x, ctx);
      ctx.probe = &probe;
      ctx.layer = 2;
      const auto recorded = m->forward(x, ctx);
      REQUIRE(probe.records().size() == 1);
      const auto& r = probe.records().front();
      CHECK(r.layer == 2);
      CHECK(r.mixer == "linear/kernelized-rpe");
      const auto a = r.probs;
      REQUIRE(a.sizes() == torch::IntArrayRef({2, h, n, n}));
      CHECK(a.min().item<double>() >= 0.0);
      CHECK(max_diff(a.sum(-1), torch::ones({2, h, n}, torch::kFloat64)) <= 1e-12);
      if (causal) CHECK(a.triu(1).abs().max().item<double>() == 0.0);
      if (padded) CHECK(a[1].narrow(-1, 5, n - 5).abs().max().item<double>() == 0.0);
      CHECK(max_diff(recorded, plain) <= 1e-12);  // recording leaves the FFT path as it is
      const auto from_map = torch::linear(merge_heads(a.matmul(v)), param(*m, "proj.weight"), param(*m, "proj.bias"));
      CHECK(max_diff(recorded, from_map) <= 1e-10);
    }
  }
}

TEST_CASE("linear/kernelized-rpe: the random features are block-orthogonal, Gaussian-sized and seeded", "[linear]") {
  torch::manual_seed(7);
  const auto w = block_orthogonal_features(20, 8).to(torch::kFloat64);  // blocks of 8, 8 and 4 rows
  REQUIRE(w.sizes() == torch::IntArrayRef({20, 8}));
  for (std::int64_t start : {0, 8, 16}) {
    const auto block = w.narrow(0, start, std::min<std::int64_t>(8, 20 - start));
    const auto gram = block.matmul(block.t());
    const auto off_diagonal = gram - torch::diag(gram.diagonal());
    INFO("block at row " << start);
    CHECK(off_diagonal.abs().max().item<double>() <= 1e-5 * gram.diagonal().max().item<double>());
  }
  // Rows are marginally N(0, I_d): E|w|^2 = d (chi-square norms; 4096 rows, standard error 0.045).
  const auto many = block_orthogonal_features(4096, 4).to(torch::kFloat64);
  CHECK(many.square().sum(-1).mean().item<double>() == Approx(4.0).margin(0.3));
  // Drawn from torch's generator at construction: the same seed gives the same features.
  const auto features_of = [](std::uint64_t seed) {
    torch::manual_seed(seed);
    return KernelizedRpe(16, KernelizedRpeOptions().heads(2).features(12).max_length(8))->random_features.clone();
  };
  CHECK(torch::equal(features_of(11), features_of(11)));
  CHECK_FALSE(torch::equal(features_of(11), features_of(12)));
  CHECK(features_of(11).sizes() == torch::IntArrayRef({12, 8}));
}

TEST_CASE("linear/kernelized-rpe: max_length defaults to the longest sequence; errors name the option", "[linear]") {
  const auto make = [](const std::string& yaml, std::int64_t dim, std::int64_t max_tokens) {
    return mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{dim, max_tokens});
  };
  const auto made = make("{type: linear/kernelized-rpe, heads: 2, features: 8}", 16, 9);
  CHECK(made->named_parameters()["rpe_bias"].sizes() == torch::IntArrayRef({2, 17}));
  CHECK(made->forward(torch::randn({1, 9, 16}), context(true)).sizes() == torch::IntArrayRef({1, 9, 16}));
  CHECK_THROWS_WITH(made->forward(torch::randn({1, 10, 16}), context(false)),
                    Catch::Contains("10 tokens exceed max_length = 9"));
  CHECK_THROWS_WITH(make("{type: linear/kernelized-rpe, heads: 3}", 16, 9), Catch::Contains("heads"));
  CHECK_THROWS_WITH(make("{type: linear/kernelized-rpe, features: 0}", 16, 9), Catch::Contains("features"));
  CHECK_THROWS_WITH(make("{type: linear/kernelized-rpe}", 16, 0), Catch::Contains("max_length"));
  CHECK_THROWS_AS(make("{type: linear/kernelized-rpe, qk_normalize: 3}", 16, 9), ConfigError);
  const auto caps = made->capabilities();
  CHECK(caps.causal);
  CHECK_FALSE(caps.recurrent);
  CHECK(caps.weights == MixerCapabilities::Weights::normalised);
  CHECK(caps.variable_lengths);
}

}  // namespace BLOCKLAB_TEST_FILE
