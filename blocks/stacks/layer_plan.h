// Per-layer specs: one default block for every layer plus named overrides for chosen layers, so
// a hybrid (2 softmax + 2 sigmoid layers), an alternation (MaxViT, DaViT) or a per-layer head
// count is data, not code.
//
//   layers:                               # applied in order; a later override wins
//     late:  {at: 2-3, mixer: {type: attention/sigmoid, heads: 2}}
//     wide:  {at: "0,5", mixer: {heads: 8}}
//     odd:   {every: 2, offset: 1, channel: {type: glu}}
//
// Selectors: `at` (a layer "3", a range "0-1", a list "0,2,4-5", or an int), `every: k` with
// `offset: r` (layers r, r+k, ...) and, in staged stacks, `stage: s` (that stage's layers); the
// layers an override selects are those all of its selectors select. Layers are numbered across
// the whole stack. `block`, `mixer`, `channel`:
// a component with a `type` replaces the layer's one (nothing of the replaced one is kept, so a
// mixer without heads never inherits `heads`); a mapping without `type` changes options of the
// layer's current one. Overrides are named so a sweep can address one option of one of them
// (model.layers.late.mixer.heads=1,2,4) and a config group can fill one
// (defaults: - model/mixer@model.layers.late.mixer: sigmoid).
#pragma once

#include <string>
#include <vector>

#include "blocks/model.h"

namespace blocklab {

// The block of one layer, with where each part was configured (for messages).
struct LayerSpec {
  ConfigNode block, mixer, channel;
  std::string block_path, mixer_path, channel_path;  // "model.mixer", "model.layers.late.mixer"
};

// One spec per layer. `stage_of[i]`: the stage of layer i in a staged stack (empty: one stage).
// Throws ConfigError located at the offending override (a range beyond `depth`, a stage that does
// not exist, an unknown key, an override that selects no layer).
std::vector<LayerSpec> plan_layers(std::int64_t depth, const LayerDefaults& defaults, const ConfigNode& overrides,
                                   const std::string& overrides_path, const std::vector<std::int64_t>& stage_of = {});

// The registry key of a component config ("attention/softmax"), "" when it has none.
std::string layer_mixer_key(const LayerSpec& spec);

// Builds layer `i` from its spec; a ConfigError from the block's factories is re-raised with the
// path of the override (or default) that configured the offending value and the layer index.
Block build_layer(const LayerSpec& spec, std::int64_t i, const BlockArgs& args);

// Stochastic depth of layer i of `depth`: linear from 0 to `drop_path` (Huang et al. 2016).
double drop_path_rate(double drop_path, std::int64_t i, std::int64_t depth);

// Builds every layer of `plan` into `list` (which the caller registered), stochastic depth rising
// linearly from 0 at the first layer to `drop_path` at the last (Huang et al. 2016,
// arXiv:1603.09382; as DeiT/timm). `layout` gives the layers their token grid (BlockArgs).
std::vector<Block> build_layers(const std::vector<LayerSpec>& plan, std::int64_t dim, std::int64_t tokens,
                                const MixerContext& layout, double drop_path, torch::nn::ModuleList& list);

// The schema of one override entry (for describe and validation).
const Schema& layer_override_schema();

}  // namespace blocklab
