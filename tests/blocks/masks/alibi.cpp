// Property tests of mask/alibi (tag [masks]), moved from tests/test_masks.cpp.
#include "tests/blocks/masks/helpers.h"

#include "blocks/masks/alibi.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::mask_tests;

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
    CHECK(bias[h][cell(0, 0, gw)][cell(2, 3, gw)].item<double>() ==
          Approx(-slopes[h] * std::sqrt(13.0)).epsilon(1e-14));
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

}  // namespace BLOCKLAB_TEST_FILE
