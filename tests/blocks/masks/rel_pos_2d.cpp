// Property tests of mask/rel-pos-2d (tag [masks]), moved from tests/test_masks.cpp.
#include "tests/blocks/masks/helpers.h"

#include "blocks/masks/rel_pos_2d.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::mask_tests;

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
    auto mask =
        std::dynamic_pointer_cast<RelPos2dMaskImpl>(mask_registry().create(yaml(text), MaskArgs{4, 32, max_tokens}));
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
  const std::string half = testing::error_text([&] {
    mask_registry().create(yaml("{type: mask/rel-pos-2d, height: 3}"), MaskArgs{2, 16, 9});
  });
  CHECK(half.find("both height and width") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
