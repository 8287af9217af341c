// block/macaron (Macaron Net's FFN-attention-FFN), tag [designs]: the pre and post forms equal
// the three sub-steps written out from the block's own parts; with ffn_scale 0 it is a plain
// attention sub-layer; with the attention's output zero it is x + F_1/2 + F_2(x + F_1/2)/2 (the
// catalog's check); stepping token by token equals the causal forward (float64, <= 1e-9) with a
// recurrent mixer; it learns images.
#include <catch2/catch.hpp>

#include "blocks/backbones/macaron_block.h"
#include "blocks/family_trains.h"
#include "registry/yaml_io.h"
#include "tests/blocks/designs/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

constexpr std::int64_t kDim = 16, kTokens = 9;

std::shared_ptr<MacaronBlockImpl> make_macaron(const std::string& options, const std::string& mixer) {
  BlockArgs args;
  args.dim = kDim;
  args.max_tokens = 64;
  args.mixer = parse_yaml(mixer, "mixer");
  args.channel = parse_yaml("{type: mlp, ratio: 2}", "channel");
  auto block = std::dynamic_pointer_cast<MacaronBlockImpl>(
      block_registry().create(parse_yaml("{type: block/macaron" + options + "}", "block"), args));
  REQUIRE(block);
  block->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (auto& p : block->parameters()) p.normal_(0.0, 0.3);
  block->eval();
  return block;
}

torch::Tensor ln(const torch::nn::LayerNorm& norm, const torch::Tensor& x) {
  return torch::layer_norm(x, {kDim}, norm->weight, norm->bias, 1e-6);
}

bool close(const torch::Tensor& a, const torch::Tensor& b) { return torch::allclose(a, b, 1e-10, 1e-12); }

const std::string kSoftmax = "{type: attention/softmax, heads: 2}";

}  // namespace

TEST_CASE("block/macaron: FFN half step, attention, FFN half step, pre and post", "[designs]") {
  torch::manual_seed(1);
  const auto x = torch::randn({2, kTokens, kDim}, torch::kFloat64);
  const MixerContext ctx;
  SECTION("pre (Conformer's form)") {
    const auto m = make_macaron("", kSoftmax);
    auto y = x + 0.5 * m->ffn1->forward(ln(m->norm1, x));
    y = y + m->mixer->forward(ln(m->norm2, y), ctx);
    CHECK(close(m->forward(x, ctx), y + 0.5 * m->ffn2->forward(ln(m->norm3, y))));
  }
  SECTION("post (the paper's form)") {
    const auto m = make_macaron(", norm: post", kSoftmax);
    auto y = ln(m->norm1, x + 0.5 * m->ffn1->forward(x));
    y = ln(m->norm2, y + m->mixer->forward(y, ctx));
    CHECK(close(m->forward(x, ctx), ln(m->norm3, y + 0.5 * m->ffn2->forward(y))));
  }
  SECTION("ffn_scale 0: a plain attention sub-layer") {
    const auto m = make_macaron(", ffn_scale: 0.0", kSoftmax);
    CHECK(close(m->forward(x, ctx), x + m->mixer->forward(ln(m->norm2, x), ctx)));
  }
  SECTION("the attention's output zero: x + F_1(x)/2 + F_2(x + F_1(x)/2)/2 (with each FFN's own norm)") {
    const auto m = make_macaron("", kSoftmax);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : m->mixer->named_parameters())
        if (p.key().rfind("proj.", 0) == 0) p.value().zero_();
    }
    const auto half = x + 0.5 * m->ffn1->forward(ln(m->norm1, x));
    CHECK(close(m->forward(x, ctx), half + 0.5 * m->ffn2->forward(ln(m->norm3, half))));
  }
}

TEST_CASE("block/macaron: stepping token by token equals the causal forward", "[designs]") {
  torch::manual_seed(2);
  for (const std::string norm : {"", ", norm: post"}) {
    DYNAMIC_SECTION("norm '" << norm << "'") {
      const auto m = make_macaron(norm, "{type: linear/elu, heads: 2, chunk: 4}");
      REQUIRE(m->recurrent());
      design_tests::check_steps_like_causal_forward(*m, torch::randn({2, kTokens, kDim}, torch::kFloat64));
    }
  }
}

TEST_CASE("block/macaron learns images", "[designs]") {
  family_trains::check_learns_images(
      "{type: model/composed, dim: 32, pool: mean, stem: {type: stem/patch, patch: 4, pos: learned}, "
      "stack: {type: stack/plain, depth: 2, drop_path: 0.0}, block: {type: block/macaron}, "
      "mixer: {type: conv/lka, kernel: 9, dilation: 2}}");
}

}  // namespace BLOCKLAB_TEST_FILE
