// The VAN and CAS-ViT stage blocks (block/van, block/cas-vit), tag [designs]: each equals its
// paper's block written out with convolutions by hand (float64, eval mode, BatchNorm statistics
// moved off their init) around a token mixer; the presets' defaults (VAN's LayerScale 0.01 and
// depth-wise MLP, CAS-ViT's local integration unit); prefix tokens pass through; the layer's grid
// reaches the mixer; causal use and bad options are refused.
#include <catch2/catch.hpp>

#include "blocks/family_trains.h"

#include "blocks/backbones/conv_stage_block.h"
#include "blocks/mixers/spectral.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::batch_norm_by_hand;
using attention_tests::close;

namespace {

constexpr std::int64_t kDim = 8, kH = 4, kW = 5;

std::shared_ptr<ConvStageBlockImpl> make_stage_block(const std::string& block, const std::string& mixer,
                                                     bool randomise = true) {
  BlockArgs args;
  args.dim = kDim, args.max_tokens = 64, args.grid_height = kH, args.grid_width = kW;
  args.mixer = parse_yaml(mixer, "mixer");
  args.channel = parse_yaml("mlp", "channel");
  auto b = std::dynamic_pointer_cast<ConvStageBlockImpl>(block_registry().create(parse_yaml(block, "block"), args));
  REQUIRE(b);
  b->to(torch::kFloat64);
  if (randomise) attention_tests::randomise_for_by_hand(*b);
  return b;
}

MixerContext grid_context(std::int64_t prefix = 0) {
  MixerContext ctx;
  ctx.grid_height = kH, ctx.grid_width = kW, ctx.prefix_tokens = prefix;
  return ctx;
}

torch::Tensor image_of(const torch::Tensor& tokens, std::int64_t prefix) {
  return tokens.narrow(1, prefix, kH * kW).transpose(1, 2).reshape({tokens.size(0), kDim, kH, kW});
}

// Conv2d by hand through torch::conv2d with the module's own weight and bias (padding k / 2).
torch::Tensor conv(const torch::nn::Module& m, const torch::Tensor& x) {
  const auto& c = dynamic_cast<const torch::nn::Conv2dImpl&>(m);
  const auto k = c.weight.size(2);
  return torch::conv2d(x, c.weight, c.bias, 1, k / 2, 1, c.options.groups());
}

// PoolFormer's pooling mixer on an image: the 3 x 3 average (padding not counted) minus the input.
torch::Tensor pooling(const torch::Tensor& image) { return torch::avg_pool2d(image, 3, 1, 1, false, false) - image; }

}  // namespace

TEST_CASE("block/van: x + g1 mixer(BN x), then x + g2 Conv1x1(GELU(DWConv3x3(Conv1x1(BN x))))", "[designs]") {
  torch::manual_seed(1);
  const auto b = make_stage_block("{type: block/van, mlp_ratio: 2}", "{type: mixer/pooling}");
  REQUIRE(b->mlp->size() == 4);  // pointwise, depth-wise, GELU, pointwise
  const auto x = torch::randn({2, 1 + kH * kW, kDim}, torch::kFloat64);
  const auto y = b->forward(x, grid_context(1));
  const auto g = [](const torch::Tensor& gamma) { return gamma.view({1, kDim, 1, 1}); };
  auto image = image_of(x, 1);
  image = image + g(b->gamma1) * pooling(batch_norm_by_hand(*b->norm1, image));
  auto h = conv(*b->mlp[0], batch_norm_by_hand(*b->norm2, image));
  h = torch::gelu(conv(*b->mlp[1], h));
  image = image + g(b->gamma2) * conv(*b->mlp[3], h);
  CHECK(close(image_of(y, 1), image, 1e-10, 1e-12));
  CHECK(torch::equal(y.narrow(1, 0, 1), x.narrow(1, 0, 1)));
}

TEST_CASE("block/cas-vit: x + LI(x), then x + mixer(BN x), then x + Conv1x1(GELU(Conv1x1(BN x)))", "[designs]") {
  torch::manual_seed(2);
  const auto b = make_stage_block("{type: block/cas-vit}", "{type: mixer/pooling}");
  REQUIRE(b->local_integration);
  REQUIRE(b->mlp->size() == 3);  // pointwise, GELU, pointwise
  CHECK_FALSE(b->gamma1.defined());
  const auto x = torch::randn({2, kH * kW, kDim}, torch::kFloat64);
  const auto& li = *b->local_integration;
  auto image = image_of(x, 0);
  auto t = conv(*li[0], image);
  t = batch_norm_by_hand(dynamic_cast<const torch::nn::BatchNorm2dImpl&>(*li[1]), t);
  t = conv(*li[4], torch::gelu(conv(*li[2], t)));
  image = image + t;
  image = image + pooling(batch_norm_by_hand(*b->norm1, image));
  image = image + conv(*b->mlp[2], torch::gelu(conv(*b->mlp[0], batch_norm_by_hand(*b->norm2, image))));
  CHECK(close(image_of(b->forward(x, grid_context()), 0), image, 1e-10, 1e-12));
}

TEST_CASE("block/van and block/cas-vit: the presets' defaults and the grid passed to the mixer", "[designs]") {
  const auto van = make_stage_block("{type: block/van}", "{type: mixer/spectral}", false);
  CHECK(close(van->gamma1, torch::full({kDim, 1, 1}, 0.01, torch::kFloat64), 1e-7, 0.0));  // 0.01 made in float32
  CHECK(van->mlp->size() == 4);
  CHECK_FALSE(van->local_integration);
  CHECK(dynamic_cast<const torch::nn::Conv2dImpl&>(*van->mlp[0]).weight.size(0) == 4 * kDim);
  // The mixer's filter is sized by the layer's grid (BlockArgs): [H, W/2 + 1, C, 2].
  const auto spectral = std::dynamic_pointer_cast<SpectralGatingImpl>(van->mixer);
  REQUIRE(spectral);
  CHECK(spectral->weight.sizes() == torch::IntArrayRef({kH, kW / 2 + 1, kDim, 2}));

  const auto cas = make_stage_block("{type: block/cas-vit, local_integration: false, layer_scale: 0.5}",
                                    "{type: mixer/pooling}", false);
  CHECK_FALSE(cas->local_integration);
  CHECK(torch::equal(cas->gamma2, torch::full({kDim, 1, 1}, 0.5, torch::kFloat64)));
}

TEST_CASE("block/van and block/cas-vit: causal use and bad options are refused", "[designs]") {
  const auto b = make_stage_block("{type: block/van}", "{type: mixer/pooling}");
  MixerContext ctx = grid_context();
  ctx.causal = true;
  CHECK_THROWS_WITH(b->forward(torch::randn({1, kH * kW, kDim}, torch::kFloat64), ctx),
                    Catch::Contains("block/van") && Catch::Contains("causal"));
  CHECK_THROWS_AS(make_stage_block("{type: block/van, mlp_ratio: 0}", "{type: mixer/pooling}"), ConfigError);
  CHECK_THROWS_AS(make_stage_block("{type: block/cas-vit, layer_scale: -1}", "{type: mixer/pooling}"), ConfigError);
  CHECK_THROWS_AS(make_stage_block("{type: block/cas-vit, mlp_dw: true}", "{type: mixer/pooling}"), ConfigError);
}

TEST_CASE("block/van learns images around VAN's large kernel attention", "[designs]") {
  family_trains::check_learns_images(
      "{type: model/composed, dim: 32, pool: mean, stem: {type: stem/patch, patch: 4, pos: learned}, "
      "stack: {type: stack/plain, depth: 2, drop_path: 0.0}, block: {type: block/van}, "
      "mixer: {type: conv/lka, kernel: 9, dilation: 2}}");
}

TEST_CASE("block/cas-vit learns images around CAS-ViT's additive mixer", "[designs]") {
  family_trains::check_learns_images(
      "{type: model/composed, dim: 32, pool: mean, stem: {type: stem/patch, patch: 4, pos: learned}, "
      "stack: {type: stack/plain, depth: 2, drop_path: 0.0}, block: {type: block/cas-vit}, "
      "mixer: {type: mixer/cas-additive}}");
}

}  // namespace BLOCKLAB_TEST_FILE
