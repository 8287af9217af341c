// Property tests of mask/retnet-decay (tag [masks]), moved from tests/test_masks.cpp.
#include "tests/blocks/masks/helpers.h"

#include "blocks/masks/retnet_decay.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::mask_tests;

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
  const std::string wrong = testing::error_text([&] {
    mask_registry().create(yaml("{type: mask/retnet-decay, gammas: [0.5]}"), MaskArgs{2, 16, 9});
  });
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

}  // namespace BLOCKLAB_TEST_FILE
