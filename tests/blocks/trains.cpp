// Every mixer of the state space, convolution, matrix-mixer, recurrent and memory families
// (registry keys ssm/, conv/, mixer/, recurrent/, memory/; wave 5's token mixers and metamixer/
// too) trains inside the backbones its tables
// use, tag [trains] (tests/blocks/family_trains.h): causal ones in a causal token LM (recurrent
// ones then step like the forward) and every one in a sequence classifier over right-padded
// sequences (an encoder for those without a causal form); all in a ViT, grid mixers only there.
// Registry-driven: registering a mixer of these families covers it.
#include <catch2/catch.hpp>

#include "blocks/family_trains.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::family_trains;

namespace {

// Aaren's query is a learned token, not a function of the input (Feng et al. 2024,
// arXiv:2405.13956), so no head can look back by content or by a fixed offset:
// the periodic LM is beyond it in 200 steps (2.1 -> 1.4; 0.95 after 800). It must still learn.
double lm_fraction(const std::string& key) { return key == "recurrent/aaren" ? 0.75 : 0.6; }

// The Activator's gating unit mixes no tokens at all (Abdullah & Aydin 2024; catalog B 1-33: a
// bag-of-patches baseline whose only cross-token step is the model's mean pool), so a causal LM
// that must look 8 tokens back is beyond it by design; it learns in the sequence classifier and
// the ViT below, and steps like its forward in conformance.
bool looks_back(const std::string& key) { return key != "mixer/activator"; }

std::vector<std::string> families() {
  return mixers_with_prefixes({"ssm/", "conv/", "mixer/", "recurrent/", "memory/", "metamixer/"});
}

}  // namespace

TEST_CASE("wave 3 families: every causal mixer learns in a causal LM; recurrent ones then step like the forward",
          "[trains]") {
  const auto keys = families();
  REQUIRE(keys.size() >= 2);
  for (const std::string& key : keys) {
    const MixerCapabilities caps = capabilities_of(key);
    if (!caps.causal || caps.needs_grid || !looks_back(key)) continue;
    DYNAMIC_SECTION("mixer " << key) { check_learns_lm(key, lm_fraction(key)); }
  }
}

TEST_CASE("wave 3 families: every sequence mixer learns to classify right-padded sequences", "[trains]") {
  for (const std::string& key : families()) {
    if (capabilities_of(key).needs_grid) continue;
    DYNAMIC_SECTION("mixer " << key) { check_learns_seqcls(key); }
  }
}

TEST_CASE("wave 3 families: every mixer learns to classify images in a ViT", "[trains]") {
  for (const std::string& key : families()) DYNAMIC_SECTION("mixer " << key) {
      check_learns_vit(key);
    }
}

}  // namespace BLOCKLAB_TEST_FILE
