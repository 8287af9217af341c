// Every linear-attention and retention mixer (registry keys linear/..., retention/...) trains
// inside the two backbones its tables use, tag [linear]: a causal token LM (and the trained LM
// steps token by token like its full forward) and a ViT on patches (tests/blocks/family_trains.h).
// Registry-driven: a new mixer of these families is covered by registering it.
#include <catch2/catch.hpp>

#include "blocks/family_trains.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::family_trains;

namespace {

std::vector<std::string> linear_family() { return mixers_with_prefixes({"linear/", "retention/"}); }

}  // namespace

TEST_CASE(
    "linear family: every causal mixer learns a periodic sequence in a causal LM; recurrent ones then step "
    "like the forward",
    "[linear]") {
  const auto keys = linear_family();
  REQUIRE(keys.size() >= 2);
  for (const std::string& key : keys) {
    const MixerCapabilities caps = capabilities_of(key);
    if (!caps.causal || caps.needs_grid) continue;  // image-only mixers: the ViT case below
    DYNAMIC_SECTION("mixer " << key) { check_learns_lm(key); }
  }
}

TEST_CASE("linear family: every mixer learns to classify images in a ViT", "[linear]") {
  for (const std::string& key : linear_family()) DYNAMIC_SECTION("mixer " << key) {
      check_learns_vit(key);
    }
}

}  // namespace BLOCKLAB_TEST_FILE
