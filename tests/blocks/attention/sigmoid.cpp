// Property tests of attention/sigmoid (tag [variants]), moved from tests/test_attention_variants.cpp.
#include "tests/blocks/attention/helpers.h"

#include "blocks/attention/sigmoid.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::attention_tests;

TEST_CASE("sigmoid: weights are sigmoid(s - ln N) elementwise and the output is the explicit formula", "[variants]") {
  torch::manual_seed(10);
  SigmoidAttention m(16, SigmoidAttentionOptions().heads(2));
  m->to(torch::kFloat64);
  m->eval();
  const auto x = randn({2, 7, 16});
  const auto [q, k, v] = m->project(x);
  const auto s = q.matmul(k.transpose(-2, -1)) / std::sqrt(8.0);
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto ctx = context(0, 0, 0, causal);
    auto expected = torch::sigmoid(s - std::log(7.0));
    if (causal) expected = expected.masked_fill(torch::ones({7, 7}, torch::kBool).triu(1), 0.0);
    const auto w = m->weights(q, k, ctx);
    CHECK(close(w, expected));
    if (causal) CHECK(w.triu(1).abs().max().item<double>() == 0.0);  // masked entries exactly 0
    CHECK(close(m->forward(x, ctx), merge_by_hand(*m, expected.matmul(v))));
  }
}

TEST_CASE("sigmoid: with zero logits every row sums to n / (n + 1), i.e. b = -ln n", "[variants]") {
  for (std::int64_t n : {5, 16}) {
    SigmoidAttention m(8, SigmoidAttentionOptions().heads(2));
    m->to(torch::kFloat64);
    {
      torch::NoGradGuard no_grad;
      m->qkv->weight.zero_();
      m->qkv->bias.zero_();
    }
    const auto x = randn({1, n, 8});
    const auto [q, k, v] = m->project(x);
    const auto rows = m->weights(q, k, context()).sum(-1);
    const double expected = static_cast<double>(n) / static_cast<double>(n + 1);
    CHECK(close(rows, torch::full_like(rows, expected)));
  }
}

TEST_CASE("sigmoid: constant and learned biases; qk_norm normalises q and k per head", "[variants]") {
  torch::manual_seed(11);
  const auto constant = mixer_registry().create(
      yaml("{type: attention/sigmoid, heads: 2, bias_mode: constant, bias: -3.5}"), MixerArgs{8, 10});
  CHECK(parameter_count(*constant) == mhsa_count(8, true));
  CHECK(std::dynamic_pointer_cast<SigmoidAttentionImpl>(constant)->logit_bias(10).item<double>() == -3.5);
  const auto learned =
      mixer_registry().create(yaml("{type: attention/sigmoid, heads: 2, bias_mode: learned}"), MixerArgs{8, 10});
  const auto* impl = dynamic_cast<SigmoidAttentionImpl*>(learned.get());
  REQUIRE(impl != nullptr);
  REQUIRE(impl->learned_bias.defined());
  CHECK(impl->learned_bias.item<double>() == Approx(-std::log(10.0)));
  CHECK(parameter_count(*learned) == mhsa_count(8, true) + 1);
  SigmoidAttention normed(8, SigmoidAttentionOptions().heads(2).qk_norm(true));
  normed->to(torch::kFloat64);
  CHECK(parameter_count(*normed) == mhsa_count(8, true) + 4 * 4);
  const auto x = randn({1, 5, 8});
  const auto [q, k, v] = normed->project(x);
  const auto ln = [](const torch::Tensor& t) { return torch::layer_norm(t, {4}, {}, {}, 1e-6); };
  const auto s = ln(q).matmul(ln(k).transpose(-2, -1)) / 2.0;
  CHECK(close(normed->weights(q, k, context()), torch::sigmoid(s - std::log(5.0))));
  CHECK_THROWS_AS(mixer_registry().create(yaml("{type: attention/sigmoid, bias_mode: zero}"), MixerArgs{8, 10}),
                  ConfigError);
}

}  // namespace BLOCKLAB_TEST_FILE
