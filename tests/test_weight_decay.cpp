// Weight decay per module: the parameters each block declares (position tables, relative
// embeddings, class tokens) and every parameter of rank <= 1 take no decay; everything else is
// decayed. Checked over every registered mixer and mask, and block by block.
#include <catch2/catch.hpp>

#include "blocks/common/weight_decay.h"
#include "blocks/interfaces.h"
#include "blocks/masks/mask.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

TokenMixer mixer(const std::string& yaml) {
  return mixer_registry().create(parse_yaml(yaml, "test"), MixerArgs{32, 17});
}

// The names without decay whose parameter has rank >= 2: the ones a module had to declare.
std::set<std::string> declared(const torch::nn::Module& m) {
  std::set<std::string> out;
  const auto params = m.named_parameters();
  for (const auto& name : no_weight_decay_names(m))
    if (params[name].dim() >= 2) out.insert(name);
  return out;
}

Backbone vit(const std::string& yaml) {
  return backbone_registry().create(parse_yaml(yaml, "test"), BackboneArgs{1, 28, 28});
}

}  // namespace

TEST_CASE("rank <= 1 parameters never take weight decay; matrices do unless declared", "[optim]") {
  const TokenMixer m = mixer("{type: attention/softmax, heads: 4}");
  const auto names = no_weight_decay_names(*m);
  CHECK(names == std::set<std::string>{"qkv.bias", "proj.bias"});
  CHECK(declared(*m).empty());
}

TEST_CASE("position parameters are declared by their blocks", "[optim]") {
  CHECK(declared(*mixer("{type: attention/urpe, heads: 4}")) == std::set<std::string>{"toeplitz_table", "bias_table"});
  CHECK(declared(*mixer("{type: attention/urpe, heads: 4, rel_bias: false}")) ==
        std::set<std::string>{"toeplitz_table"});
  CHECK(declared(*mixer("{type: attention/relative, heads: 4}")) == std::set<std::string>{"rel_embeddings"});
  CHECK(declared(*mixer("{type: attention/gpsa, heads: 4}")) == std::set<std::string>{"pos_weight"});
  CHECK(declared(*mixer("{type: attention/softmax, heads: 4, mask: {type: mask/rel-pos-2d}}")) ==
        std::set<std::string>{"mask.table"});
  // The ELM mask is a learned token-mixing prior, not a position table: decayed, as before.
  CHECK(declared(*mixer("{type: attention/softmax, heads: 4, mask: {type: mask/elm}}")).empty());
}

TEST_CASE("the ViT declares its position table and class token, with full names through the model", "[optim]") {
  const Backbone mean_pooled = vit("{type: vit, dim: 32, depth: 2, patch: 7, pool: mean}");
  CHECK(declared(*mean_pooled) == std::set<std::string>{"pos_embed"});
  const Backbone with_cls = vit("{type: vit, dim: 32, depth: 1, patch: 7, pool: cls, mixer: {type: attention/gpsa}}");
  CHECK(declared(*with_cls) == std::set<std::string>{"pos_embed", "cls_token", "blocks.0.mixer.pos_weight"});
  // Fixed sin-cos positions are a buffer, not a parameter: nothing to declare.
  CHECK(declared(*vit("{type: vit, dim: 32, depth: 1, patch: 7, pool: mean, pos: sinusoidal}")).empty());
}

TEST_CASE("every registered mixer and mask declares only parameters it has", "[optim]") {
  for (const auto& key : mixer_registry().keys()) {
    INFO(key);
    ConfigNode config = parse_yaml(mixer_registry().info(key).example, key);
    config.set("type", ConfigNode::string(key));
    CHECK_NOTHROW(no_weight_decay_names(*mixer_registry().create(config, MixerArgs{32, 17})));
  }
  for (const auto& key : mask_registry().keys()) {
    INFO(key);
    CHECK_NOTHROW(no_weight_decay_names(*mixer("{type: attention/softmax, heads: 4, mask: {type: " + key + "}}")));
  }
}

}  // namespace BLOCKLAB_TEST_FILE
