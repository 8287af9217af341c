// Property tests of attention/selective (tag [variants]), moved from tests/test_attention_variants.cpp.
#include "tests/blocks/attention/helpers.h"

#include "blocks/attention/selective.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::attention_tests;

TEST_CASE("selective: with beta -> +inf (temperature 1) it equals softmax attention with the same weights",
          "[variants]") {
  torch::manual_seed(13);
  SelectiveAttention m(16, SelectiveAttentionOptions().heads(4).query_temperature(true).value_temperature(true));
  m->to(torch::kFloat64);
  m->eval();
  auto ref = softmax_twin(*m);
  const auto x = randn({2, 9, 16});
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto ctx = context(0, 0, 0, causal);
    CHECK_FALSE(close(m->forward(x, ctx), ref->forward(x, ctx), 1e-6, 1e-9));  // beta = 1.5: tau > 1
    torch::NoGradGuard no_grad;
    m->beta.fill_(10.0);  // exp(-exp(10)) = 0 in float64; the token gates start at zero
    CHECK(close(m->forward(x, ctx), ref->forward(x, ctx)));
    m->beta.fill_(1.5);
  }
}

TEST_CASE("selective: tau_1 = 1, tau grows with the position, and every row is sharper than vanilla", "[variants]") {
  torch::manual_seed(14);
  SelectiveAttention m(16, SelectiveAttentionOptions().heads(4).beta(0.0));
  m->to(torch::kFloat64);
  const auto x = randn({2, 12, 16});
  const auto [q, k, v] = m->project(x);
  const auto tau = m->query_temperatures(q, true).flatten();
  CHECK(tau[0].item<double>() == 1.0);
  CHECK((tau.narrow(0, 1, 11) > tau.narrow(0, 0, 11)).all().item<bool>());
  for (std::int64_t i = 0; i < 12; ++i)
    CHECK(tau[i].item<double>() == Approx(1.0 + std::exp(-1.0) * std::log(static_cast<double>(i + 1))));
  // Non-causal: every query sees N keys.
  CHECK(close(m->query_temperatures(q, false).flatten(),
              torch::full({12}, 1.0 + std::exp(-1.0) * std::log(12.0), torch::kFloat64)));
  for (bool causal : {false, true}) {
    const auto ctx = context(0, 0, 0, causal);
    auto s = q.matmul(k.transpose(-2, -1)) / 2.0;
    if (causal)
      s = s.masked_fill(torch::ones({12, 12}, torch::kBool).triu(1), -std::numeric_limits<double>::infinity());
    const auto vanilla = torch::softmax(s, -1), selective = m->weights(q, k, ctx);
    CHECK((entropy(selective) <= entropy(vanilla) + 1e-12).all().item<bool>());
    if (causal) CHECK(close(selective.select(2, 0), vanilla.select(2, 0)));  // tau_1 = 1
    const auto expected_tau = m->query_temperatures(q, causal);
    CHECK(close(selective, torch::softmax(s * expected_tau, -1)));
  }
}

TEST_CASE("selective: token-aware query and value temperatures follow their formulas", "[variants]") {
  torch::manual_seed(15);
  SelectiveAttention m(16, SelectiveAttentionOptions().heads(4).query_temperature(true).value_temperature(true));
  m->to(torch::kFloat64);
  m->eval();
  CHECK(parameter_count(*m) == mhsa_count(16, true) + 1 + 2 * 4 * 4);
  {
    torch::NoGradGuard no_grad;
    m->query_gate.normal_();
    m->value_gate.normal_();
  }
  const auto x = randn({2, 7, 16});
  const auto [q, k, v] = m->project(x);
  const auto pos = 1.0 + std::exp(-std::exp(1.5)) * std::log(7.0);
  const auto tau = pos + torch::tanh((q * m->query_gate.view({1, 4, 1, 4})).sum(-1, true));
  const auto w = torch::softmax(q.matmul(k.transpose(-2, -1)) * tau / 2.0, -1);
  const auto scaled_v = v * (1.0 + torch::tanh((v * m->value_gate.view({1, 4, 1, 4})).sum(-1, true)));
  torch::NoGradGuard no_grad;
  CHECK(close(m->weights(q, k, context()), w));
  CHECK(close(m->forward(x, context()), merge_by_hand(*m, w.matmul(scaled_v))));
}

}  // namespace BLOCKLAB_TEST_FILE
