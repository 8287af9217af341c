// Channel attention (blocks/channel_attention/), tag [channel-attention]: each module equals its
// formula written out from its own weights (float64), and the properties of its catalog entry:
// ECA's kernel size psi(C) by the paper's table, its locality across channels, k or C k weights;
// ELA's row gates depend only on the row means and a transposed map gives transposed gates;
// ULSAM's maps sum to 1 and constant logits give X (1 + 1/HW), 5C + 3g weights; DaViT's map
// commutes with permuting the positions; the resnet block is its formula, starts as ReLU(x) with
// zero_init_last and keeps prefix tokens; in block prenorm the attention acts on the mixer's output
// over the grid (prefix kept) and the rest initialises as without it; bad options fail at build
// time. And the small CNN learns with each of them.
#include <catch2/catch.hpp>

#include "blocks/backbones/prenorm_block.h"
#include "blocks/backbones/resnet_block.h"
#include "blocks/channel_attention/davit.h"
#include "blocks/channel_attention/eca.h"
#include "blocks/channel_attention/ela.h"
#include "blocks/channel_attention/hat_cab.h"
#include "blocks/channel_attention/ulsam.h"
#include "blocks/family_trains.h"
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

constexpr std::int64_t kChannels = 16;

template <class Impl>
std::shared_ptr<Impl> make(const std::string& yaml, std::int64_t channels = kChannels) {
  auto a = std::dynamic_pointer_cast<Impl>(
      channel_attention_registry().create(parse_yaml(yaml, "t.yaml"), ChannelAttentionArgs{channels}));
  REQUIRE(a);
  a->to(torch::kFloat64);
  randomise_for_by_hand(*a);  // eval mode, every weight and BN statistic visible
  return a;
}

torch::Tensor feature_map(std::int64_t channels = kChannels, std::int64_t h = 5, std::int64_t w = 7) {
  return torch::randn({2, channels, h, w}, torch::kFloat64);
}

}  // namespace

TEST_CASE("channel/se: sigmoid(W_2 ReLU(W_1 GAP(x))) per channel; hidden C / r", "[channel-attention]") {
  torch::manual_seed(1);
  const auto se = make<SqueezeExcitationImpl>("{type: channel/se, reduction: 4}");
  const auto x = feature_map();
  const auto z = x.mean({2, 3});
  const auto s =
      torch::sigmoid(torch::relu(z.matmul(se->reduce->weight.t()) + se->reduce->bias).matmul(se->expand->weight.t()) +
                     se->expand->bias);
  CHECK(close(se->forward(x), x * s.view({2, kChannels, 1, 1})));
  CHECK(se->reduce->weight.size(0) == kChannels / 4);
  CHECK(make<SqueezeExcitationImpl>("{type: channel/se, hidden: 3}")->reduce->weight.size(0) == 3);
}

TEST_CASE("channel/eca: psi(C) by the paper's table; a k-tap conv across channels; locality; k or C k weights",
          "[channel-attention]") {
  // Eq. 12 with gamma 2, b 1, as the official code rounds (the catalog's table).
  CHECK(eca_kernel_size(16) == 3);
  CHECK(eca_kernel_size(32) == 3);
  CHECK(eca_kernel_size(64) == 3);
  CHECK(eca_kernel_size(256) == 5);
  CHECK(eca_kernel_size(512) == 5);
  CHECK(eca_kernel_size(2048) == 7);
  torch::manual_seed(2);
  const auto x = feature_map();
  const auto z = x.mean({2, 3});
  SECTION("shared: Conv1d(1, 1, k) with zero padding across the channels") {
    const auto eca = make<EcaImpl>("{type: channel/eca, kernel: 5}");
    CHECK(parameter_count(*eca) == 5);
    const auto w = torch::sigmoid(torch::conv1d(z.unsqueeze(1), eca->weight.view({1, 1, 5}), {}, 1, 2).squeeze(1));
    CHECK(close(eca->gates(x), w));
    CHECK(close(eca->forward(x), x * w.view({2, kChannels, 1, 1})));
  }
  SECTION("k = 1: w_c = sigmoid(a z_c), one scalar a for every channel") {
    const auto eca = make<EcaImpl>("{type: channel/eca, kernel: 1}");
    CHECK(close(eca->gates(x), torch::sigmoid(eca->weight.item<double>() * z)));
  }
  SECTION("locality: changing channel c moves only the gates of channels c - p .. c + p") {
    const auto eca = make<EcaImpl>("{type: channel/eca, kernel: 3}");
    auto x2 = x.clone();
    x2.select(1, 7).add_(1.0);
    const auto changed = (eca->gates(x2) - eca->gates(x)).abs().sum(0) > 1e-12;  // [C]
    for (std::int64_t c = 0; c < kChannels; ++c) {
      INFO("channel " << c);
      CHECK(changed[c].item<bool>() == (c >= 6 && c <= 8));
    }
  }
  SECTION("ECA-NS (shared: false): a kernel per channel, C k weights, as the official unfold + grouped conv") {
    const auto eca = make<EcaImpl>("{type: channel/eca, kernel: 3, shared: false}");
    CHECK(parameter_count(*eca) == kChannels * 3);
    const auto padded = torch::constant_pad_nd(z, {1, 1});
    auto expected = torch::zeros_like(z);
    for (std::int64_t c = 0; c < kChannels; ++c)
      for (std::int64_t j = 0; j < 3; ++j) expected.select(1, c).add_(eca->weight[c][j] * padded.select(1, c + j));
    CHECK(close(eca->gates(x), torch::sigmoid(expected)));
  }
}

TEST_CASE(
    "channel/ela: shared conv + GroupNorm on row and column means; row gates see only row means; "
    "transposition",
    "[channel-attention]") {
  torch::manual_seed(3);
  const auto ela = make<ElaImpl>("{type: channel/ela, kernel: 5, norm_groups: 4}");
  const auto x = feature_map();
  const auto gate = [&](const torch::Tensor& strip) {
    const auto conv = torch::conv1d(strip, ela->conv->weight, {}, 1, 2, 1, kChannels);
    return torch::sigmoid(torch::group_norm(conv, 4, ela->norm->weight, ela->norm->bias, ela->norm->options.eps()));
  };
  const auto a_h = gate(x.mean(3)), a_w = gate(x.mean(2));
  CHECK(close(ela->forward(x), x * a_h.unsqueeze(3) * a_w.unsqueeze(2)));
  // Depth-wise: C k weights, GroupNorm 2C.
  CHECK(parameter_count(*ela) == kChannels * 5 + 2 * kChannels);
  SECTION("a change that keeps every row mean keeps the row gates (and moves the column gates)") {
    auto d = torch::randn_like(x);
    d -= d.mean(3, true);
    const auto [h1, w1] = ela->gates(x);
    const auto [h2, w2] = ela->gates(x + d);
    CHECK(close(h1, h2));
    CHECK_FALSE(close(w1, w2));
  }
  SECTION("a square map transposed gives the output transposed (one conv and GN for both directions)") {
    const auto square = feature_map(kChannels, 6, 6);
    CHECK(close(ela->forward(square.transpose(2, 3)), ela->forward(square).transpose(2, 3)));
  }
  SECTION("grouped (ELA-S/L: groups C / 8): 8 C k conv weights") {
    const auto grouped = make<ElaImpl>("{type: channel/ela, kernel: 5, conv_groups: 2, norm_groups: 4}");
    CHECK(parameter_count(*grouped) == 8 * kChannels * 5 + 2 * kChannels);
  }
}

TEST_CASE("channel/ulsam: one softmax map per subspace; constant logits give X (1 + 1/HW); 5C + 3g weights",
          "[channel-attention]") {
  torch::manual_seed(4);
  const auto ulsam = make<UlsamImpl>("{type: channel/ulsam, groups: 4}");
  CHECK(parameter_count(*ulsam) == 5 * kChannels + 3 * 4);
  const auto x = feature_map();
  const auto maps = ulsam->maps(x);
  CHECK(maps.sizes().vec() == std::vector<std::int64_t>{2, 4, 5, 7});
  CHECK(close(maps.sum({2, 3}), torch::ones({2, 4}, torch::kFloat64)));
  SECTION("the formula, subspace by subspace") {
    auto a = torch::relu(batch_norm_by_hand(*ulsam->depthwise_norm, ulsam->depthwise->forward(x)));
    a = torch::max_pool2d(a, 3, 1, 1);
    const auto w = ulsam->pointwise->weight, b = ulsam->pointwise->bias;
    for (std::int64_t i = 0; i < 4; ++i) {
      const auto sub = a.narrow(1, 4 * i, 4);
      auto logit = (sub * w[i].view({1, 4, 1, 1})).sum(1, true) + b[i];
      const auto& bn = *ulsam->pointwise_norm;
      logit = torch::relu(
          (logit - bn.running_mean[i]) / torch::sqrt(bn.running_var[i] + bn.options.eps()) * bn.weight[i] + bn.bias[i]);
      const auto map = torch::softmax(logit.flatten(2), -1).view_as(logit);
      const auto xi = x.narrow(1, 4 * i, 4);
      CHECK(close(ulsam->forward(x).narrow(1, 4 * i, 4), xi * map + xi));
    }
  }
  SECTION("constant logits: a uniform map, out = X (1 + 1/HW)") {
    torch::NoGradGuard no_grad;
    ulsam->pointwise->weight.zero_();
    CHECK(close(ulsam->forward(x), x * (1.0 + 1.0 / 35.0)));
  }
}

TEST_CASE("channel/hat-cab: conv3x3 -> GELU -> conv3x3 -> RCAN channel attention", "[channel-attention]") {
  torch::manual_seed(5);
  const auto cab = make<HatCabImpl>("{type: channel/hat-cab, compress: 3, squeeze: 4}");
  const auto x = feature_map();
  const auto z = torch::conv2d(torch::gelu(torch::conv2d(x, cab->compress->weight, cab->compress->bias, 1, 1)),
                               cab->expand->weight, cab->expand->bias, 1, 1);
  CHECK(cab->compress->weight.size(0) == kChannels / 3);
  CHECK(cab->attention->reduce->weight.size(0) == kChannels / 4);
  CHECK(close(cab->forward(x), cab->attention->forward(z)));
  // RCAN's channel attention on z by hand: sigmoid(W_2 ReLU(W_1 GAP(z) + b_1) + b_2) per channel.
  const auto& se = *cab->attention;
  const auto gates = torch::sigmoid(
      torch::relu(z.mean({2, 3}).matmul(se.reduce->weight.t()) + se.reduce->bias).matmul(se.expand->weight.t()) +
      se.expand->bias);
  CHECK(close(cab->forward(x), z * gates.view({2, kChannels, 1, 1})));
}

TEST_CASE("channel/davit: attention/davit-channel over the positions; permuting positions permutes the output",
          "[channel-attention]") {
  torch::manual_seed(6);
  const auto davit = make<DavitChannelMapImpl>("{type: channel/davit, heads: 4}");
  const auto x = feature_map();
  const auto tokens = x.flatten(2).transpose(1, 2);  // [B, HW, C]
  CHECK(close(davit->forward(x).flatten(2).transpose(1, 2), davit->attention->forward(tokens, MixerContext{})));
  const auto order = torch::randperm(35, torch::kLong);
  const auto permuted = x.flatten(2).index_select(2, order).view_as(x);
  CHECK(close(davit->forward(permuted).flatten(2), davit->forward(x).flatten(2).index_select(2, order)));
}

TEST_CASE("block resnet: its formula around the channel attention; identity-like start; prefix kept; bad options",
          "[channel-attention]") {
  torch::manual_seed(7);
  MixerContext ctx;
  ctx.grid_height = 4, ctx.grid_width = 5, ctx.prefix_tokens = 1;
  const auto build = [](const std::string& yaml) {
    BlockArgs args;
    args.dim = kChannels;
    auto block = std::dynamic_pointer_cast<ResNetBlockImpl>(block_registry().create(parse_yaml(yaml, "b.yaml"), args));
    REQUIRE(block);
    block->to(torch::kFloat64);
    return block;
  };
  const auto x = torch::randn({2, 21, kChannels}, torch::kFloat64);
  SECTION("the formula, with and without ECA on the branch") {
    for (const std::string attention : {"", ", attention: {type: channel/eca}"}) {
      INFO("attention '" << attention << "'");
      const auto block = build("{type: resnet" + attention + "}");
      randomise_for_by_hand(*block);
      const auto image = x.narrow(1, 1, 20).transpose(1, 2).reshape({2, kChannels, 4, 5});
      auto h = torch::relu(batch_norm_by_hand(*block->norm1, torch::conv2d(image, block->conv1->weight, {}, 1, 1)));
      h = batch_norm_by_hand(*block->norm2, torch::conv2d(h, block->conv2->weight, {}, 1, 1));
      if (block->attention) h = block->attention->forward(h);
      const auto expected = torch::relu(image + h).flatten(2).transpose(1, 2);
      const auto out = block->forward(x, ctx);
      CHECK(close(out.narrow(1, 1, 20), expected));
      CHECK(torch::equal(out.narrow(1, 0, 1), x.narrow(1, 0, 1)));
    }
  }
  SECTION("zero_init_last: the branch starts at zero, the block at ReLU(x)") {
    const auto block = build("{type: resnet, attention: {type: channel/se, reduction: 4}}");
    const auto out = block->forward(x, ctx);
    CHECK(close(out.narrow(1, 1, 20), torch::relu(x.narrow(1, 1, 20))));
  }
  SECTION("refuses causal use and tokens without a grid; bad options fail at build time") {
    auto causal = ctx;
    causal.causal = true;
    CHECK_THROWS_WITH(build("{type: resnet}")->forward(x, causal), Catch::Contains("causal"));
    CHECK_THROWS_WITH(build("{type: resnet}")->forward(x, MixerContext{}), Catch::Contains("grid"));
    CHECK_THROWS_AS(build("{type: resnet, kernel: 4}"), ConfigError);
    CHECK_THROWS_AS(build("{type: resnet, attention: {type: channel/ulsam, groups: 5}}"), ConfigError);
    CHECK_THROWS_AS(build("{type: resnet, attention: {type: channel/eca, kernel: 2}}"), ConfigError);
    CHECK_THROWS_AS(build("{type: resnet, attention: {type: channel/ela, norm_groups: 3}}"), ConfigError);
    CHECK_THROWS_AS(build("{type: resnet, attention: {type: channel/eca, kernal: 3}}"), ConfigError);
  }
}

TEST_CASE("block prenorm with a channel attention on the mixer's output; the rest initialised as without",
          "[channel-attention]") {
  const auto build = [](const std::string& block, const std::string& mixer) {
    BlockArgs args;
    args.dim = kChannels;
    args.max_tokens = 64;
    args.mixer = parse_yaml(mixer, "mixer");
    args.channel = parse_yaml("{type: mlp, ratio: 2}", "channel");
    torch::manual_seed(8);
    auto b = std::dynamic_pointer_cast<PrenormBlockImpl>(block_registry().create(parse_yaml(block, "b.yaml"), args));
    REQUIRE(b);
    b->to(torch::kFloat64);
    return b;
  };
  const std::string softmax = "{type: attention/softmax, heads: 2}";
  const auto plain = build("{type: prenorm}", softmax);
  const auto gated = build("{type: prenorm, attention: {type: channel/se, reduction: 4}}", softmax);
  for (const auto& p : plain->named_parameters()) {
    INFO(p.key());
    CHECK(torch::equal(p.value(), gated->named_parameters()[p.key()]));
  }
  MixerContext ctx;
  ctx.grid_height = 4, ctx.grid_width = 5, ctx.prefix_tokens = 1;
  const auto x = torch::randn({2, 21, kChannels}, torch::kFloat64);
  randomise_for_by_hand(*gated);
  const auto ln = [](const torch::nn::LayerNorm& norm, const torch::Tensor& t) {
    return torch::layer_norm(t, {kChannels}, norm->weight, norm->bias, 1e-6);
  };
  auto mixed = gated->mixer->forward(ln(gated->norm1, x), ctx);
  const auto image = mixed.narrow(1, 1, 20).transpose(1, 2).reshape({2, kChannels, 4, 5});
  mixed = torch::cat({mixed.narrow(1, 0, 1), gated->attention->forward(image).flatten(2).transpose(1, 2)}, 1);
  const auto y = x + mixed;
  CHECK(close(gated->forward(x, ctx), y + gated->channel->forward(ln(gated->norm2, y))));
  CHECK(build("{type: prenorm}", "{type: linear/elu, heads: 2}")->recurrent());
  CHECK_FALSE(build("{type: prenorm, attention: {type: channel/eca}}", "{type: linear/elu, heads: 2}")->recurrent());
}

TEST_CASE("the small CNN (resnet blocks) learns images with each channel attention", "[channel-attention]") {
  for (const EntryInfo* e : channel_attention_registry().list()) {
    const std::string example = e->example.size() > 2 ? ", " + e->example.substr(1) : "}";
    DYNAMIC_SECTION("attention " << e->key) {
      family_trains::check_learns_images(
          "{type: model/composed, dim: 16, pool: mean, stem: {type: stem/patch, patch: 2, pos: learned}, "
          "stack: {type: stack/plain, depth: 2, drop_path: 0.0}, block: {type: resnet, attention: {type: " +
          e->key + example + "}}");
    }
  }
}

}  // namespace BLOCKLAB_TEST_FILE
