// Property tests of the attention masks (blocks/masks): closed forms from the papers, the
// limits the papers state (GMM with infinitely wide kernels is vanilla attention, zero masks
// give uniform attention), symmetry and translation invariance, causality of the RetNet decay,
// which table entries the relative bias uses, and every registered mask inside a ViT.
// The generic checks (shape, gradients, determinism, batch independence, causal, probe) run
// for every mask in tests/conformance/mixers.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "blocks/attention/softmax.h"
#include "blocks/masks/alibi.h"
#include "blocks/masks/elm.h"
#include "blocks/masks/gmm.h"
#include "blocks/masks/rel_pos_2d.h"
#include "blocks/masks/retnet_decay.h"
#include "golden.h"
#include "registry/yaml_io.h"

using namespace blocklab;

namespace {

ConfigNode yaml(const std::string& text) { return parse_yaml(text, "test"); }

bool close(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, rtol, atol);
}

MixerContext grid_context(std::int64_t h, std::int64_t w, std::int64_t prefix = 0, AttentionProbe* probe = nullptr) {
  MixerContext ctx;
  ctx.grid_height = h;
  ctx.grid_width = w;
  ctx.prefix_tokens = prefix;
  ctx.probe = probe;
  return ctx;
}

MixerContext sequence_context(AttentionProbe* probe = nullptr) {
  MixerContext ctx;
  ctx.probe = probe;
  return ctx;
}

// attention/softmax (float64, eval) with the mask given as YAML ("" for none).
std::shared_ptr<MultiHeadAttentionImpl> attention(std::int64_t dim, std::int64_t heads, std::int64_t max_tokens,
                                                  const std::string& mask) {
  std::string text = "{type: attention/softmax, fused: false, heads: " + std::to_string(heads);
  if (!mask.empty()) text += ", mask: " + mask;
  text += "}";
  auto m = std::dynamic_pointer_cast<MultiHeadAttentionImpl>(mixer_registry().create(yaml(text), MixerArgs{dim, max_tokens}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

template <class M>
std::shared_ptr<M> mask_of(const std::shared_ptr<MultiHeadAttentionImpl>& a) {
  auto m = std::dynamic_pointer_cast<M>(a->mask);
  REQUIRE(m);
  return m;
}

// The recorded attention weights [B, h, N, N] of one forward.
torch::Tensor probe_weights(MultiHeadAttentionImpl& a, const torch::Tensor& x, MixerContext ctx) {
  AttentionProbe probe;
  probe.enable();
  ctx.probe = &probe;
  torch::NoGradGuard no_grad;
  a.forward(x, ctx);
  REQUIRE(probe.records().size() == 1);
  return probe.records()[0].probs;
}

// Token index of grid cell (r, c) after `prefix` tokens.
std::int64_t cell(std::int64_t r, std::int64_t c, std::int64_t w, std::int64_t prefix = 0) { return prefix + r * w + c; }

// m [h, N, N] over an h_grid x w_grid grid (no prefix) depends only on p_i - p_j: shifting both
// tokens by one row or one column leaves every entry unchanged.
void check_translation_invariant(const torch::Tensor& m, std::int64_t gh, std::int64_t gw) {
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

}  // namespace

// ---- mask/gmm -----------------------------------------------------------------------------

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

// ---- mask/elm -----------------------------------------------------------------------------

TEST_CASE("mask/elm: zero init gives uniform attention; N x N parameters from max_tokens", "[masks]") {
  const std::int64_t dim = 16, n = 17;
  torch::manual_seed(15);
  auto a = attention(dim, 2, n, "{type: mask/elm}");
  std::int64_t count = 0;
  for (const auto& p : a->mask->parameters()) count += p.numel();
  CHECK(count == n * n);
  const auto x = torch::randn({2, n, dim}, torch::kFloat64) * 3.0;
  // ELM indexes token pairs: the class token's row is uniform too.
  const auto w = probe_weights(*a, x, grid_context(4, 4, 1));
  CHECK(close(w, torch::full_like(w, 1.0 / n), 0.0, 1e-14));
  // Shorter sequences use the top-left block; a trained mask changes the attention.
  {
    torch::NoGradGuard no_grad;
    mask_of<ElmMaskImpl>(a)->weight.normal_();
  }
  const auto w2 = probe_weights(*a, x.slice(1, 0, 10), sequence_context());
  CHECK(w2.size(-1) == 10);
  CHECK_FALSE(close(w2, torch::full_like(w2, 0.1), 0.0, 1e-6));
  ElmMask explicit_size(7);
  CHECK(explicit_size->weight.sizes() == torch::IntArrayRef({7, 7}));
}

TEST_CASE("mask/elm: sequences longer than the mask are a clear error", "[masks]") {
  auto a = attention(16, 2, 10, "{type: mask/elm}");
  const std::string text = testing::error_text([&] { a->forward(torch::randn({1, 17, 16}, torch::kFloat64), sequence_context()); });
  CHECK(text.find("10 x 10") != std::string::npos);
  CHECK(text.find("17 tokens") != std::string::npos);
  const std::string no_size =
      testing::error_text([&] { mask_registry().create(yaml("{type: mask/elm}"), MaskArgs{2, 16, 0}); });
  CHECK(no_size.find("max_tokens") != std::string::npos);
}

// ---- mask/alibi ---------------------------------------------------------------------------

TEST_CASE("mask/alibi: slopes in closed form (Press et al. 2022, get_slopes)", "[masks]") {
  const auto eight = alibi_slopes(8);
  REQUIRE(eight.size() == 8);
  for (int h = 0; h < 8; ++h) CHECK(eight[h] == Approx(std::pow(2.0, -(h + 1))).epsilon(1e-15));
  const auto sixteen = alibi_slopes(16);
  REQUIRE(sixteen.size() == 16);
  CHECK(sixteen[0] == Approx(std::pow(2.0, -0.5)).epsilon(1e-15));
  for (int h = 0; h < 16; ++h) CHECK(sixteen[h] == Approx(std::pow(2.0, -0.5 * (h + 1))).epsilon(1e-15));
  // Not a power of two: the 4-head slopes, then every second slope of the 8-head sequence.
  const std::vector<double> six_expected{0.25, 1.0 / 16, 1.0 / 64, 1.0 / 256, 0.5, 0.125};
  const auto six = alibi_slopes(6);
  REQUIRE(six.size() == 6);
  for (int h = 0; h < 6; ++h) CHECK(six[h] == Approx(six_expected[h]).epsilon(1e-15));
  const auto twelve = alibi_slopes(12);
  REQUIRE(twelve.size() == 12);
  for (int h = 0; h < 8; ++h) CHECK(twelve[h] == Approx(eight[h]).epsilon(1e-15));
  for (int h = 8; h < 12; ++h) CHECK(twelve[h] == Approx(std::pow(2.0, -0.5 - (h - 8))).epsilon(1e-15));
  CHECK(alibi_slopes(1) == std::vector<double>{1.0 / 256});
  CHECK(alibi_slopes(3) == std::vector<double>{1.0 / 16, 1.0 / 256, 0.25});
}

TEST_CASE("mask/alibi: -m_h ||p_i - p_j||: symmetric, zero diagonal, translation invariant", "[masks]") {
  AlibiMask m(4);
  const std::int64_t gh = 3, gw = 4;
  const auto bias = m->matrix(gh * gw, grid_context(gh, gw));
  REQUIRE(bias.sizes() == torch::IntArrayRef({4, gh * gw, gh * gw}));
  CHECK(close(bias, bias.transpose(1, 2), 0.0, 0.0));
  CHECK(bias.diagonal(0, 1, 2).abs().max().item<double>() == 0.0);
  check_translation_invariant(bias, gh, gw);
  const auto slopes = alibi_slopes(4);
  for (int h = 0; h < 4; ++h) {
    CHECK(bias[h][cell(0, 0, gw)][cell(2, 3, gw)].item<double>() == Approx(-slopes[h] * std::sqrt(13.0)).epsilon(1e-14));
    CHECK(bias[h][cell(1, 2, gw)][cell(1, 0, gw)].item<double>() == Approx(-slopes[h] * 2.0).epsilon(1e-14));
  }
  CHECK(m->parameters().empty());
  // Prefix tokens: bias 0. Sequences: -m |i - j|.
  const auto cls = m->matrix(1 + gh * gw, grid_context(gh, gw, 1));
  CHECK(cls.select(1, 0).abs().max().item<double>() == 0.0);
  CHECK(cls.select(2, 0).abs().max().item<double>() == 0.0);
  const auto seq = m->matrix(7, sequence_context());
  CHECK(seq[1][6][2].item<double>() == Approx(-slopes[1] * 4.0).epsilon(1e-14));
  CHECK(close(seq, seq.transpose(1, 2), 0.0, 0.0));
  // space: 1d on a grid uses the raster order.
  AlibiMask one_d(4, AlibiMaskOptions().space("1d"));
  CHECK(one_d->matrix(gh * gw, grid_context(gh, gw))[0][0][5].item<double>() == Approx(-slopes[0] * 5.0));
  AlibiMask two_d(4, AlibiMaskOptions().space("2d"));
  CHECK(testing::error_text([&] { two_d->matrix(7, sequence_context()); }).find("space 2d needs") != std::string::npos);
}

TEST_CASE("mask/alibi: with q = k = 0 the attention is softmax(-m ||p_i - p_j||)", "[masks]") {
  const std::int64_t dim = 32, heads = 4, gh = 4, gw = 4, n = gh * gw;
  auto a = attention(dim, heads, n, "{type: mask/alibi}");
  {
    torch::NoGradGuard no_grad;
    a->qkv->weight.slice(0, 0, 2 * dim).zero_();  // W_q = W_k = 0
    a->qkv->bias.slice(0, 0, 2 * dim).zero_();
  }
  const auto ctx = grid_context(gh, gw);
  const auto w = probe_weights(*a, torch::randn({2, n, dim}, torch::kFloat64), ctx);
  const auto expected = torch::softmax(mask_of<AlibiMaskImpl>(a)->matrix(n, ctx), -1);
  CHECK(close(w, expected.unsqueeze(0).expand_as(w), 1e-12, 1e-14));
  // Each head's weight falls with distance at its own rate: w(self) / w(neighbour) = e^(m_h).
  const auto slopes = alibi_slopes(heads);
  for (std::int64_t h = 0; h < heads; ++h)
    CHECK(w[1][h][5][4].item<double>() / w[1][h][5][5].item<double>() == Approx(std::exp(-slopes[h])).epsilon(1e-12));
  CHECK(w[0][0][0][0].item<double>() > w[0][3][0][0].item<double>());  // the steepest head is the most local
}

// ---- mask/retnet-decay --------------------------------------------------------------------

TEST_CASE("mask/retnet-decay: gammas per head (RetNet and RMT schedules)", "[masks]") {
  const auto g = retnet_gammas(4);
  REQUIRE(g.size() == 4);
  CHECK(g[0] == 1.0 - 1.0 / 32);
  CHECK(g[1] == 1.0 - 1.0 / 64);
  CHECK(g[3] == 1.0 - 1.0 / 256);
  const auto r = rmt_gammas(4, 2.0, 4.0);  // 1 - 2^(-2 - h)
  CHECK(r[0] == Approx(0.75));
  CHECK(r[2] == Approx(1.0 - 1.0 / 16));
  RetnetDecayMask m(3);
  CHECK(close(m->gammas, torch::tensor({1.0 - 1.0 / 32, 1.0 - 1.0 / 64, 1.0 - 1.0 / 128}, torch::kFloat64), 0.0, 0.0));
  RetnetDecayMask explicit_gammas(2, RetnetDecayMaskOptions().gammas({0.5, 0.9}));
  CHECK(explicit_gammas->gammas[1].item<double>() == 0.9);
  const std::string wrong = testing::error_text(
      [&] { mask_registry().create(yaml("{type: mask/retnet-decay, gammas: [0.5]}"), MaskArgs{2, 16, 9}); });
  CHECK(wrong.find("1 gammas for an attention with 2 heads") != std::string::npos);
}

TEST_CASE("mask/retnet-decay: 1-D decay gamma^(i-j) below the diagonal, 0 above", "[masks]") {
  RetnetDecayMask m(2, RetnetDecayMaskOptions().gammas({0.5, 0.9}));
  const std::int64_t n = 6;
  const auto d = m->decay(n, sequence_context());
  REQUIRE(d.sizes() == torch::IntArrayRef({2, n, n}));
  const double gammas[] = {0.5, 0.9};
  for (int h = 0; h < 2; ++h)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        CHECK(d[h][i][j].item<double>() == Approx(j <= i ? std::pow(gammas[h], double(i - j)) : 0.0).epsilon(1e-14));
  // Default apply (RMT's code): the logits get log D (-inf above the diagonal).
  CHECK(m->mode() == AttentionMaskImpl::Mode::AddLogits);
  const auto log_d = m->matrix(n, sequence_context());
  CHECK(std::isinf(log_d[0][1][3].item<double>()));
  CHECK(log_d[1][4][1].item<double>() == Approx(3.0 * std::log(0.9)).epsilon(1e-14));
  // bidirectional: gamma^|i - j|.
  RetnetDecayMask both(2, RetnetDecayMaskOptions().gammas({0.5, 0.9}).bidirectional(true));
  const auto db = both->decay(n, sequence_context());
  CHECK(close(db, db.transpose(1, 2), 0.0, 0.0));
  CHECK(db[0][1][3].item<double>() == Approx(0.25));
  // Prefix tokens: D = 1 on their rows and columns.
  const auto dp = m->decay(n + 1, grid_context(0, 0, 1));
  CHECK(close(dp.select(1, 0), torch::ones_like(dp.select(1, 0)), 0.0, 0.0));
  CHECK(close(dp.slice(1, 1).slice(2, 1), d, 0.0, 0.0));
}

TEST_CASE("mask/retnet-decay: 2-D Manhattan decay gamma^(|dx| + |dy|) on a grid (RMT)", "[masks]") {
  RetnetDecayMask m(3);
  const auto g = retnet_gammas(3);
  const std::int64_t gh = 3, gw = 3;
  const auto d = m->decay(gh * gw, grid_context(gh, gw));
  for (std::int64_t h = 0; h < 3; ++h)
    for (std::int64_t r1 = 0; r1 < gh; ++r1)
      for (std::int64_t c1 = 0; c1 < gw; ++c1)
        for (std::int64_t r2 = 0; r2 < gh; ++r2)
          for (std::int64_t c2 = 0; c2 < gw; ++c2) {
            const double manhattan = std::abs(double(r1 - r2)) + std::abs(double(c1 - c2));
            CHECK(d[h][cell(r1, c1, gw)][cell(r2, c2, gw)].item<double>() ==
                  Approx(std::pow(g[h], manhattan)).epsilon(1e-14));
          }
  RetnetDecayMask one_d(3, RetnetDecayMaskOptions().space("1d"));
  CHECK(one_d->decay(gh * gw, grid_context(gh, gw))[0][0][1].item<double>() == 0.0);  // causal raster order
}

TEST_CASE("mask/retnet-decay: applied as RMT's code (renormalised) or the paper (weights ⊙ D)", "[masks]") {
  const std::int64_t dim = 16, heads = 2, gh = 3, gw = 3, n = gh * gw;
  const auto ctx = grid_context(gh, gw);
  const auto x = torch::randn({2, n, dim}, torch::kFloat64);
  for (const std::string apply : {"logits", "weights"}) {
    INFO("apply " << apply);
    auto a = attention(dim, heads, n, "{type: mask/retnet-decay, gammas: [0.5, 0.8], apply: " + apply + "}");
    {
      torch::NoGradGuard no_grad;
      a->qkv->weight.slice(0, 0, 2 * dim).zero_();  // q = k = 0: softmax(q k^T) is uniform
      a->qkv->bias.slice(0, 0, 2 * dim).zero_();
    }
    const auto d = mask_of<RetnetDecayMaskImpl>(a)->decay(n, ctx);
    const auto w = probe_weights(*a, x, ctx);
    const auto expected = apply == "logits" ? d / d.sum(-1, true) : d / double(n);
    CHECK(close(w, expected.unsqueeze(0).expand_as(w), 1e-12, 1e-14));
  }
}

TEST_CASE("mask/retnet-decay: the 1-D decay makes the mixer causal without ctx.causal", "[masks]") {
  const std::int64_t dim = 16, n = 10, t = 4;
  const auto x = torch::randn({2, n, dim}, torch::kFloat64);
  auto x2 = x.clone();
  x2.select(1, t).add_(torch::randn({2, dim}, torch::kFloat64));
  // Perturbing token t leaves the outputs before t unchanged (and changes some after).
  const auto no_leak = [&](MultiHeadAttentionImpl& a, const MixerContext& ctx) {
    torch::NoGradGuard no_grad;
    const auto y = a.forward(x, ctx), y2 = a.forward(x2, ctx);
    CHECK_FALSE(close(y.slice(1, t), y2.slice(1, t), 1e-6, 1e-9));
    return close(y.slice(1, 0, t), y2.slice(1, 0, t), 1e-12, 1e-14);
  };
  torch::manual_seed(16);
  auto logits = attention(dim, 2, n, "{type: mask/retnet-decay, space: 1d}");
  CHECK(no_leak(*logits, sequence_context()));  // log D = -inf above the diagonal
  CHECK(probe_weights(*logits, x, sequence_context()).triu(1).abs().max().item<double>() == 0.0);
  // The paper's form (softmax ⊙ D) zeroes the future weights, but the softmax normaliser still
  // sums over future keys: it needs ctx.causal like plain attention.
  torch::manual_seed(16);
  auto weights = attention(dim, 2, n, "{type: mask/retnet-decay, space: 1d, apply: weights}");
  CHECK(probe_weights(*weights, x, sequence_context()).triu(1).abs().max().item<double>() == 0.0);
  CHECK_FALSE(no_leak(*weights, sequence_context()));
  MixerContext causal = sequence_context();
  causal.causal = true;
  CHECK(no_leak(*weights, causal));
  // Without the mask, attention sees the future.
  torch::manual_seed(16);
  auto plain = attention(dim, 2, n, "");
  CHECK_FALSE(no_leak(*plain, sequence_context()));
}

// ---- mask/rel-pos-2d ----------------------------------------------------------------------

TEST_CASE("mask/rel-pos-2d: table (2M-1)^2 x h, bias depends only on the offset", "[masks]") {
  RelPos2dMask m(3, 4, 4);
  CHECK(m->table.sizes() == torch::IntArrayRef({7 * 7, 3}));
  CHECK(m->table.std().item<double>() == Approx(0.02).margin(0.008));  // trunc-normal std 0.02
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  const std::int64_t gh = 3, gw = 4;
  const auto bias = m->matrix(gh * gw, grid_context(gh, gw));
  REQUIRE(bias.sizes() == torch::IntArrayRef({3, gh * gw, gh * gw}));
  check_translation_invariant(bias, gh, gw);
  // Swin's index: (dy + M - 1)(2M - 1) + (dx + M - 1), (dy, dx) = p_i - p_j.
  for (std::int64_t h = 0; h < 3; ++h) {
    CHECK(bias[h][cell(2, 0, gw)][cell(0, 3, gw)].item<double>() == m->table[(2 + 3) * 7 + (-3 + 3)][h].item<double>());
    CHECK(bias[h][cell(1, 1, gw)][cell(1, 1, gw)].item<double>() == m->table[3 * 7 + 3][h].item<double>());
  }
  // Not symmetric in general: (dy, dx) and (-dy, -dx) are different entries.
  CHECK_FALSE(close(bias, bias.transpose(1, 2), 0.0, 1e-6));
  // Prefix tokens: bias 0.
  const auto cls = m->matrix(1 + gh * gw, grid_context(gh, gw, 1));
  CHECK(cls.select(1, 0).abs().max().item<double>() == 0.0);
  CHECK(close(cls.slice(1, 1).slice(2, 1), bias, 0.0, 0.0));

  // Table sizes through the registry: explicit, or floor(sqrt(max_tokens)) squared.
  const auto size_of = [](const std::string& text, std::int64_t max_tokens) {
    auto mask = std::dynamic_pointer_cast<RelPos2dMaskImpl>(mask_registry().create(yaml(text), MaskArgs{4, 32, max_tokens}));
    REQUIRE(mask);
    return mask->table.sizes().vec();
  };
  CHECK(size_of("{type: mask/rel-pos-2d}", 49) == std::vector<std::int64_t>{13 * 13, 4});  // ViT 7x7, pool mean
  CHECK(size_of("{type: mask/rel-pos-2d}", 50) == std::vector<std::int64_t>{13 * 13, 4});  // ViT 7x7 + class token
  CHECK(size_of("{type: mask/rel-pos-2d, height: 2, width: 5}", 0) == std::vector<std::int64_t>{3 * 9, 4});
  CHECK(size_of("{type: mask/rel-pos-2d, space: 1d}", 20) == std::vector<std::int64_t>{39, 4});
}

TEST_CASE("mask/rel-pos-2d: gradients reach only the table entries the grid uses", "[masks]") {
  RelPos2dMask m(2, 5, 5);  // offsets -4..4 per axis: a 9 x 9 table
  m->to(torch::kFloat64);
  const std::int64_t gh = 3, gw = 2;  // offsets dy in -2..2, dx in -1..1
  const auto bias = m->matrix(1 + gh * gw, grid_context(gh, gw, 1));
  (bias * torch::randn_like(bias)).sum().backward();
  const auto grad = m->table.grad();
  REQUIRE(grad.defined());
  for (std::int64_t dy = -4; dy <= 4; ++dy)
    for (std::int64_t dx = -4; dx <= 4; ++dx) {
      const bool used = std::abs(dy) <= gh - 1 && std::abs(dx) <= gw - 1;
      INFO("offset " << dy << ", " << dx);
      const double g = grad[(dy + 4) * 9 + (dx + 4)].abs().sum().item<double>();
      if (used)
        CHECK(g > 0.0);
      else
        CHECK(g == 0.0);
    }
}

TEST_CASE("mask/rel-pos-2d: 1-D table for sequences; grids larger than the table are an error", "[masks]") {
  RelPos2dMask seq(2, 1, 6, true);
  CHECK(seq->table.sizes() == torch::IntArrayRef({11, 2}));
  const auto bias = seq->matrix(5, sequence_context());
  for (std::int64_t i = 0; i < 5; ++i)
    for (std::int64_t j = 0; j < 5; ++j) CHECK(close(bias.select(1, i).select(1, j), seq->table[i - j + 5], 0.0, 0.0));
  CHECK(testing::error_text([&] { seq->matrix(7, sequence_context()); }).find("up to 6 tokens") != std::string::npos);

  RelPos2dMask small(2, 3, 3);
  const std::string big = testing::error_text([&] { small->matrix(16, grid_context(4, 4)); });
  CHECK(big.find("4x4 grid is larger than the bias table") != std::string::npos);
  CHECK(big.find("height: 4, width: 4") != std::string::npos);
  const std::string no_grid = testing::error_text([&] { small->matrix(9, sequence_context()); });
  CHECK(no_grid.find("space: 1d") != std::string::npos);
  const std::string half = testing::error_text(
      [&] { mask_registry().create(yaml("{type: mask/rel-pos-2d, height: 3}"), MaskArgs{2, 16, 9}); });
  CHECK(half.find("both height and width") != std::string::npos);
}

// ---- every mask -----------------------------------------------------------------------------

TEST_CASE("masks: every entry builds from its example, describes its paper, and runs in a ViT", "[masks]") {
  const auto& reg = mask_registry();
  REQUIRE(reg.size() >= 5);
  for (const EntryInfo* e : reg.list()) {
    INFO("mask " << e->key);
    CHECK_FALSE(e->summary.empty());
    CHECK(e->paper.find("arXiv:") != std::string::npos);
    CHECK_FALSE(e->equation.empty());
    ConfigNode config = yaml(e->example.empty() ? "{}" : e->example);
    config.set("type", ConfigNode::string(e->key));
    AttentionMask m = reg.create(config, MaskArgs{2, 32, 17});
    REQUIRE(m);
    const auto mat = m->matrix(17, grid_context(4, 4, 1));
    CHECK(mat.dim() == 3);
    CHECK((mat.size(0) == 2 || mat.size(0) == 1));
    CHECK(mat.size(1) == 17);
    CHECK(mat.size(2) == 17);

    // Inside the ViT: 28x28 images, patch 7 -> a 4x4 grid, with and without a class token.
    for (const std::string pool : {"cls", "mean"}) {
      INFO("pool " << pool);
      torch::manual_seed(17);
      const Backbone vit = backbone_registry().create(
          yaml("{type: vit, dim: 16, depth: 1, patch: 7, pool: " + pool +
               ", mixer: {type: attention/softmax, heads: 2, mask: {type: " + e->key + "}}}"),
          BackboneArgs{1, 28, 28});
      const auto features = vit->forward(torch::randn({2, 1, 28, 28}));
      CHECK(features.sizes() == torch::IntArrayRef({2, 16}));
      CHECK(torch::isfinite(features).all().item<bool>());
      (features * torch::randn_like(features)).sum().backward();
      for (const auto& p : vit->named_parameters()) {
        if (p.key().find("mask") == std::string::npos) continue;
        INFO(p.key());
        REQUIRE(p.value().grad().defined());
        CHECK(torch::isfinite(p.value().grad()).all().item<bool>());
      }
    }
  }
}
