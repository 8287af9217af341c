// Property tests of attention/urpe (tag [variants]), moved from tests/test_attention_variants.cpp.
#include "tests/blocks/attention/helpers.h"

#include "blocks/attention/urpe.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::attention_tests;

TEST_CASE("urpe: with C = 1 it equals RPE softmax attention; in general the weights are softmax(s + B) ⊙ C",
          "[variants]") {
  torch::manual_seed(16);
  UrpeAttention m(16, UrpeAttentionOptions().heads(4).max_relative_position(5));
  m->to(torch::kFloat64);
  m->eval();
  const std::int64_t n = 8;  // longer than M: offsets beyond +-4 are clipped
  const auto x = randn({2, n, 16});
  const auto [q, k, v] = m->project(x);
  auto b = torch::zeros({4, n, n}, torch::kFloat64), c = torch::zeros({4, n, n}, torch::kFloat64);
  const auto fill = [&](torch::Tensor& out, const torch::Tensor& table) {
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        out.select(1, i).select(1, j).copy_(table.select(1, std::clamp<std::int64_t>(j - i, -4, 4) + 4));
  };
  fill(b, m->bias_table.detach());
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto ctx = context(0, 0, 0, causal);
    auto s = q.matmul(k.transpose(-2, -1)) / 2.0 + b;
    if (causal) s = s.masked_fill(torch::ones({n, n}, torch::kBool).triu(1), -std::numeric_limits<double>::infinity());
    const auto rpe = torch::softmax(s, -1);
    torch::NoGradGuard no_grad;
    CHECK(close(m->forward(x, ctx), merge_by_hand(*m, rpe.matmul(v))));  // constant init: C = 1
    m->toeplitz_table.normal_();
    fill(c, m->toeplitz_table);
    CHECK(close(m->weights(q, k, ctx), rpe * c));
    CHECK(close(m->forward(x, ctx), merge_by_hand(*m, (rpe * c).matmul(v))));
    m->toeplitz_table.fill_(1.0);
  }
}

TEST_CASE("urpe: C is Toeplitz; C = 0 leaves only the output bias; parameter count", "[variants]") {
  torch::manual_seed(17);
  UrpeAttention m(8, UrpeAttentionOptions().heads(2).max_relative_position(4).constant_init(false));
  m->to(torch::kFloat64);
  const auto c = m->multiplier(9);
  REQUIRE(c.sizes() == torch::IntArrayRef({2, 9, 9}));
  CHECK(torch::equal(c.narrow(1, 1, 8).narrow(2, 1, 8), c.narrow(1, 0, 8).narrow(2, 0, 8)));  // depends on j - i
  CHECK(torch::equal(c[0][0][8], m->toeplitz_table[0][6]));                                   // offset 8 clipped to 3
  CHECK(torch::equal(c[1][8][0], m->toeplitz_table[1][0]));                                   // offset -8 clipped to -3
  CHECK(m->toeplitz_table.abs().max().item<double>() < 0.2);                                  // N(0, 0.02)
  {
    torch::NoGradGuard no_grad;
    m->toeplitz_table.zero_();
  }
  const auto x = randn({2, 5, 8});
  CHECK(close(m->forward(x, context()), m->proj->bias.expand({2, 5, 8})));
  CHECK(parameter_count(*m) == mhsa_count(8, true) + 2 * 2 * (2 * 4 - 1));
  const auto no_bias =
      mixer_registry().create(yaml("{type: attention/urpe, heads: 2, rel_bias: false}"), MixerArgs{8, 17});
  CHECK(parameter_count(*no_bias) == mhsa_count(8, true) + 2 * (2 * 17 - 1));
}

}  // namespace BLOCKLAB_TEST_FILE
