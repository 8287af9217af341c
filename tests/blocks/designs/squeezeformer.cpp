// block/squeezeformer (Squeezeformer's MF/CF block), tag [designs]: the adaptive scale is the
// identity at init; with every module's last layer zero the block is its four LayerNorms in a
// row; the whole block equals its formula written out by hand (float64, eval mode, around
// attention/softmax and an mlp with Swish; with adaptive scales, with pre-LNs, with padded
// sequences); padded frames never change the convolution module's valid outputs (nor the
// block's); its parameter count; bad options are ConfigErrors; no causal form. The Temporal
// U-Net's time reduction gives ceil(T / 2) frames, equals its formula, ignores padded frames,
// and time recover restores T frames and equals its formula.
#include <catch2/catch.hpp>

#include "blocks/family_trains.h"

#include <algorithm>
#include <cmath>

#include "blocks/attention/helpers.h"
#include "blocks/backbones/squeezeformer_block.h"
#include "blocks/channel/mlp.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::close;
using torch::indexing::Slice;

namespace {

constexpr std::int64_t kDim = 8, kTokens = 9, kHeads = 2, kKernel = 5;
constexpr double kLnEps = 1e-6, kBnEps = 1e-3;  // the block's LayerNorm and BatchNorm eps

// The block around softmax attention (2 heads) and the paper's FFN, kernel 5 unless `options` sets it.
std::shared_ptr<SqueezeformerBlockImpl> make_block(const std::string& options, bool randomise = true) {
  const std::string kernel = options.find("kernel:") == std::string::npos ? ", kernel: " + std::to_string(kKernel) : "";
  BlockArgs args;
  args.dim = kDim;
  args.max_tokens = 64;
  args.mixer = parse_yaml("{type: attention/softmax, heads: 2, fused: false}", "mixer");
  args.channel = parse_yaml("{type: mlp, ratio: 4, activation: silu}", "channel");
  auto block = std::dynamic_pointer_cast<SqueezeformerBlockImpl>(
      block_registry().create(parse_yaml("{type: block/squeezeformer" + kernel + options + "}", "block"), args));
  REQUIRE(block);
  block->to(torch::kFloat64);
  if (randomise) attention_tests::randomise_for_by_hand(*block);  // parameters, BN statistics; eval
  block->eval();
  return block;
}

torch::Tensor randn(std::vector<std::int64_t> shape) { return torch::randn(shape, torch::kFloat64); }

torch::Tensor swish(const torch::Tensor& t) { return t * torch::sigmoid(t); }

torch::Tensor ln(const torch::nn::LayerNorm& norm, const torch::Tensor& x) {
  const auto mean = x.mean(-1, true);
  const auto var = (x - mean).pow(2).mean(-1, true);
  return (x - mean) / torch::sqrt(var + kLnEps) * norm->weight + norm->bias;
}

// Softmax attention from its qkv [q | k | v] and proj weights; keys at or after lengths[b] get -inf.
torch::Tensor attention_by_hand(const TokenMixer& mixer, const torch::Tensor& x,
                                const std::vector<std::int64_t>& lengths) {
  const auto m = std::dynamic_pointer_cast<MultiHeadAttentionImpl>(mixer);
  REQUIRE(m);
  const auto b = x.size(0), n = x.size(1), d = kDim / kHeads;
  const auto p = torch::matmul(x, m->qkv->weight.t()) + m->qkv->bias;
  auto out = torch::zeros({b, n, kDim}, x.options());
  for (std::int64_t s = 0; s < b; ++s)
    for (std::int64_t h = 0; h < kHeads; ++h) {
      const auto q = p[s].narrow(1, h * d, d), k = p[s].narrow(1, kDim + h * d, d),
                 v = p[s].narrow(1, 2 * kDim + h * d, d);
      auto logits = torch::matmul(q, k.t()) / std::sqrt(static_cast<double>(d));
      if (!lengths.empty()) logits.index_put_({Slice(), Slice(lengths[s])}, -INFINITY);
      out[s].narrow(1, h * d, d).copy_(torch::matmul(torch::softmax(logits, -1), v));
    }
  return torch::matmul(out, m->proj->weight.t()) + m->proj->bias;
}

// The paper's FFN: Linear D -> 4D, Swish, Linear 4D -> D.
torch::Tensor ffn_by_hand(const ChannelMixer& f, const torch::Tensor& x) {
  const auto mlp = std::dynamic_pointer_cast<MlpImpl>(f);
  REQUIRE(mlp);
  const auto h = swish(torch::matmul(x, mlp->fc1->weight.t()) + mlp->fc1->bias);
  return torch::matmul(h, mlp->fc2->weight.t()) + mlp->fc2->bias;
}

// PW_2(Swish(BN(DW(mask ⊙ Swish(PW_1 u))))), the depth-wise convolution tap by tap with "same"
// zero padding, BatchNorm with its running statistics (eval).
torch::Tensor conv_by_hand(const SqueezeformerConvModuleImpl& c, const torch::Tensor& u,
                           const std::vector<std::int64_t>& lengths) {
  const auto n = u.size(1);
  auto h = swish(torch::matmul(u, c.pointwise1->weight.t()) + c.pointwise1->bias);  // [B, N, W]
  for (std::size_t s = 0; s < lengths.size(); ++s)
    h[static_cast<std::int64_t>(s)].narrow(0, lengths[s], n - lengths[s]).zero_();
  const auto& w = c.depthwise->weight;  // [W, 1, k]
  const auto k = w.size(2), half = k / 2;
  const auto padded = torch::cat({torch::zeros({h.size(0), half, h.size(2)}, h.options()), h,
                                  torch::zeros({h.size(0), half, h.size(2)}, h.options())},
                                 1);
  auto conv = c.depthwise->bias.view({1, 1, -1}).expand_as(h).clone();
  for (std::int64_t j = 0; j < k; ++j) conv = conv + padded.narrow(1, j, n) * w.index({Slice(), 0, j});
  const auto& bn = *c.norm;
  const auto normed = (conv - bn.running_mean) / torch::sqrt(bn.running_var + kBnEps) * bn.weight + bn.bias;
  return torch::matmul(swish(normed), c.pointwise2->weight.t()) + c.pointwise2->bias;
}

// Module i's input: s_i ⊙ x + b_i, or LN(x) with adaptive_scale false.
torch::Tensor input_by_hand(const SqueezeformerBlockImpl& m, std::size_t i, const torch::Tensor& x) {
  if (m.scales[i]) return x * m.scales[i]->scale + m.scales[i]->bias;
  return ln(m.pre_norms[i], x);
}

// MF then CF: x = LN_i(x + module_i(input_i(x))), i = 1..4.
torch::Tensor block_by_hand(const SqueezeformerBlockImpl& m, const torch::Tensor& x,
                            const std::vector<std::int64_t>& lengths = {}) {
  auto y = ln(m.norms[0], x + attention_by_hand(m.mixer, input_by_hand(m, 0, x), lengths));
  y = ln(m.norms[1], y + ffn_by_hand(m.ffn1, input_by_hand(m, 1, y)));
  y = ln(m.norms[2], y + conv_by_hand(*m.conv, input_by_hand(m, 2, y), lengths));
  return ln(m.norms[3], y + ffn_by_hand(m.ffn2, input_by_hand(m, 3, y)));
}

torch::Tensor lengths_tensor(const std::vector<std::int64_t>& lengths) {
  return torch::tensor(lengths, torch::TensorOptions(torch::kLong));
}

// Sample 0's frames from `from` on replaced by fresh noise.
torch::Tensor with_new_tail(const torch::Tensor& x, std::int64_t from) {
  auto x2 = x.clone();
  x2[0].narrow(0, from, x.size(1) - from).copy_(randn({x.size(1) - from, x.size(2)}));
  return x2;
}

}  // namespace

TEST_CASE("block/squeezeformer: the adaptive scale is the identity at init", "[designs]") {
  torch::manual_seed(1);
  const auto m = make_block("", /*randomise=*/false);
  const auto x = randn({2, kTokens, kDim});
  for (std::size_t i = 0; i < 4; ++i) {
    INFO("module " << i);
    REQUIRE(m->scales[i]);
    CHECK_FALSE(m->pre_norms[i]);
    CHECK(torch::equal(m->scales[i]->scale, torch::ones({kDim}, torch::kFloat64)));
    CHECK(torch::equal(m->scales[i]->bias, torch::zeros({kDim}, torch::kFloat64)));
    CHECK(torch::equal(m->scales[i]->forward(x), x));
  }
  // The fresh block is its formula with every module fed x itself.
  torch::NoGradGuard no_grad;
  const MixerContext ctx;
  auto y = ln(m->norms[0], x + attention_by_hand(m->mixer, x, {}));
  y = ln(m->norms[1], y + ffn_by_hand(m->ffn1, y));
  y = ln(m->norms[2], y + conv_by_hand(*m->conv, y, {}));
  CHECK(close(m->forward(x, ctx), ln(m->norms[3], y + ffn_by_hand(m->ffn2, y))));
  // Trained values: s ⊙ x + b per channel.
  SqueezeformerAdaptiveScale a(kDim);
  a->to(torch::kFloat64);
  a->scale.normal_();
  a->bias.normal_();
  CHECK(close(a->forward(x), x * a->scale.view({1, 1, kDim}) + a->bias.view({1, 1, kDim})));
  CHECK_FALSE(close(a->forward(x), x));
}

TEST_CASE("block/squeezeformer: every module branch zero makes it four LayerNorms in a row", "[designs]") {
  torch::manual_seed(2);
  for (const std::string options : {"", ", adaptive_scale: false"}) {
    DYNAMIC_SECTION("options '" << options << "'") {
      const auto m = make_block(options);
      const auto x = randn({2, kTokens, kDim});
      const MixerContext ctx;
      torch::NoGradGuard no_grad;
      const auto layer_norms = ln(m->norms[3], ln(m->norms[2], ln(m->norms[1], ln(m->norms[0], x))));
      CHECK_FALSE(close(m->forward(x, ctx), layer_norms));  // the branches matter before
      auto mixer_params = m->mixer->named_parameters();
      mixer_params["proj.weight"].zero_();
      mixer_params["proj.bias"].zero_();
      for (const auto& f : {m->ffn1, m->ffn2}) {
        const auto mlp = std::dynamic_pointer_cast<MlpImpl>(f);
        REQUIRE(mlp);
        mlp->fc2->weight.zero_();
        mlp->fc2->bias.zero_();
      }
      m->conv->pointwise2->weight.zero_();
      m->conv->pointwise2->bias.zero_();
      CHECK(close(m->forward(x, ctx), layer_norms));
    }
  }
}

TEST_CASE("block/squeezeformer equals its formula by hand", "[designs]") {
  torch::manual_seed(3);
  const auto x = randn({2, kTokens, kDim});
  torch::NoGradGuard no_grad;
  SECTION("adaptive scale (the paper's block)") {
    const auto m = make_block("");
    CHECK(close(m->forward(x, MixerContext{}), block_by_hand(*m, x)));
  }
  SECTION("adaptive_scale false: a pre-LN before each module (the paper's ablation)") {
    const auto m = make_block(", adaptive_scale: false");
    for (std::size_t i = 0; i < 4; ++i) CHECK_FALSE(m->scales[i]);
    CHECK(close(m->forward(x, MixerContext{}), block_by_hand(*m, x)));
  }
  SECTION("padded sequences: attention masks the padded keys, the convolution zeroes the padded frames") {
    const auto m = make_block(", conv_expansion: 3");
    CHECK(m->conv->pointwise1->weight.size(0) == 3 * kDim);
    const std::vector<std::int64_t> lengths{6, kTokens};
    MixerContext ctx;
    ctx.lengths = lengths_tensor(lengths);
    const auto y = m->forward(x, ctx);
    CHECK(close(y, block_by_hand(*m, x, lengths)));
    CHECK_FALSE(close(y.index({0, Slice(0, 6)}), m->forward(x, MixerContext{}).index({0, Slice(0, 6)})));
  }
}

TEST_CASE("block/squeezeformer: padded frames never change valid outputs of the convolution module", "[designs]") {
  torch::manual_seed(4);
  const auto m = make_block("");
  const auto x = randn({2, kTokens, kDim});
  const auto x2 = with_new_tail(x, 6);  // sample 0 is 6 frames long
  const auto lengths = lengths_tensor({6, kTokens});
  torch::NoGradGuard no_grad;
  const auto valid = [](const torch::Tensor& y) { return y.index({0, Slice(0, 6)}); };
  SECTION("the convolution module") {
    const auto y = m->conv->forward(x, lengths), y2 = m->conv->forward(x2, lengths);
    CHECK(close(valid(y), valid(y2)));
    CHECK(close(y[1], y2[1]));
    // Without the lengths the kernel (5) reaches the new frames from frame 4 on.
    CHECK_FALSE(close(valid(m->conv->forward(x)), valid(m->conv->forward(x2))));
  }
  SECTION("the whole block (eval mode)") {
    MixerContext ctx;
    ctx.lengths = lengths;
    const auto y = m->forward(x, ctx), y2 = m->forward(x2, ctx);
    CHECK(close(valid(y), valid(y2)));
    CHECK(close(y[1], y2[1]));
  }
}

TEST_CASE("block/squeezeformer: parameter count", "[designs]") {
  const auto count = [](std::int64_t d, std::int64_t k, std::int64_t e) {
    const auto scales_and_norms = 4 * 2 * d + 4 * 2 * d;         // s_i, b_i (or pre-LN) and LN_i
    const auto attention = 3 * d * d + 3 * d + d * d + d;        // qkv with bias, proj
    const auto ffns = 2 * (d * 4 * d + 4 * d + 4 * d * d + d);   // two mlp of ratio 4
    const auto conv = (d * e * d + e * d) + (e * d * k + e * d)  // PW_1, DW (with bias)
                      + 2 * e * d + (e * d * d + d);             // BN scale and shift, PW_2
    return scales_and_norms + attention + ffns + conv;
  };
  CHECK(count(kDim, kKernel, 2) == 1928);
  CHECK(attention_tests::parameter_count(*make_block("")) == 1928);
  CHECK(attention_tests::parameter_count(*make_block(", adaptive_scale: false")) == 1928);  // LN: 2 D too
  CHECK(attention_tests::parameter_count(*make_block(", conv_expansion: 3")) == count(kDim, kKernel, 3));
}

TEST_CASE("block/squeezeformer: bad options are ConfigErrors; no causal form", "[designs]") {
  for (const std::string bad : {", kernel: 4", ", kernel: 0", ", conv_expansion: 0", ", bn_momentum: 1.5",
                                ", dropout: -0.1", ", adaptive_scale: sometimes", ", kernal: 31"}) {
    INFO("options '" << bad << "'");
    CHECK_THROWS_AS(make_block(bad), ConfigError);
  }
  const auto m = make_block("");
  MixerContext causal;
  causal.causal = true;
  torch::NoGradGuard no_grad;
  CHECK_THROWS_WITH(m->forward(randn({1, kTokens, kDim}), causal), Catch::Contains("causal"));
}

TEST_CASE("squeezeformer time reduction and recover: ceil(T / 2) frames, then T again", "[designs]") {
  torch::manual_seed(5);
  SqueezeformerTimeReduction reduce(kDim);
  SqueezeformerTimeRecover recover(kDim);
  reduce->to(torch::kFloat64);
  recover->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  const auto& w = reduce->depthwise->weight;  // [D, 1, 5]
  for (std::int64_t t = 1; t <= 8; ++t) {
    INFO("T = " << t);
    const auto x = randn({2, t, kDim});
    const std::vector<std::int64_t> lengths{std::max<std::int64_t>(1, t - 3), t};
    const auto r = reduce->forward(x, lengths_tensor(lengths));
    const auto out = (t + 1) / 2;
    REQUIRE(r.output.sizes() == torch::IntArrayRef({2, out, kDim}));
    CHECK(torch::equal(r.lengths, lengths_tensor({(lengths[0] + 1) / 2, (t + 1) / 2})));
    CHECK_FALSE(reduce->forward(x).lengths.defined());
    // Frame i: PW(b + sum_j w_j x_{2i + j}), padded and missing frames zero.
    auto masked = x.clone();
    masked[0].narrow(0, lengths[0], t - lengths[0]).zero_();
    for (std::int64_t s = 0; s < 2; ++s)
      for (std::int64_t i = 0; i < out; ++i) {
        auto frame = reduce->depthwise->bias.clone();
        for (std::int64_t j = 0; j < 5; ++j)
          if (2 * i + j < t) frame = frame + w.index({Slice(), 0, j}) * masked[s][2 * i + j];
        const auto expected = torch::matmul(reduce->pointwise->weight, frame) + reduce->pointwise->bias;
        CHECK(close(r.output[s][i], expected));
      }
    // Padded frames never change the valid reduced frames.
    if (lengths[0] < t) {
      const auto r2 = reduce->forward(with_new_tail(x, lengths[0]), lengths_tensor(lengths));
      CHECK(close(r.output.index({0, Slice(0, (lengths[0] + 1) / 2)}),
                  r2.output.index({0, Slice(0, (lengths[0] + 1) / 2)})));
    }
    // Recover: Linear(frame t / 2) + skip, T frames.
    const auto skip = randn({2, t, kDim});
    const auto y = recover->forward(r.output, skip);
    REQUIRE(y.sizes() == x.sizes());
    for (std::int64_t f = 0; f < t; ++f)
      CHECK(close(y.select(1, f), torch::matmul(r.output.select(1, f / 2), recover->proj->weight.t()) +
                                      recover->proj->bias + skip.select(1, f)));
  }
  CHECK_THROWS_WITH(recover->forward(randn({1, 2, kDim}), randn({1, 5, kDim})), Catch::Contains("cannot cover"));
}

TEST_CASE("block/squeezeformer learns images", "[designs]") {
  family_trains::check_learns_images(
      "{type: model/composed, dim: 32, pool: mean, stem: {type: stem/patch, patch: 4, pos: learned}, "
      "stack: {type: stack/plain, depth: 2, drop_path: 0.0}, block: {type: block/squeezeformer, kernel: 7}, "
      "mixer: {type: attention/softmax, heads: 2}}");
}

}  // namespace BLOCKLAB_TEST_FILE
