// Property tests of mask/gmm (tag [masks]), moved from tests/test_masks.cpp.
#include "tests/blocks/masks/helpers.h"

#include "blocks/masks/gmm.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::mask_tests;

TEST_CASE("mask/gmm: very wide Gaussians with alphas summing to 1 are vanilla attention", "[masks]") {
  const std::int64_t dim = 32, heads = 4, kernels = 3;
  torch::manual_seed(11);
  auto masked = attention(dim, heads, 17, "{type: mask/gmm, kernels: 3}");
  auto vanilla = attention(dim, heads, 17, "");
  {
    torch::NoGradGuard no_grad;
    vanilla->qkv->weight.copy_(masked->qkv->weight);
    vanilla->qkv->bias.copy_(masked->qkv->bias);
    vanilla->proj->weight.copy_(masked->proj->weight);
    vanilla->proj->bias.copy_(masked->proj->bias);
    auto gmm = mask_of<GmmMaskImpl>(masked);
    gmm->sigma.fill_(1e6);
    const auto a = torch::rand({kernels, heads}, torch::kFloat64) + 0.1;
    gmm->alpha.copy_(a / a.sum(0, true));  // sum_k alpha_kh = 1 for every head
  }
  const auto x = torch::randn({2, 17, dim}, torch::kFloat64) * 2.0;
  const auto ctx = grid_context(4, 4, 1);
  torch::NoGradGuard no_grad;
  const auto y = masked->forward(x, ctx), y0 = vanilla->forward(x, ctx);
  CHECK(close(y, y0, 1e-9, 1e-10));
  // The check can fail: narrow kernels change the attention.
  mask_of<GmmMaskImpl>(masked)->sigma.fill_(0.7);
  CHECK_FALSE(close(masked->forward(x, ctx), y0, 1e-6, 1e-6));
}

TEST_CASE("mask/gmm: all alphas zero give uniform attention (output before W_o = mean of v)", "[masks]") {
  const std::int64_t dim = 16, heads = 2, n = 9;
  torch::manual_seed(12);
  auto a = attention(dim, heads, n, "{type: mask/gmm}");
  {
    torch::NoGradGuard no_grad;
    mask_of<GmmMaskImpl>(a)->alpha.zero_();
  }
  const auto x = torch::randn({2, n, dim}, torch::kFloat64) * 3.0;
  const auto ctx = grid_context(3, 3);  // the paper's masked ViT: no class token
  const auto w = probe_weights(*a, x, ctx);
  CHECK(close(w, torch::full_like(w, 1.0 / n), 0.0, 1e-14));
  torch::NoGradGuard no_grad;
  const auto [q, k, v] = a->project(x);
  const auto o = a->attend_reference(q, k, v, ctx);  // [B, h, N, d], before W_o
  CHECK(close(o, v.mean(-2, true).expand_as(o), 1e-12, 1e-13));
}

TEST_CASE("mask/gmm: 2 K h parameters, initialised as the official code", "[masks]") {
  for (auto [heads, kernels] : {std::pair<std::int64_t, std::int64_t>{4, 5}, {3, 2}, {12, 5}}) {
    GmmMask m(heads, GmmMaskOptions().kernels(kernels));
    std::int64_t count = 0;
    for (const auto& p : m->parameters()) count += p.numel();
    CHECK(count == 2 * kernels * heads);
    CHECK(m->sigma.sizes() == torch::IntArrayRef({kernels, heads}));
  }
  // Through the registry and the attention's `mask` option.
  auto a = attention(32, 4, 17, "{type: mask/gmm}");
  std::int64_t mask_params = 0;
  for (const auto& p : a->mask->parameters()) mask_params += p.numel();
  CHECK(mask_params == 2 * 5 * 4);
  // sigma ~ N(10, 10^2), alpha ~ N(0, 2^2): moments of a large draw.
  torch::manual_seed(13);
  GmmMask big(1000, GmmMaskOptions().kernels(20));
  CHECK(big->sigma.mean().item<double>() == Approx(10.0).margin(0.3));
  CHECK(big->sigma.std().item<double>() == Approx(10.0).margin(0.3));
  CHECK(big->alpha.mean().item<double>() == Approx(0.0).margin(0.06));
  CHECK(big->alpha.std().item<double>() == Approx(2.0).margin(0.06));
}

TEST_CASE("mask/gmm: M_h is symmetric, translation invariant and in closed form", "[masks]") {
  torch::manual_seed(14);
  GmmMask m(3, GmmMaskOptions().kernels(4));
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  const std::int64_t gh = 4, gw = 5;
  const auto mat = m->matrix(gh * gw, grid_context(gh, gw));
  REQUIRE(mat.sizes() == torch::IntArrayRef({3, gh * gw, gh * gw}));
  CHECK(close(mat, mat.transpose(1, 2), 0.0, 0.0));
  check_translation_invariant(mat, gh, gw);
  // M_h(p, p + (1, 2)) = sum_k alpha_kh exp(-5 / (2 (sigma_kh^2 + 1e-5))).
  for (std::int64_t h = 0; h < 3; ++h) {
    double expected = 0.0;
    for (std::int64_t k = 0; k < 4; ++k) {
      const double s = m->sigma[k][h].item<double>(), al = m->alpha[k][h].item<double>();
      expected += al * std::exp(-5.0 / (2.0 * (s * s + 1e-5)));
    }
    CHECK(mat[h][cell(1, 1, gw)][cell(2, 3, gw)].item<double>() == Approx(expected).epsilon(1e-12));
  }
  // Prefix tokens keep their logits: multiplier 1 on their rows and columns.
  const auto with_cls = m->matrix(1 + gh * gw, grid_context(gh, gw, 1));
  CHECK(close(with_cls.select(1, 0), torch::ones_like(with_cls.select(1, 0)), 0.0, 0.0));
  CHECK(close(with_cls.select(2, 0), torch::ones_like(with_cls.select(2, 0)), 0.0, 0.0));
  CHECK(close(with_cls.slice(1, 1).slice(2, 1), mat, 0.0, 0.0));
  // 1-D sequences: p = token index.
  const auto seq = m->matrix(6, sequence_context());
  CHECK(close(seq[0][1][4], mat[0][cell(0, 0, gw)][cell(0, 3, gw)], 1e-14, 0.0));
}

}  // namespace BLOCKLAB_TEST_FILE
