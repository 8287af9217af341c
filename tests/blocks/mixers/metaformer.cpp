// The convolutional token mixers of the MetaFormer table (issue 16), tag [mixers]: PoolFormer's
// pooling equals the clipped-window average minus the input and gives 0 on a constant map; VAN's
// large kernel attention equals its formula, its two depth-wise convolutions equal one 23 x 23
// depth-wise convolution with the composed kernel away from the borders, and it has the paper's
// weight count; FFNet's token mixer equals its formula with RepVGG's pair fused to one 7 x 7, and
// the MetaMixer view with identity query and pointwise key and value is exactly an FFN on every
// token; CAS-ViT's additive mixer equals its formula and is linear in its values; prefix tokens
// are not mixed; bad options fail at build time. (Each learns in a ViT: tests/blocks/trains.cpp.)
#include <catch2/catch.hpp>

#include "blocks/conv/lka.h"
#include "blocks/metamixer/ffnet.h"
#include "blocks/mixers/cas_additive.h"
#include "blocks/mixers/pooling.h"
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

template <class Impl>
std::shared_ptr<Impl> make_mixer(const std::string& yaml, std::int64_t dim) {
  auto m = std::dynamic_pointer_cast<Impl>(mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{dim, 1024}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  randomise_for_by_hand(*m);
  return m;
}

MixerContext grid(std::int64_t h, std::int64_t w, std::int64_t prefix = 0) {
  MixerContext ctx;
  ctx.grid_height = h, ctx.grid_width = w, ctx.prefix_tokens = prefix;
  return ctx;
}

torch::Tensor as_image(const torch::Tensor& tokens, std::int64_t h, std::int64_t w) {
  return tokens.transpose(1, 2).reshape({tokens.size(0), tokens.size(2), h, w});
}

torch::Tensor as_tokens(const torch::Tensor& image) { return image.flatten(2).transpose(1, 2); }

// A depth-wise Conv-BN as one conv with bias (eval mode): w * s, beta - mu s, s = gamma / sqrt(var + eps).
std::pair<torch::Tensor, torch::Tensor> fuse(const DepthwiseConvBNImpl& m) {
  const auto& bn = *m.bn;
  const auto s = bn.weight / torch::sqrt(bn.running_var + bn.options.eps());
  return {m.conv->weight * s.view({-1, 1, 1, 1}), bn.bias - bn.running_mean * s};
}

// RepVGG's pair fused to one 7 x 7 depth-wise conv (the 3 x 3 kernel zero-padded into the centre).
torch::Tensor rep_pair_by_hand(const RepDepthwiseImpl& rep, const torch::Tensor& x) {
  const auto [w7, b7] = fuse(*rep.large);
  const auto [w3, b3] = fuse(*rep.small);
  const auto w = w7 + torch::constant_pad_nd(w3, {2, 2, 2, 2});
  return torch::conv2d(x, w, b7 + b3, 1, 3, 1, x.size(1));
}

}  // namespace

TEST_CASE("mixer/pooling: clipped-window average minus the input; 0 on a constant map; prefix not mixed", "[mixers]") {
  torch::manual_seed(1);
  const auto pool = make_mixer<PoolingMixerImpl>("{type: mixer/pooling, pool_size: 3}", 3);
  const auto x = torch::randn({2, 1 + 20, 3}, torch::kFloat64);
  const auto out = pool->forward(x, grid(4, 5, 1));
  const auto image = as_image(x.narrow(1, 1, 20), 4, 5);
  auto expected = torch::zeros_like(image);
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t j = 0; j < 5; ++j) {
      const auto r0 = std::max<std::int64_t>(0, i - 1), r1 = std::min<std::int64_t>(3, i + 1);
      const auto c0 = std::max<std::int64_t>(0, j - 1), c1 = std::min<std::int64_t>(4, j + 1);
      const auto window = image.narrow(2, r0, r1 - r0 + 1).narrow(3, c0, c1 - c0 + 1);
      expected.select(2, i).select(2, j).copy_(window.mean({2, 3}) - image.select(2, i).select(2, j));
    }
  CHECK(close(out.narrow(1, 1, 20), as_tokens(expected)));
  CHECK(torch::equal(out.narrow(1, 0, 1), torch::zeros({2, 1, 3}, torch::kFloat64)));
  CHECK(parameter_count(*pool) == 0);
  const auto constant = torch::full({1, 20, 3}, 0.7, torch::kFloat64);
  CHECK(pool->forward(constant, grid(4, 5)).abs().max().item<double>() < 1e-15);
  CHECK_THROWS_AS(make_mixer<PoolingMixerImpl>("{type: mixer/pooling, pool_size: 2}", 3), ConfigError);
}

TEST_CASE("conv/lka: its formula; the decomposition is one 23 x 23 depth-wise conv inside; 25C + 49C + C^2 + 3C",
          "[mixers]") {
  torch::manual_seed(2);
  constexpr std::int64_t kC = 4;
  const auto lka = make_mixer<LargeKernelAttentionImpl>("{type: conv/lka}", kC);  // VAN: K 21, d 3
  CHECK(lka->local->weight.size(-1) == 5);
  CHECK(lka->dilated->weight.size(-1) == 7);
  const auto map_params =
      parameter_count(*lka->local) + parameter_count(*lka->dilated) + parameter_count(*lka->channel);
  CHECK(map_params == 25 * kC + 49 * kC + kC * kC + 3 * kC);
  SECTION("the formula: out = W_2 (u ⊙ map(u)) + x, u = GELU(W_1 x)") {
    const auto x = torch::randn({2, 2 + 36, kC}, torch::kFloat64);
    const auto image = as_image(x.narrow(1, 2, 36), 6, 6);
    const auto u = torch::gelu(torch::conv2d(image, lka->proj_in->weight, lka->proj_in->bias));
    auto a = torch::conv2d(u, lka->local->weight, lka->local->bias, 1, 2, 1, kC);
    a = torch::conv2d(a, lka->dilated->weight, lka->dilated->bias, 1, 9, 3, kC);
    a = torch::conv2d(a, lka->channel->weight, lka->channel->bias);
    const auto expected = torch::conv2d(u * a, lka->proj_out->weight, lka->proj_out->bias) + image;
    const auto out = lka->forward(x, grid(6, 6, 2));
    CHECK(close(out.narrow(1, 2, 36), as_tokens(expected)));
    CHECK(torch::equal(out.narrow(1, 0, 2), torch::zeros({2, 2, kC}, torch::kFloat64)));
  }
  SECTION("the two depth-wise convolutions are one 23 x 23 kernel (5 x 5 composed with the dilated 7 x 7)") {
    const auto u = torch::randn({1, kC, 30, 30}, torch::kFloat64);
    const auto two = lka->dilated->forward(lka->local->forward(u));
    // Composed kernel K[c] = k5[c] * dilate(k7[c]) (a full 2-D convolution), bias b7 + b5 sum(k7).
    const auto k5 = lka->local->weight, k7 = lka->dilated->weight;  // [C, 1, 5, 5], [C, 1, 7, 7]
    auto dilated7 = torch::zeros({kC, 1, 19, 19}, torch::kFloat64);
    for (std::int64_t i = 0; i < 7; ++i)
      for (std::int64_t j = 0; j < 7; ++j)
        dilated7.select(2, 3 * i).select(2, 3 * j).copy_(k7.select(2, i).select(2, j));
    // Full convolution of each channel's kernels: correlate the padded dilated kernel with the flipped 5 x 5.
    const auto composed = torch::conv2d(torch::constant_pad_nd(dilated7, {4, 4, 4, 4}).transpose(0, 1), k5.flip({2, 3}),
                                        {}, 1, torch::IntArrayRef{0}, 1, kC)
                              .transpose(0, 1);  // [C, 1, 23, 23]
    const auto bias = lka->dilated->bias + lka->local->bias * k7.sum({1, 2, 3});
    const auto one = torch::conv2d(u, composed, bias, 1, 11, 1, kC);
    // Equal where neither zero padding reaches: 11 or more pixels from every border.
    CHECK(close(two.narrow(2, 11, 8).narrow(3, 11, 8), one.narrow(2, 11, 8).narrow(3, 11, 8), 1e-10, 1e-11));
  }
  CHECK_THROWS_AS(make_mixer<LargeKernelAttentionImpl>("{type: conv/lka, kernel: 20, dilation: 2}", kC), ConfigError);
}

TEST_CASE("metamixer/ffnet: V(GELU(K(Q(x)))) with RepVGG's pair fused; identity/pointwise/pointwise is an FFN",
          "[mixers]") {
  torch::manual_seed(3);
  constexpr std::int64_t kC = 6;
  const auto x = torch::randn({2, 1 + 20, kC}, torch::kFloat64);
  SECTION("FFNet's token mixer: 1x1 Conv-BN query, depth-wise 3x3 key with bias, RepVGG 7x7 value") {
    const auto m = make_mixer<FFNetMixerImpl>("{type: metamixer/ffnet, key_kernel: 3, value_kernel: 7}", kC);
    const auto body = x.narrow(1, 1, 20);
    const auto& bn = *m->query->bn;
    const auto q =
        batch_norm_by_hand(bn, torch::matmul(body, m->query->conv->weight.t()).transpose(1, 2));  // [B, C, N]
    const auto key = m->key.get<torch::nn::Conv2d>();
    const auto k = torch::conv2d(q.reshape({2, kC, 4, 5}), key->weight, key->bias, 1, 1, 1, kC);
    const auto v = rep_pair_by_hand(*m->value.get<RepDepthwise>(), torch::gelu(k));
    const auto out = m->forward(x, grid(4, 5, 1));
    CHECK(close(out.narrow(1, 1, 20), as_tokens(v)));
    CHECK(torch::equal(out.narrow(1, 0, 1), torch::zeros({2, 1, kC}, torch::kFloat64)));
  }
  SECTION("MetaMixer: query identity, key W_1 (C -> 2C), GELU, value W_2 is W_2 GELU(W_1 x + b_1) + b_2 per token") {
    const auto m = make_mixer<FFNetMixerImpl>(
        "{type: metamixer/ffnet, query: identity, key: pointwise, value: pointwise, ratio: 2}", kC);
    CHECK(m->query.is_empty());
    const auto w1 = m->key.get<torch::nn::Conv2d>(), w2 = m->value.get<torch::nn::Conv2d>();
    const auto body = x.narrow(1, 1, 20);
    const auto hidden = torch::gelu(torch::matmul(body, w1->weight.flatten(1).t()) + w1->bias);
    const auto ffn = torch::matmul(hidden, w2->weight.flatten(1).t()) + w2->bias;
    CHECK(close(m->forward(x, grid(4, 5, 1)).narrow(1, 1, 20), ffn));
  }
  CHECK_THROWS_AS(make_mixer<FFNetMixerImpl>("{type: metamixer/ffnet, key_kernel: 4}", kC), ConfigError);
  CHECK_THROWS_AS(make_mixer<FFNetMixerImpl>("{type: metamixer/ffnet, key: pointwise, ratio: 2}", kC), ConfigError);
  CHECK_THROWS_AS(make_mixer<FFNetMixerImpl>("{type: metamixer/ffnet, query: linear}", kC), ConfigError);
}

TEST_CASE("mixer/cas-additive: DW_proj(DW(Ch(S(q)) + Ch(S(k))) ⊙ v); linear in the values", "[mixers]") {
  torch::manual_seed(4);
  constexpr std::int64_t kC = 5;
  const auto m = make_mixer<CasAdditiveMixerImpl>("{type: mixer/cas-additive}", kC);
  const auto x = torch::randn({2, 1 + 20, kC}, torch::kFloat64);
  const auto image = as_image(x.narrow(1, 1, 20), 4, 5);
  const auto gates_by_hand = [&](const AdditiveGatesImpl& g, const torch::Tensor& t) {
    const auto& bn = *g.spatial_norm;
    auto a = torch::conv2d(t, g.spatial_dw->weight, g.spatial_dw->bias, 1, 1, 1, kC);
    a = torch::relu(batch_norm_by_hand(bn, a));
    const auto s = t * torch::sigmoid(torch::conv2d(a, g.spatial_out->weight));
    return s * torch::sigmoid(torch::conv2d(s.mean({2, 3}, true), g.channel_fc->weight));
  };
  const auto qkv = torch::conv2d(image, m->qkv->weight).chunk(3, 1);
  const auto added = gates_by_hand(*m->query_gates, qkv[0]) + gates_by_hand(*m->key_gates, qkv[1]);
  const auto mixed = torch::conv2d(added, m->mix->weight, m->mix->bias, 1, 1, 1, kC) * qkv[2];
  const auto expected = torch::conv2d(mixed, m->proj->weight, m->proj->bias, 1, 1, 1, kC);
  const auto out = m->forward(x, grid(4, 5, 1));
  CHECK(close(out.narrow(1, 1, 20), as_tokens(expected)));
  SECTION("scaling the value third of the qkv weights by c scales the output less its bias by c") {
    {
      torch::NoGradGuard no_grad;
      m->qkv->weight.narrow(0, 2 * kC, kC).mul_(3.0);
    }
    const auto bias = m->proj->bias.view({1, 1, kC});
    CHECK(close(m->forward(x, grid(4, 5, 1)).narrow(1, 1, 20) - bias, 3.0 * (out.narrow(1, 1, 20) - bias)));
  }
}

}  // namespace BLOCKLAB_TEST_FILE
