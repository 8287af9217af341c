// Property tests of mask/elm (tag [masks]), moved from tests/test_masks.cpp.
#include "tests/blocks/masks/helpers.h"

#include "blocks/masks/elm.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::mask_tests;

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
  const std::string text = testing::error_text([&] {
    a->forward(torch::randn({1, 17, 16}, torch::kFloat64), sequence_context());
  });
  CHECK(text.find("10 x 10") != std::string::npos);
  CHECK(text.find("17 tokens") != std::string::npos);
  const std::string no_size = testing::error_text([&] {
    mask_registry().create(yaml("{type: mask/elm}"), MaskArgs{2, 16, 0});
  });
  CHECK(no_size.find("max_tokens") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
