// block/inception-resnet (Inception-ResNet-v2's blocks A, B, C) and its reductions, tag [designs]:
// each variant equals its formula written out by hand (branches of ReLU(BN(Conv)) with the paper's
// kernels and paddings, the 1x1 up-projection with bias, ReLU(x + s up), s = 0.17 / 0.10 / 0.20;
// the last Block8's form without ReLU); residual_scale 0 makes it ReLU(x) on the grid and passes
// prefix tokens unchanged; the branch widths at the paper's widths are the paper's (under timm's
// state-dict names) and follow the scaling rule elsewhere; the parameter counts at the paper's
// widths are the closed form of the branch table and timm's counts; the reductions map 35 -> 17 -> 8
// with channels 320 -> 1088 -> 2080 and equal their formulas by hand; causal use, tokens without a
// grid and bad options are refused.
#include <catch2/catch.hpp>

#include "blocks/family_trains.h"

#include <utility>
#include <vector>

#include "blocks/backbones/inception_resnet_block.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::batch_norm_by_hand;
using attention_tests::close;
using attention_tests::parameter_count;
using attention_tests::randomise_for_by_hand;

namespace {

using Shapes = std::vector<std::pair<std::string, std::vector<std::int64_t>>>;

std::shared_ptr<InceptionResNetBlockImpl> build(const std::string& options, std::int64_t dim) {
  BlockArgs args;
  args.dim = dim;
  auto block = std::dynamic_pointer_cast<InceptionResNetBlockImpl>(
      block_registry().create(parse_yaml("{type: block/inception-resnet" + options + "}", "b.yaml"), args));
  REQUIRE(block);
  block->to(torch::kFloat64);
  return block;
}

MixerContext grid_context(std::int64_t h, std::int64_t w, std::int64_t prefix) {
  MixerContext ctx;
  ctx.grid_height = h, ctx.grid_width = w, ctx.prefix_tokens = prefix;
  return ctx;
}

// One BasicConv2d by hand (eval mode): ReLU(BN(conv(x))) with the padding and stride written out.
torch::Tensor conv_by_hand(const InceptionConvImpl& c, const torch::Tensor& x, std::vector<std::int64_t> padding,
                           std::int64_t stride = 1) {
  return torch::relu(batch_norm_by_hand(*c.bn, torch::conv2d(x, c.conv->weight, {}, stride, padding)));
}

const InceptionConvImpl& layer(const torch::nn::Sequential& chain, std::size_t i) {
  return chain->at<InceptionConvImpl>(i);
}

// Every 4-D weight (the convolutions) has the shape of the table, and there are no others.
void check_conv_shapes(const torch::nn::Module& m, const Shapes& expected) {
  const auto params = m.named_parameters();
  std::size_t convs = 0;
  for (const auto& p : params) convs += p.value().dim() == 4 ? 1 : 0;
  CHECK(convs == expected.size());
  for (const auto& [name, shape] : expected) {
    INFO(name);
    const torch::Tensor* t = params.find(name);
    REQUIRE(t != nullptr);
    CHECK(t->sizes() == torch::IntArrayRef(shape));
  }
}

// A BasicConv2d in -> out with a kh x kw kernel: the convolution's weights and BN's scale and shift.
std::int64_t basic_conv_count(std::int64_t in, std::int64_t out, std::int64_t kh, std::int64_t kw) {
  return in * out * kh * kw + 2 * out;
}

}  // namespace

TEST_CASE("block/inception-resnet: each variant is its formula by hand (float64, eval)", "[designs]") {
  torch::manual_seed(1);
  constexpr std::int64_t kDim = 16, kH = 4, kW = 5;
  const auto ctx = grid_context(kH, kW, 1);
  const auto x = torch::randn({2, 1 + kH * kW, kDim}, torch::kFloat64);
  const auto image = x.narrow(1, 1, kH * kW).transpose(1, 2).reshape({2, kDim, kH, kW});
  const auto up_by_hand = [](const InceptionResNetBlockImpl& b, const std::vector<torch::Tensor>& parts) {
    return torch::conv2d(torch::cat(parts, 1), b.conv2d->weight, b.conv2d->bias);
  };
  const auto check_block = [&](InceptionResNetBlockImpl& b, const torch::Tensor& expected_image) {
    const auto out = b.forward(x, ctx);
    CHECK(close(out.narrow(1, 1, kH * kW), expected_image.flatten(2).transpose(1, 2)));
    CHECK(torch::equal(out.narrow(1, 0, 1), x.narrow(1, 0, 1)));
  };
  SECTION("a (Block35): 1x1 | 1x1, 3x3 | 1x1, 3x3, 3x3; s = 0.17") {
    const auto b = build(", variant: a", kDim);
    randomise_for_by_hand(*b);
    const auto b0 = conv_by_hand(*b->branch0, image, {0, 0});
    const auto b1 = conv_by_hand(layer(b->branch1, 1), conv_by_hand(layer(b->branch1, 0), image, {0, 0}), {1, 1});
    auto b2 = conv_by_hand(layer(b->branch2, 0), image, {0, 0});
    b2 = conv_by_hand(layer(b->branch2, 2), conv_by_hand(layer(b->branch2, 1), b2, {1, 1}), {1, 1});
    check_block(*b, torch::relu(image + 0.17 * up_by_hand(*b, {b0, b1, b2})));
  }
  SECTION("b (Block17): 1x1 | 1x1, 1x7, 7x1; s = 0.10") {
    const auto b = build(", variant: b", kDim);
    randomise_for_by_hand(*b);
    CHECK(b->branch2.is_empty());
    const auto b0 = conv_by_hand(*b->branch0, image, {0, 0});
    auto b1 = conv_by_hand(layer(b->branch1, 0), image, {0, 0});
    b1 = conv_by_hand(layer(b->branch1, 2), conv_by_hand(layer(b->branch1, 1), b1, {0, 3}), {3, 0});
    check_block(*b, torch::relu(image + 0.10 * up_by_hand(*b, {b0, b1})));
  }
  SECTION("c (Block8): 1x1 | 1x1, 1x3, 3x1; s = 0.20; and the last Block8: s = 1, no ReLU") {
    for (const bool last : {false, true}) {
      INFO("last " << last);
      const auto b = build(last ? ", variant: c, residual_scale: 1.0, activation: false" : ", variant: c", kDim);
      randomise_for_by_hand(*b);
      const auto b0 = conv_by_hand(*b->branch0, image, {0, 0});
      auto b1 = conv_by_hand(layer(b->branch1, 0), image, {0, 0});
      b1 = conv_by_hand(layer(b->branch1, 2), conv_by_hand(layer(b->branch1, 1), b1, {0, 1}), {1, 0});
      const auto up = up_by_hand(*b, {b0, b1});
      check_block(*b, last ? image + up : torch::relu(image + 0.20 * up));
    }
  }
}

TEST_CASE("block/inception-resnet: residual_scale 0 makes it ReLU(x); prefix tokens pass unchanged", "[designs]") {
  torch::manual_seed(2);
  const auto ctx = grid_context(3, 4, 2);
  const auto x = torch::randn({2, 2 + 12, 24}, torch::kFloat64);
  for (const std::string variant : {"a", "b", "c"}) {
    INFO("variant " << variant);
    const auto b = build(", residual_scale: 0.0, variant: " + variant, 24);
    randomise_for_by_hand(*b);
    const auto out = b->forward(x, ctx);
    CHECK(torch::equal(out.narrow(1, 2, 12), torch::relu(x.narrow(1, 2, 12))));
    CHECK(torch::equal(out.narrow(1, 0, 2), x.narrow(1, 0, 2)));  // negative values too: no ReLU on them
    const auto linear = build(", residual_scale: 0.0, activation: false, variant: " + variant, 24);
    randomise_for_by_hand(*linear);
    CHECK(torch::equal(linear->forward(x, ctx), x));
  }
}

TEST_CASE("block/inception-resnet: branch widths, the paper's at its widths, scaled to multiples of 8 elsewhere",
          "[designs]") {
  torch::manual_seed(3);
  SECTION("the paper's layouts under timm's names (Block35 at 320, Block17 at 1088, Block8 at 2080)") {
    check_conv_shapes(*build("", 320), {{"branch0.conv.weight", {32, 320, 1, 1}},
                                        {"branch1.0.conv.weight", {32, 320, 1, 1}},
                                        {"branch1.1.conv.weight", {32, 32, 3, 3}},
                                        {"branch2.0.conv.weight", {32, 320, 1, 1}},
                                        {"branch2.1.conv.weight", {48, 32, 3, 3}},
                                        {"branch2.2.conv.weight", {64, 48, 3, 3}},
                                        {"conv2d.weight", {320, 128, 1, 1}}});
    check_conv_shapes(*build(", variant: b", 1088), {{"branch0.conv.weight", {192, 1088, 1, 1}},
                                                     {"branch1.0.conv.weight", {128, 1088, 1, 1}},
                                                     {"branch1.1.conv.weight", {160, 128, 1, 7}},
                                                     {"branch1.2.conv.weight", {192, 160, 7, 1}},
                                                     {"conv2d.weight", {1088, 384, 1, 1}}});
    check_conv_shapes(*build(", variant: c", 2080), {{"branch0.conv.weight", {192, 2080, 1, 1}},
                                                     {"branch1.0.conv.weight", {192, 2080, 1, 1}},
                                                     {"branch1.1.conv.weight", {224, 192, 1, 3}},
                                                     {"branch1.2.conv.weight", {256, 224, 3, 1}},
                                                     {"conv2d.weight", {2080, 448, 1, 1}}});
    CHECK(build("", 320)->conv2d->bias.size(0) == 320);  // the up-projection has a bias
  }
  SECTION("scaled: w C / C_paper to the nearest multiple of 8 (halves up), at least 8") {
    // a at 80: 32 -> 8, 48 -> 12 -> 16 (a half: up), 64 -> 16; concat 8 + 8 + 16.
    check_conv_shapes(*build("", 80), {{"branch0.conv.weight", {8, 80, 1, 1}},
                                       {"branch1.0.conv.weight", {8, 80, 1, 1}},
                                       {"branch1.1.conv.weight", {8, 8, 3, 3}},
                                       {"branch2.0.conv.weight", {8, 80, 1, 1}},
                                       {"branch2.1.conv.weight", {16, 8, 3, 3}},
                                       {"branch2.2.conv.weight", {16, 16, 3, 3}},
                                       {"conv2d.weight", {80, 32, 1, 1}}});
    // a at 640: twice the paper's.
    const auto a640 = build("", 640);
    CHECK(a640->conv2d->weight.sizes() == torch::IntArrayRef({640, 256, 1, 1}));
    CHECK(layer(a640->branch2, 2).conv->weight.sizes() == torch::IntArrayRef({128, 96, 3, 3}));
    // b at 544: half the paper's (192, 128, 160, 192 -> 96, 64, 80, 96).
    check_conv_shapes(*build(", variant: b", 544), {{"branch0.conv.weight", {96, 544, 1, 1}},
                                                    {"branch1.0.conv.weight", {64, 544, 1, 1}},
                                                    {"branch1.1.conv.weight", {80, 64, 1, 7}},
                                                    {"branch1.2.conv.weight", {96, 80, 7, 1}},
                                                    {"conv2d.weight", {544, 192, 1, 1}}});
    // c at 32: 192 * 32 / 2080 = 2.95 -> the minimum 8 everywhere.
    check_conv_shapes(*build(", variant: c", 32), {{"branch0.conv.weight", {8, 32, 1, 1}},
                                                   {"branch1.0.conv.weight", {8, 32, 1, 1}},
                                                   {"branch1.1.conv.weight", {8, 8, 1, 3}},
                                                   {"branch1.2.conv.weight", {8, 8, 3, 1}},
                                                   {"conv2d.weight", {32, 16, 1, 1}}});
  }
}

TEST_CASE("block/inception-resnet: parameter counts at the paper's widths (closed form, timm's count)", "[designs]") {
  // Block35 at 320: 1x1 32 | 1x1 32, 3x3 32 | 1x1 32, 3x3 48, 3x3 64; up 128 -> 320 with bias.
  const std::int64_t a =
      basic_conv_count(320, 32, 1, 1) + (basic_conv_count(320, 32, 1, 1) + basic_conv_count(32, 32, 3, 3)) +
      (basic_conv_count(320, 32, 1, 1) + basic_conv_count(32, 48, 3, 3) + basic_conv_count(48, 64, 3, 3)) +
      (128 * 320 + 320);
  // Block17 at 1088: 1x1 192 | 1x1 128, 1x7 160, 7x1 192; up 384 -> 1088.
  const std::int64_t b =
      basic_conv_count(1088, 192, 1, 1) +
      (basic_conv_count(1088, 128, 1, 1) + basic_conv_count(128, 160, 1, 7) + basic_conv_count(160, 192, 7, 1)) +
      (384 * 1088 + 1088);
  // Block8 at 2080: 1x1 192 | 1x1 192, 1x3 224, 3x1 256; up 448 -> 2080.
  const std::int64_t c =
      basic_conv_count(2080, 192, 1, 1) +
      (basic_conv_count(2080, 192, 1, 1) + basic_conv_count(192, 224, 1, 3) + basic_conv_count(224, 256, 3, 1)) +
      (448 * 2080 + 2080);
  // timm 1.0.31: sum(p.numel()) of Block35(), Block17(), Block8() with InceptionResnetV2's conv_block.
  CHECK(a == 123168);
  CHECK(b == 1126784);
  CHECK(c == 2035424);
  CHECK(parameter_count(*build(", variant: a", 320)) == a);
  CHECK(parameter_count(*build(", variant: b", 1088)) == b);
  CHECK(parameter_count(*build(", variant: c", 2080)) == c);
  // Reductions: A at 320 (3x3/2 384 | 1x1 256, 3x3 256, 3x3/2 384), B at 1088.
  const std::int64_t ra = basic_conv_count(320, 384, 3, 3) + basic_conv_count(320, 256, 1, 1) +
                          basic_conv_count(256, 256, 3, 3) + basic_conv_count(256, 384, 3, 3);
  const std::int64_t rb = 3 * basic_conv_count(1088, 256, 1, 1) + basic_conv_count(256, 384, 3, 3) +
                          basic_conv_count(256, 288, 3, 3) + basic_conv_count(256, 288, 3, 3) +
                          basic_conv_count(288, 320, 3, 3);
  CHECK(ra == 2664960);  // timm's Mixed_6a
  CHECK(rb == 3880960);  // timm's Mixed_7a
  CHECK(parameter_count(*InceptionReductionA(320)) == ra);
  CHECK(parameter_count(*InceptionReductionB(1088)) == rb);
}

TEST_CASE("inception reductions: 35 -> 17 -> 8 with 320 -> 1088 -> 2080 channels; their formulas by hand",
          "[designs]") {
  torch::manual_seed(4);
  SECTION("the paper's grids and widths (float32, one image)") {
    InceptionReductionA ra(320);
    InceptionReductionB rb(1088);
    CHECK(ra->out_channels() == 1088);
    CHECK(rb->out_channels() == 2080);
    ra->eval(), rb->eval();
    torch::NoGradGuard no_grad;
    const auto y = ra->forward(torch::randn({1, 320, 35, 35}));
    CHECK(y.sizes() == torch::IntArrayRef({1, 1088, 17, 17}));
    const auto z = rb->forward(y);
    CHECK(z.sizes() == torch::IntArrayRef({1, 2080, 8, 8}));
    // The max-pool branch is last: the input's channels, pooled 3x3 stride 2.
    CHECK(torch::equal(z.narrow(1, 2080 - 1088, 1088), torch::max_pool2d(y, {3, 3}, {2, 2})));
  }
  SECTION("Reduction-A by hand at width 16 (branches 16 | 16, 16, 16; 9x7 -> 4x3)") {
    InceptionReductionA ra(16);
    ra->to(torch::kFloat64);
    randomise_for_by_hand(*ra);
    const auto x = torch::randn({2, 16, 9, 7}, torch::kFloat64);
    const auto b0 = conv_by_hand(*ra->branch0, x, {0, 0}, 2);
    auto b1 = conv_by_hand(layer(ra->branch1, 0), x, {0, 0});
    b1 = conv_by_hand(layer(ra->branch1, 2), conv_by_hand(layer(ra->branch1, 1), b1, {1, 1}), {0, 0}, 2);
    const auto pool = std::get<0>(torch::max_pool2d_with_indices(x, {3, 3}, {2, 2}));
    const auto y = ra->forward(x);
    CHECK(ra->out_channels() == 48);
    CHECK(y.sizes() == torch::IntArrayRef({2, 48, 4, 3}));
    CHECK(close(y, torch::cat({b0, b1, pool}, 1)));
  }
  SECTION("Reduction-B by hand at width 16 (every branch width the minimum 8; 8x8 -> 3x3)") {
    InceptionReductionB rb(16);
    rb->to(torch::kFloat64);
    randomise_for_by_hand(*rb);
    const auto x = torch::randn({2, 16, 8, 8}, torch::kFloat64);
    const auto chain2 = [&](const torch::nn::Sequential& c) {
      return conv_by_hand(layer(c, 1), conv_by_hand(layer(c, 0), x, {0, 0}), {0, 0}, 2);
    };
    auto b2 = conv_by_hand(layer(rb->branch2, 1), conv_by_hand(layer(rb->branch2, 0), x, {0, 0}), {1, 1});
    b2 = conv_by_hand(layer(rb->branch2, 2), b2, {0, 0}, 2);
    const auto pool = std::get<0>(torch::max_pool2d_with_indices(x, {3, 3}, {2, 2}));
    const auto y = rb->forward(x);
    CHECK(rb->out_channels() == 16 + 3 * 8);
    CHECK(y.sizes() == torch::IntArrayRef({2, 40, 3, 3}));
    CHECK(close(y, torch::cat({chain2(rb->branch0), chain2(rb->branch1), b2, pool}, 1)));
  }
}

TEST_CASE("block/inception-resnet: refuses causal use and tokens without a grid; bad options", "[designs]") {
  torch::manual_seed(5);
  const auto x = torch::randn({2, 1 + 9, 16}, torch::kFloat64);
  auto causal = grid_context(3, 3, 1);
  causal.causal = true;
  CHECK_THROWS_WITH(build("", 16)->forward(x, causal), Catch::Contains("causal"));
  CHECK_THROWS_WITH(build("", 16)->forward(x, MixerContext{}), Catch::Contains("grid"));
  CHECK(build(", variant: b", 16)->residual_scale() == 0.10);
  CHECK(build(", variant: c, residual_scale: 0.3", 16)->residual_scale() == 0.3);
  CHECK_THROWS_AS(build(", variant: d", 16), ConfigError);
  CHECK_THROWS_AS(build(", residual_scale: -0.5", 16), ConfigError);
  CHECK_THROWS_AS(build(", residual_scale: -2.0", 16), ConfigError);
  CHECK_THROWS_AS(build(", scale: 0.1", 16), ConfigError);
  CHECK_THROWS_AS(build(", activation: maybe", 16), ConfigError);
  CHECK_THROWS_WITH(InceptionReductionA(16)->forward(torch::randn({1, 16, 2, 5})), Catch::Contains("H, W >= 3"));
}

TEST_CASE("block/inception-resnet learns images (variants a, b, c)", "[designs]") {
  for (const std::string variant : {"a", "b", "c"}) DYNAMIC_SECTION("variant " << variant) {
      family_trains::check_learns_images(
          "{type: model/composed, dim: 32, pool: mean, norm: false, stem: {type: stem/patch, patch: 4, pos: learned}, "
          "stack: {type: stack/plain, depth: 2, drop_path: 0.0}, block: {type: block/inception-resnet, variant: " +
          variant + "}}");
    }
}

}  // namespace BLOCKLAB_TEST_FILE
