// The parts of a multi-head attention (blocks/attention/parts), tag [variants]: grouped and
// multi-query key/value heads, the head width, the output gate, key padding (ctx.lengths),
// the shared options' rules as ConfigErrors at the option, and the capabilities facts.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/attention/gpsa.h"
#include "blocks/attention/sigmoid.h"
#include "blocks/attention/softmax.h"
#include "blocks/attention/urpe.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/golden.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

ConfigNode yaml(const std::string& text) { return parse_yaml(text, "test"); }

std::shared_ptr<MultiHeadAttentionImpl> build(const std::string& text, std::int64_t dim = 16) {
  auto m = std::dynamic_pointer_cast<MultiHeadAttentionImpl>(mixer_registry().create(yaml(text), MixerArgs{dim, 10}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

std::int64_t parameter_count(const torch::nn::Module& m) {
  std::int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace

TEST_CASE("parts: kv_heads = 1 (multi-query) equals full heads whose key/value weights are repeated", "[variants]") {
  torch::manual_seed(41);
  for (std::int64_t kv : {1, 2}) {
    INFO("kv_heads " << kv);
    auto gqa = build("{type: attention/softmax, heads: 4, fused: false, kv_heads: " + std::to_string(kv) + "}");
    auto full = build("{type: attention/softmax, heads: 4, fused: false}");
    const std::int64_t d = 4, h = 4, group = h / kv;
    REQUIRE(gqa->qkv->weight.size(0) == (h + 2 * kv) * d);
    {
      torch::NoGradGuard no_grad;
      full->qkv->weight.narrow(0, 0, h * d).copy_(gqa->qkv->weight.narrow(0, 0, h * d));
      full->qkv->bias.narrow(0, 0, h * d).copy_(gqa->qkv->bias.narrow(0, 0, h * d));
      for (std::int64_t part = 1; part <= 2; ++part)  // k, then v: head i uses kv head i / group
        for (std::int64_t i = 0; i < h; ++i) {
          const auto from = (h + (part - 1) * kv + i / group) * d, to = (part * h + i) * d;
          full->qkv->weight.narrow(0, to, d).copy_(gqa->qkv->weight.narrow(0, from, d));
          full->qkv->bias.narrow(0, to, d).copy_(gqa->qkv->bias.narrow(0, from, d));
        }
      full->proj->weight.copy_(gqa->proj->weight);
      full->proj->bias.copy_(gqa->proj->bias);
    }
    const auto x = torch::randn({2, 7, 16}, torch::kFloat64);
    torch::NoGradGuard no_grad;
    CHECK(torch::allclose(gqa->forward(x, {}), full->forward(x, {}), 1e-12, 1e-12));
    CHECK(parameter_count(*gqa) == 16 * (h + 2 * kv) * d + (h + 2 * kv) * d + 16 * 16 + 16);
  }
}

TEST_CASE("parts: head_dim sets the head width; the gate multiplies each head channel by sigmoid(x W_g + b)",
          "[variants]") {
  torch::manual_seed(42);
  auto wide = build("{type: attention/softmax, heads: 2, head_dim: 12}");
  CHECK(wide->head_dim() == 12);
  CHECK(wide->qkv->weight.sizes() == torch::IntArrayRef({3 * 24, 16}));
  CHECK(wide->proj->weight.sizes() == torch::IntArrayRef({16, 24}));
  CHECK(wide->forward(torch::randn({1, 5, 16}, torch::kFloat64), {}).sizes() == torch::IntArrayRef({1, 5, 16}));

  auto gated = build("{type: attention/softmax, heads: 2, gate: true, fused: false}");
  auto plain = build("{type: attention/softmax, heads: 2, fused: false}");
  const auto names = gated->named_parameters();
  REQUIRE(names.contains("gate.weight"));
  CHECK(names["gate.weight"].sizes() == torch::IntArrayRef({16, 16}));
  const auto x = torch::randn({2, 6, 16}, torch::kFloat64);
  torch::NoGradGuard no_grad;
  const auto [q, k, v] = gated->project(x);
  const auto heads = gated->attend_reference(q, k, v, {}).transpose(1, 2).reshape({2, 6, 16});
  const auto g = torch::sigmoid(torch::linear(x, names["gate.weight"], names["gate.bias"]));
  CHECK(torch::allclose(gated->forward(x, {}), torch::linear(heads * g, gated->proj->weight, gated->proj->bias), 1e-12,
                        1e-12));
  CHECK(parameter_count(*gated) == parameter_count(*plain) + 16 * 16 + 16);
}

TEST_CASE("parts: padded keys (ctx.lengths) never change the valid outputs, on both paths", "[variants]") {
  torch::manual_seed(43);
  for (const std::string extra : {"fused: true", "fused: false", "mask: {type: mask/alibi}"}) {
    INFO(extra);
    auto m = build("{type: attention/softmax, heads: 2, " + extra + "}");
    CHECK(m->capabilities().variable_lengths);
    const auto x = torch::randn({2, 9, 16}, torch::kFloat64);
    for (bool causal : {false, true}) {
      MixerContext padded;
      padded.causal = causal;
      padded.lengths = torch::tensor({6, 9}, torch::kLong);
      MixerContext plain;
      plain.causal = causal;
      torch::NoGradGuard no_grad;
      const auto y = m->forward(x, padded);
      CHECK(
          torch::allclose(y[0].narrow(0, 0, 6), m->forward(x.narrow(0, 0, 1).narrow(1, 0, 6), plain)[0], 1e-12, 1e-12));
      CHECK(torch::allclose(y[1], m->forward(x.narrow(0, 1, 1), plain)[0], 1e-12, 1e-12));
      // Without the lengths the padding is attended to (the check can fail).
      if (!causal)
        CHECK_FALSE(torch::allclose(m->forward(x, plain)[0].narrow(0, 0, 6), y[0].narrow(0, 0, 6), 1e-6, 1e-9));
    }
  }
}

TEST_CASE("parts: rules between the shared options are ConfigErrors at the option", "[variants]") {
  const auto error_at = [](const std::string& text) {
    return testing::error_text([&] { mixer_registry().create(yaml(text), MixerArgs{16, 10}); });
  };
  CHECK(error_at("{type: attention/softmax, heads: 4, kv_heads: 3}").find("kv_heads must divide heads") !=
        std::string::npos);
  CHECK(error_at("{type: attention/sigmoid, heads: 5}").find("heads must divide the embedding width") !=
        std::string::npos);
  CHECK(error_at("{type: attention/softmax, heads: 5, head_dim: 4}") == "<no error>");
  CHECK(error_at("{type: attention/softmax, heads: 8, rotary: 2d}").find("divisible by 4") != std::string::npos);
  CHECK(error_at("{type: attention/urpe, heads: 2, rotary: 3d}").find("rotary") != std::string::npos);
  try {
    mixer_registry().create(yaml("{type: attention/gpsa,\n  heads: 4,\n  kv_heads: 3}"), MixerArgs{16, 10});
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()).find("test:3") != std::string::npos);  // located at kv_heads
  }
}

TEST_CASE("parts: capabilities keep the contract's facts", "[variants]") {
  using W = MixerCapabilities::Weights;
  const auto caps = [](const std::string& key) {
    return mixer_registry().create(yaml("{type: " + key + ", heads: 2}"), MixerArgs{16, 10})->capabilities();
  };
  for (const std::string key :
       {"attention/softmax", "attention/softplus", "attention/selective", "attention/relative", "attention/gpsa"})
    CHECK(caps(key).weights == W::normalised);
  CHECK(caps("attention/sigmoid").weights == W::unnormalised);
  CHECK(caps("attention/urpe").weights == W::unnormalised);
  CHECK(caps("attention/softmax").causal);
  CHECK_FALSE(caps("attention/gpsa").causal);
  CHECK_FALSE(caps("attention/selective").variable_lengths);
}

}  // namespace BLOCKLAB_TEST_FILE
