// Property tests of every mask (tag [masks]), moved from tests/test_masks.cpp.
#include "tests/blocks/masks/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::mask_tests;

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

}  // namespace BLOCKLAB_TEST_FILE
