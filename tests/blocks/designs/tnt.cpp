// block/tnt and stem/tnt (Transformer in Transformer, catalog_000_001 B 1-27), tag [designs]: the
// block equals its formula written out by hand (inner attention and MLP per patch, the fusion
// LN(W LN(flatten w)), the outer pre-norm block; float64); with inner_dim 0 it is exactly the
// pre-norm ViT block `prenorm` with the same weights; the inner attention never mixes the words of
// different patches and the words never read the outer tokens; its parameter count is the
// catalog's inner 12 c^2 + fusion m c C plus the norms, biases and the outer block; without a
// mixer config it builds attention/softmax with `heads`; causal use is refused; the stem equals
// its formula by hand (patches, the word convolution, positions, the outer embedding, the packed
// class token); a composed model carries the packed tokens; bad options are ConfigErrors; a
// composed TNT learns images.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "blocks/attention/softmax.h"
#include "blocks/backbones/tnt_block.h"
#include "blocks/channel/mlp.h"
#include "blocks/common/weight_decay.h"
#include "blocks/stems/tnt.h"
#include "experiments/model_builder.h"
#include "process_support.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

// The by-hand block: outer width C = 8, m = 3 words of width c = 4, packed D = 20; one prefix
// token and a 2 x 2 grid.
constexpr std::int64_t kOuter = 8, kWords = 3, kInner = 4, kDim = kOuter + kWords * kInner;
constexpr std::int64_t kPrefix = 1, kBody = 4, kTokens = kPrefix + kBody;
constexpr double kEps = 1e-5;  // the block's default norm_eps

const std::string kOptions = ", inner_dim: 4, words: 3, inner_heads: 2";
const std::string kSoftmax = "{type: attention/softmax, heads: 2}";
const std::string kMlp = "{type: mlp, ratio: 2}";

BlockArgs block_args(std::int64_t dim, const std::string& mixer = kSoftmax, const std::string& channel = kMlp) {
  BlockArgs args;
  args.dim = dim;
  args.max_tokens = 64;
  if (!mixer.empty()) args.mixer = parse_yaml(mixer, "mixer");
  if (!channel.empty()) args.channel = parse_yaml(channel, "channel");
  return args;
}

Block build(const std::string& options, const BlockArgs& args) {
  return block_registry().create(parse_yaml("{type: block/tnt" + options + "}", "block"), args);
}

// From the registry in float64, every parameter drawn from N(0, 0.5), eval mode.
std::shared_ptr<TntBlockImpl> make_tnt(const std::string& options, const BlockArgs& args = block_args(kDim)) {
  auto block = std::dynamic_pointer_cast<TntBlockImpl>(build(options, args));
  REQUIRE(block);
  block->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (auto& p : block->parameters()) p.normal_(0.0, 0.5);
  block->eval();
  return block;
}

MixerContext grid_context() {
  MixerContext ctx;
  ctx.grid_height = 2;
  ctx.grid_width = 2;
  ctx.prefix_tokens = kPrefix;
  return ctx;
}

torch::Tensor randn(std::vector<std::int64_t> shape) { return torch::randn(shape, torch::kFloat64); }

bool close(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, 1e-10, 1e-12);
}

std::int64_t parameter_count(const torch::nn::Module& m) {
  std::int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// LayerNorm over the last dimension with the module's scale and shift, by hand.
torch::Tensor ln_by_hand(const torch::Tensor& x, const torch::nn::LayerNorm& norm, double eps = kEps) {
  const auto mean = x.mean(-1, true);
  const auto var = (x - mean).pow(2).mean(-1, true);
  return (x - mean) / torch::sqrt(var + eps) * norm->weight + norm->bias;
}

// softmax(q k^T / sqrt(d)) v per head with the attention's projections, by hand: x [..., L, w].
torch::Tensor attention_by_hand(const torch::Tensor& x, const torch::nn::Module& attention, std::int64_t heads) {
  const auto& a = dynamic_cast<const MultiHeadAttentionImpl&>(attention);
  const std::int64_t w = x.size(-1), d = w / heads;
  auto qkv = torch::matmul(x, a.qkv->weight.t());
  if (a.qkv->bias.defined()) qkv = qkv + a.qkv->bias;
  std::vector<torch::Tensor> outputs;
  for (std::int64_t h = 0; h < heads; ++h) {
    const auto q = qkv.narrow(-1, h * d, d), k = qkv.narrow(-1, w + h * d, d), v = qkv.narrow(-1, 2 * w + h * d, d);
    const auto s = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
    const auto e = torch::exp(s - std::get<0>(s.max(-1, true)));
    outputs.push_back(torch::matmul(e / e.sum(-1, true), v));
  }
  return torch::matmul(torch::cat(outputs, -1), a.proj->weight.t()) + a.proj->bias;
}

// fc2(GELU(fc1 x)), GELU(h) = h Phi(h) = h (1 + erf(h / sqrt 2)) / 2, by hand.
torch::Tensor mlp_by_hand(const torch::Tensor& x, const torch::nn::Module& mlp) {
  const auto& m = dynamic_cast<const MlpImpl&>(mlp);
  const auto h = torch::matmul(x, m.fc1->weight.t()) + m.fc1->bias;
  const auto g = 0.5 * h * (1.0 + torch::erf(h / std::sqrt(2.0)));
  return torch::matmul(g, m.fc2->weight.t()) + m.fc2->bias;
}

}  // namespace

TEST_CASE("block/tnt equals its formula by hand", "[designs]") {
  torch::manual_seed(1);
  const auto t = make_tnt(kOptions);
  REQUIRE(t->outer_dim() == kOuter);
  const auto x = randn({2, kTokens, kDim});
  torch::NoGradGuard no_grad;
  const auto y = t->forward(x, grid_context());

  auto outer = x.narrow(2, 0, kOuter).clone();
  auto words = x.narrow(2, kOuter, kWords * kInner).clone();
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t i = kPrefix; i < kTokens; ++i) {
      // Patch i's words [m, c]: word j at channels C + j c .. C + (j + 1) c.
      auto w = x[b][i].narrow(0, kOuter, kWords * kInner).reshape({kWords, kInner});
      w = w + attention_by_hand(ln_by_hand(w, t->inner_norm1), *t->inner_attn, 2);
      w = w + mlp_by_hand(ln_by_hand(w, t->inner_norm2), *t->inner_mlp);
      const auto flat = w.reshape({kWords * kInner});
      const auto fused = ln_by_hand(torch::matmul(t->fuse->weight, ln_by_hand(flat, t->fuse_norm1)), t->fuse_norm2);
      outer[b][i] += fused;
      words[b][i].copy_(flat);
    }
  outer = outer + attention_by_hand(ln_by_hand(outer, t->norm1), *t->mixer, 2);
  outer = outer + mlp_by_hand(ln_by_hand(outer, t->norm2), *t->channel);
  CHECK(close(y, torch::cat({outer, words}, 2)));
  // The class token has no words: its word part passes through, and nothing is fused into it.
  CHECK(torch::equal(y.narrow(1, 0, kPrefix).narrow(2, kOuter, kWords * kInner),
                     x.narrow(1, 0, kPrefix).narrow(2, kOuter, kWords * kInner)));
  CHECK_FALSE(t->fuse->bias.defined());
}

TEST_CASE("block/tnt with inner_dim 0 is the pre-norm ViT block prenorm", "[designs]") {
  torch::manual_seed(2);
  const BlockArgs args = block_args(kOuter);
  const auto t = make_tnt(", inner_dim: 0, norm_eps: 1e-6", args);  // prenorm's LayerNorm eps
  CHECK_FALSE(t->inner_attn);
  CHECK_FALSE(t->fuse);
  Block p = block_registry().create(parse_yaml("{type: prenorm}", "block"), args);
  p->to(torch::kFloat64);
  p->eval();
  const auto ours = t->named_parameters(), theirs = p->named_parameters();
  REQUIRE(ours.keys() == theirs.keys());  // norm1, mixer.*, norm2, channel.*
  {
    torch::NoGradGuard no_grad;
    for (const auto& q : theirs) q.value().copy_(ours[q.key()]);
  }
  CHECK(parameter_count(*t) == parameter_count(*p));
  const auto x = randn({2, kTokens, kOuter});
  torch::NoGradGuard no_grad;
  CHECK(close(t->forward(x, grid_context()), p->forward(x, grid_context())));
}

TEST_CASE("block/tnt: the inner attention never mixes words of different patches", "[designs]") {
  torch::manual_seed(3);
  const auto t = make_tnt(kOptions);
  const auto x = randn({2, kTokens, kDim});
  torch::NoGradGuard no_grad;
  const auto y = t->forward(x, grid_context());
  const auto word_part = [](const torch::Tensor& z, std::int64_t i) {
    return z.select(1, i).narrow(1, kOuter, kWords * kInner);
  };
  const auto outer_part = [](const torch::Tensor& z, std::int64_t i) { return z.select(1, i).narrow(1, 0, kOuter); };
  SECTION("changing one patch's words changes only that patch's words (and, through the fusion, the outer tokens)") {
    const std::int64_t changed = kPrefix + 2;
    auto x2 = x.clone();
    x2.select(1, changed).narrow(1, kOuter, kWords * kInner).add_(randn({2, kWords * kInner}));
    const auto y2 = t->forward(x2, grid_context());
    for (std::int64_t i = 0; i < kTokens; ++i) {
      INFO("token " << i << " (the words of token " << changed << " changed)");
      if (i == changed)
        CHECK_FALSE(close(word_part(y, i), word_part(y2, i)));
      else
        CHECK(close(word_part(y, i), word_part(y2, i)));
      CHECK_FALSE(close(outer_part(y, i), outer_part(y2, i)));  // the outer attention sees the fused patch
    }
  }
  SECTION("the words never read the outer tokens") {
    auto x2 = x.clone();
    x2.narrow(2, 0, kOuter).add_(randn({2, kTokens, kOuter}));
    const auto y2 = t->forward(x2, grid_context());
    CHECK(close(y.narrow(2, kOuter, kWords * kInner), y2.narrow(2, kOuter, kWords * kInner)));
  }
}

TEST_CASE("block/tnt parameter count: inner 12 c^2 + fusion m c C + norms, biases and the outer block", "[designs]") {
  for (const bool qkv_bias : {false, true}) {
    DYNAMIC_SECTION("qkv_bias " << qkv_bias) {
      const auto t = make_tnt(kOptions + ", qkv_bias: " + (qkv_bias ? "true" : "false"));
      const std::int64_t c = kInner, m = kWords, C = kOuter, inner_hidden = 4 * c, hidden = 2 * C;
      const std::int64_t inner = 2 * c + (3 * c * c + (qkv_bias ? 3 * c : 0) + c * c + c) + 2 * c +
                                 (c * inner_hidden + inner_hidden + inner_hidden * c + c);
      const std::int64_t fusion = 2 * m * c + m * c * C + 2 * C;  // LN(m c), W (no bias), LN(C)
      // The outer block from the model's config: attention/softmax (qkv bias on by default), mlp ratio 2.
      const std::int64_t outer =
          2 * C + (3 * C * C + 3 * C + C * C + C) + 2 * C + (C * hidden + hidden + hidden * C + C);
      CHECK(parameter_count(*t) == inner + fusion + outer);
      // The catalog's leading terms: 12 c^2 in the inner block, m c C in the fusion.
      CHECK(inner - (qkv_bias ? 3 * c : 0) - 2 * 2 * c - c - inner_hidden - c == 12 * c * c);
    }
  }
}

TEST_CASE("block/tnt without a mixer config: attention/softmax with `heads`, an mlp of ratio 4", "[designs]") {
  BlockArgs args;  // as `blocklab block block/tnt` builds it: no mixer, no channel config
  args.dim = kDim;
  args.max_tokens = kTokens;
  const auto t = std::dynamic_pointer_cast<TntBlockImpl>(build(kOptions + ", heads: 4", args));
  REQUIRE(t);
  const auto* outer = dynamic_cast<const SoftmaxAttentionImpl*>(t->mixer.get());
  REQUIRE(outer);
  CHECK(outer->dim() == kOuter);
  CHECK(outer->heads() == 4);
  CHECK_FALSE(outer->qkv->bias.defined());  // TNT's qkv_bias false
  const auto* inner = dynamic_cast<const SoftmaxAttentionImpl*>(t->inner_attn.get());
  REQUIRE(inner);
  CHECK(inner->dim() == kInner);
  CHECK(inner->heads() == 2);
  CHECK_FALSE(inner->qkv->bias.defined());
  const auto* mlp = dynamic_cast<const MlpImpl*>(t->channel.get());
  REQUIRE(mlp);
  CHECK(mlp->fc1->weight.size(0) == 4 * kOuter);
  const auto* inner_mlp = dynamic_cast<const MlpImpl*>(t->inner_mlp.get());
  REQUIRE(inner_mlp);
  CHECK(inner_mlp->fc1->weight.size(0) == 4 * kInner);
}

TEST_CASE("block/tnt refuses causal use", "[designs]") {
  const auto t = make_tnt(kOptions);
  MixerContext ctx = grid_context();
  ctx.causal = true;
  torch::NoGradGuard no_grad;
  CHECK_THROWS_WITH(t->forward(randn({1, kTokens, kDim}), ctx), Catch::Contains("causal"));
  CHECK_FALSE(t->recurrent());
}

TEST_CASE("block/tnt: bad options are ConfigErrors", "[designs]") {
  // words x inner_dim must leave an outer width: 5 x 4 = 20 = dim.
  CHECK_THROWS_AS(build(", inner_dim: 4, words: 5", block_args(kDim)), ConfigError);
  CHECK_THROWS_AS(build(", inner_dim: 4, words: 3, inner_heads: 3", block_args(kDim)), ConfigError);
  // Without a mixer config the block's heads must divide C = 8.
  CHECK_THROWS_AS(build(kOptions + ", heads: 3", block_args(kDim, "", "")), ConfigError);
  // With one, the outer mixer is built at width C = 8, where 3 heads do not fit.
  CHECK_THROWS_AS(build(kOptions, block_args(kDim, "{type: attention/softmax, heads: 3}")), ConfigError);
  CHECK_THROWS_AS(build(", inner_dim: -1", block_args(kDim)), ConfigError);
  CHECK_THROWS_AS(build(kOptions + ", inner_mlp: 2", block_args(kDim)), ConfigError);
  CHECK_NOTHROW(build(", inner_dim: 4, words: 4", block_args(kDim)));  // C = 4, 2 heads
}

TEST_CASE("stem/tnt equals its formula by hand", "[designs]") {
  struct Case {
    std::int64_t channels, height, width, patch, kernel, stride, inner, dim;
    bool class_token;
  };
  // Words per side ceil(patch / stride): 2, 2 and 2 (an odd patch with stride 2).
  const std::vector<Case> cases{
      {2, 4, 6, 2, 3, 1, 3, 17, true}, {1, 8, 4, 4, 5, 2, 2, 11, false}, {1, 6, 6, 3, 3, 2, 2, 12, true}};
  torch::manual_seed(4);
  for (const Case& k : cases) {
    DYNAMIC_SECTION("patch " << k.patch << ", kernel " << k.kernel << ", stride " << k.stride) {
      ModelInputs in;
      in.channels = k.channels, in.height = k.height, in.width = k.width;
      const std::string yaml =
          "{type: stem/tnt, patch: " + std::to_string(k.patch) + ", inner_dim: " + std::to_string(k.inner) +
          ", word_kernel: " + std::to_string(k.kernel) + ", word_stride: " + std::to_string(k.stride) +
          ", class_token: " + (k.class_token ? "true" : "false") + "}";
      Stem stem = stem_registry().create(parse_yaml(yaml, "stem"), StemArgs{k.dim, in});
      auto* s = dynamic_cast<TntStemImpl*>(stem.get());
      REQUIRE(s);
      const std::int64_t side = 2, m = side * side, c = k.inner, outer_dim = k.dim - m * c, p = k.patch;
      const std::int64_t gh = k.height / p, gw = k.width / p, prefix = k.class_token ? 1 : 0;
      CHECK(s->words() == m);
      CHECK(s->outer_dim() == outer_dim);
      CHECK(stem->tokens() == prefix + gh * gw);
      CHECK(stem->layout().grid_height == gh);
      CHECK(stem->layout().grid_width == gw);
      CHECK(stem->layout().prefix_tokens == prefix);
      std::set<std::string> expected_no_decay{"pos_embed", "word_pos"};
      if (k.class_token) expected_no_decay.insert("cls_token");
      const auto no_decay = s->no_weight_decay();
      CHECK(std::set<std::string>(no_decay.begin(), no_decay.end()) == expected_no_decay);

      stem->to(torch::kFloat64);
      {
        torch::NoGradGuard no_grad;
        for (auto& q : stem->parameters()) q.normal_(0.0, 0.5);
      }
      stem->eval();
      torch::NoGradGuard no_grad;
      const auto images = randn({2, k.channels, k.height, k.width});
      const Tokens tokens = stem->forward(images);
      REQUIRE(tokens.x.sizes() == torch::IntArrayRef({2, prefix + gh * gw, k.dim}));

      // By hand: each patch zero-padded by (k - 1) / 2, word (u, v) = sum over the window of W x + b.
      const auto& conv = *s->word_embed;
      const std::int64_t pad = (k.kernel - 1) / 2;
      auto outer = torch::zeros({2, prefix + gh * gw, outer_dim}, torch::kFloat64);
      auto words = torch::zeros({2, prefix + gh * gw, m * c}, torch::kFloat64);
      for (std::int64_t gi = 0; gi < gh; ++gi)
        for (std::int64_t gj = 0; gj < gw; ++gj) {
          const auto patch = images.narrow(2, gi * p, p).narrow(3, gj * p, p);
          const auto padded = torch::constant_pad_nd(patch, {pad, pad, pad, pad}, 0.0);
          std::vector<torch::Tensor> word_list;
          for (std::int64_t u = 0; u < side; ++u)
            for (std::int64_t v = 0; v < side; ++v) {
              const auto window = padded.narrow(2, u * k.stride, k.kernel).narrow(3, v * k.stride, k.kernel);
              const auto word = (window.unsqueeze(1) * conv.weight.unsqueeze(0)).sum({2, 3, 4}) + conv.bias;
              word_list.push_back(word + s->word_pos[0][u * side + v]);  // [2, c]
            }
          const auto flat = torch::cat(word_list, 1);  // [2, m c], word-major
          const auto o = ln_by_hand(
              torch::matmul(ln_by_hand(flat, s->outer_norm1), s->outer_proj->weight.t()) + s->outer_proj->bias,
              s->outer_norm2);
          const std::int64_t token = prefix + gi * gw + gj;
          outer.select(1, token).copy_(o + s->pos_embed[0][token]);
          words.select(1, token).copy_(flat);
        }
      if (k.class_token) outer.select(1, 0).copy_((s->cls_token[0][0] + s->pos_embed[0][0]).expand({2, outer_dim}));
      CHECK(close(tokens.x, torch::cat({outer, words}, 2)));
    }
  }
}

TEST_CASE("stem/tnt: bad options are ConfigErrors", "[designs]") {
  ModelInputs in;
  in.channels = 1, in.height = 28, in.width = 28;
  const auto make = [&](const std::string& options, std::int64_t dim) {
    return stem_registry().create(parse_yaml("{type: stem/tnt" + options + "}", "stem"), StemArgs{dim, in});
  };
  CHECK_NOTHROW(make("", 192));                                 // 16 words of width 8: C = 64
  CHECK_THROWS_AS(make("", 128), ConfigError);                  // 16 x 8 = 128 leaves no outer width
  CHECK_THROWS_AS(make(", word_kernel: 4", 192), ConfigError);  // even kernel
  CHECK_THROWS_AS(make(", patch: 5", 192), ConfigError);        // 5 does not divide 28
  CHECK_THROWS_AS(make(", pos: sinusoidal", 192), ConfigError);
  CHECK_THROWS_AS(make(", inner_dim: 0", 192), ConfigError);
  CHECK_THROWS_AS(make(", word_stride: 0", 192), ConfigError);
  CHECK_THROWS_AS(make(", words: 16", 192), ConfigError);  // the block's option, not the stem's
  ModelInputs tokens_only;
  tokens_only.vocabulary = 10, tokens_only.length = 8;
  CHECK_THROWS_AS(stem_registry().create(parse_yaml("{type: stem/tnt}", "stem"), StemArgs{192, tokens_only}),
                  ConfigError);
}

TEST_CASE("a composed model carries TNT's packed tokens from stem/tnt through block/tnt", "[designs]") {
  DatasetInfo info;
  info.channels = 1, info.height = 16, info.width = 16, info.num_classes = 3;
  torch::manual_seed(5);
  Model model = composed_model(build_model(
      parse_yaml("{type: model/composed, dim: 48, pool: cls, stem: {type: stem/tnt, inner_dim: 4, word_stride: 2}, "
                 "stack: {type: stack/plain, depth: 2}, block: {type: block/tnt, inner_dim: 4, words: 4, "
                 "inner_heads: 1}, mixer: {type: attention/softmax, heads: 2}}",
                 "model"),
      parse_yaml("linear", "head"), info));
  REQUIRE(model);
  const auto* stem = dynamic_cast<const TntStemImpl*>(&model->stem());
  REQUIRE(stem);
  CHECK(stem->outer_dim() == 32);  // 48 - 4 words x 4
  CHECK(model->stack().out_dim() == 48);
  int tnt_blocks = 0;
  for (const auto& child : model->stack().modules(false))
    if (const auto* block = dynamic_cast<const TntBlockImpl*>(child.get())) {
      ++tnt_blocks;
      CHECK(block->outer_dim() == 32);
    }
  CHECK(tnt_blocks == 2);
  const auto names = no_weight_decay_names(*model);
  for (const char* n : {"stem.pos_embed", "stem.word_pos", "stem.cls_token"}) CHECK(names.count(n) == 1);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({2, 1, 16, 16});
  CHECK(model->forward(images).sizes() == torch::IntArrayRef({2, 3}));
  // The class token's word part is zero from the stem and stays so through every block.
  const Tokens features = model->features(images);
  CHECK(features.x.select(1, 0).narrow(1, 32, 16).abs().max().item<double>() == 0.0);
}

// The small TNT (experiments/conf/model/tnt_small.yaml) learns a 1,024-image slice of Fashion-MNIST.
// (The synthetic left-or-right square of family_trains is beyond it in 250 steps: each patch's
// embedding is layer-normalised twice (LN(W LN(flat words))), so a patch holding the bright square
// and a patch of noise enter at the same scale; it learns real images from the first steps.)
TEST_CASE("block/tnt with stem/tnt learns Fashion-MNIST (model=tnt_small)", "[designs]") {
  testing::TempDir tmp;
  const std::string out = (tmp.path / "runs").string();
  REQUIRE(testing::run_blocklab({"run", "vit_fmnist", "model=tnt_small", "-q", "output_dir=" + out,
                                 "dataset.limit_train=1024", "dataset.limit_test=200", "dataset.val_size=0",
                                 "trainer.batch_size=32", "trainer.epochs=2", "trainer.warmup=0.25", "threads=1"},
                                tmp.path / "run.log") == 0);
  const double accuracy = std::stod(testing::summary_field(testing::run_dir(out), "test/acc"));
  INFO("test accuracy after 64 steps: " << accuracy);
  CHECK(accuracy > 0.25);  // chance 0.1; measured 0.395
}

}  // namespace BLOCKLAB_TEST_FILE
