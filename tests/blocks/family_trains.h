// Training checks shared by the block families' tests (tests/blocks/linear/trains.cpp,
// tests/blocks/trains.cpp): a mixer, built from its registry example at width 32, learns in
// the backbones its tables use. Each returns nothing and CHECKs inside; `key` names the mixer.
#pragma once

#include <string>
#include <vector>

#include "blocks/interfaces.h"

namespace blocklab::family_trains {

// Registered mixers whose key starts with one of the prefixes ("linear/", "ssm/", ...).
std::vector<std::string> mixers_with_prefixes(const std::vector<std::string>& prefixes);
// The mixer's capabilities, built from its registry example at width 32.
MixerCapabilities capabilities_of(const std::string& key);

// A causal token LM learns a periodic sequence (the next token is the one 8 back): the loss of
// the last steps falls below `fraction` of the first's; a recurrent mixer's trained LM then steps
// token by token like its forward (float64, <= 1e-9).
void check_learns_lm(const std::string& key, double fraction = 0.6);
// A sequence classifier (mean pooling over valid tokens of right-padded sequences) learns the
// class of the first token, which only mixing brings to the others.
void check_learns_seqcls(const std::string& key);
// A ViT on 16 x 16 patches learns on which side a bright square is.
void check_learns_vit(const std::string& key);
// The same task for any composed model (its YAML, flow style) on 16 x 16 one-channel images.
void check_learns_images(const std::string& model_yaml);

}  // namespace blocklab::family_trains
