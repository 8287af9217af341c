// Property tests of shared primitives (tag [variants]), moved from tests/test_attention_variants.cpp.
#include "tests/blocks/attention/helpers.h"

#include "blocks/common/relative_positions.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::attention_tests;

TEST_CASE("relative positions: the causal and bidirectional skews equal the explicit gather", "[variants]") {
  torch::manual_seed(1);
  for (std::int64_t l : {1, 2, 5, 8}) {
    INFO("L = " << l);
    const auto causal_in = randn({2, 3, l, l});
    const auto causal_out = skew_causal(causal_in);
    REQUIRE(causal_out.sizes() == causal_in.sizes());
    const auto both_in = randn({2, 3, l, 2 * l - 1});
    const auto both_out = skew_bidirectional(both_in);
    REQUIRE(both_out.sizes() == causal_in.sizes());
    for (std::int64_t i = 0; i < l; ++i)
      for (std::int64_t j = 0; j < l; ++j) {
        CHECK(torch::equal(both_out.select(2, i).select(2, j), both_in.select(2, i).select(2, l - 1 + j - i)));
        if (j <= i)
          CHECK(torch::equal(causal_out.select(2, i).select(2, j), causal_in.select(2, i).select(2, l - 1 + j - i)));
      }
  }
}

TEST_CASE("relative positions: index clamps j - i, windows slice or zero-pad, grid offsets are key minus query",
          "[variants]") {
  const auto idx = relative_index(6, 3, torch::kCPU);
  for (std::int64_t i = 0; i < 6; ++i)
    for (std::int64_t j = 0; j < 6; ++j)
      CHECK(idx[i][j].item<std::int64_t>() == std::clamp<std::int64_t>(j - i, -2, 2) + 2);
  // A table of 2M-1 = 5 offsets: n = 2 keeps the middle 3 rows, n = 4 pads one zero row each side.
  const auto table = torch::arange(1, 6, torch::kFloat64).view({1, 5, 1});
  CHECK(torch::equal(relative_window(table, 2, 1).flatten(), torch::tensor({2.0, 3.0, 4.0}, torch::kFloat64)));
  CHECK(torch::equal(relative_window(table, 4, 1).flatten(),
                     torch::tensor({0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0}, torch::kFloat64)));
  const auto r = grid_offsets(2, 3, torch::kFloat64);  // tokens (y, x): 0 (0,0) ... 5 (1,2)
  REQUIRE(r.sizes() == torch::IntArrayRef({6, 6, 3}));
  // Query 1 = (0, 1), key 5 = (1, 2): dx = 1, dy = 1, d^2 = 2.
  CHECK(torch::equal(r[1][5], torch::tensor({1.0, 1.0, 2.0}, torch::kFloat64)));
  CHECK(torch::equal(r[5][1], torch::tensor({-1.0, -1.0, 2.0}, torch::kFloat64)));
}

}  // namespace BLOCKLAB_TEST_FILE
