// Property tests of attention/gpsa (tag [variants]), moved from tests/test_attention_variants.cpp.
#include "tests/blocks/attention/helpers.h"

#include "blocks/attention/gpsa.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::attention_tests;

TEST_CASE("gpsa: with the gate fully to content it equals softmax attention with the same q/k/v weights",
          "[variants]") {
  torch::manual_seed(5);
  Gpsa m(16, GpsaOptions().heads(4));
  m->to(torch::kFloat64);
  m->eval();
  auto ref = softmax_twin(*m);
  for (std::int64_t prefix : {0, 1}) {
    INFO("prefix " << prefix);
    const auto x = randn({2, prefix + 9, 16});
    const auto ctx = context(3, 3, prefix);
    CHECK_FALSE(close(m->forward(x, ctx), ref->forward(x, ctx), 1e-6, 1e-9));  // lambda = 1: positional share
    torch::NoGradGuard no_grad;
    const auto saved = m->gating.clone();
    m->gating.fill_(-1e4);  // sigma(lambda) = 0 exactly
    CHECK(close(m->forward(x, ctx), ref->forward(x, ctx)));
    m->gating.copy_(saved);
  }
}

TEST_CASE("gpsa: with the gate fully to position the grid tokens ignore the q/k weights; prefix tokens do not",
          "[variants]") {
  torch::manual_seed(6);
  Gpsa m(16, GpsaOptions().heads(4));
  m->to(torch::kFloat64);
  m->eval();
  torch::NoGradGuard no_grad;
  m->gating.fill_(1e4);  // sigma(lambda) = 1 exactly
  const auto x = randn({2, 1 + 9, 16});
  const auto ctx = context(3, 3, 1);
  const auto before = m->forward(x, ctx);
  m->qkv->weight.narrow(0, 0, 32).normal_();  // new W_q, W_k
  const auto after = m->forward(x, ctx);
  CHECK(close(before.narrow(1, 1, 9), after.narrow(1, 1, 9)));
  CHECK_FALSE(close(before.narrow(1, 0, 1), after.narrow(1, 0, 1), 1e-6, 1e-9));  // the class token: content only
}

TEST_CASE("gpsa: with the local init each head's positional attention peaks at its own offset", "[variants]") {
  torch::manual_seed(7);
  Gpsa m(18, GpsaOptions().heads(9));  // a 3 x 3 layout of heads, centre 1
  m->to(torch::kFloat64);
  // W_v = I (standalone construction; see gpsa.h for vit).
  CHECK(torch::equal(m->qkv->weight.narrow(0, 36, 18), torch::eye(18, torch::kFloat64)));
  const auto p = m->positional_weights(25, context(5, 5));
  REQUIRE(p.sizes() == torch::IntArrayRef({9, 25, 25}));
  const std::int64_t query = 2 * 5 + 2;  // the centre of the 5 x 5 grid
  for (std::int64_t h1 = 0; h1 < 3; ++h1)
    for (std::int64_t h2 = 0; h2 < 3; ++h2) {
      const auto head = h1 + 3 * h2;
      const auto key = p[head][query].argmax().item<std::int64_t>();
      INFO("head " << head);
      CHECK(key % 5 - 2 == h2 - 1);  // dx
      CHECK(key / 5 - 2 == h1 - 1);  // dy
      // exp(-|delta - D|^2) up to normalisation: the peak is e times each 4-neighbour of it.
      CHECK(p[head][query][key].item<double>() / p[head][query][key + 5].item<double>() ==
            Approx(std::exp(1.0)).epsilon(1e-12));
    }
  // Without the local init the heads are not peaked at their offsets.
  Gpsa plain(18, GpsaOptions().heads(9).local_init(false));
  CHECK(plain->pos_weight.abs().max().item<double>() < 0.1);
}

TEST_CASE("gpsa: rows sum to 1; prefix rows are content attention; prefix keys get no positional weight",
          "[variants]") {
  torch::manual_seed(8);
  Gpsa m(16, GpsaOptions().heads(4));
  m->to(torch::kFloat64);
  const auto x = randn({2, 2 + 12, 16});
  const auto ctx = context(3, 4, 2);
  const auto [q, k, v] = m->project(x);
  const auto w = m->weights(q, k, ctx);
  CHECK(close(w.sum(-1), torch::ones({2, 4, 14}, torch::kFloat64)));
  CHECK(w.min().item<double>() >= 0.0);
  const auto content = torch::softmax(q.matmul(k.transpose(-2, -1)) / 2.0, -1);
  CHECK(close(w.narrow(2, 0, 2), content.narrow(2, 0, 2)));
  CHECK_FALSE(close(w.narrow(2, 2, 12), content.narrow(2, 2, 12), 1e-6, 1e-9));
  const auto p = m->positional_weights(14, ctx);
  CHECK(p.narrow(1, 0, 2).abs().max().item<double>() == 0.0);
  CHECK(p.narrow(2, 0, 2).abs().max().item<double>() == 0.0);
  CHECK(close(p.narrow(1, 2, 12).sum(-1), torch::ones({4, 12}, torch::kFloat64)));
  // The gated mix of the two, explicitly.
  const auto g = torch::sigmoid(m->gating).view({1, 4, 1, 1});
  CHECK(close(w.narrow(2, 2, 12), ((1 - g) * content + g * p).narrow(2, 2, 12)));
}

TEST_CASE("gpsa: not causal; a plain sequence is a 1 x N grid; a mismatched grid is an error", "[variants]") {
  torch::manual_seed(9);
  Gpsa m(8, GpsaOptions().heads(2));
  m->to(torch::kFloat64);
  CHECK_FALSE(m->capabilities().causal);
  const auto x = randn({1, 6, 8});
  CHECK_THROWS(m->forward(x, context(0, 0, 0, true)));
  CHECK(close(m->forward(x, context()), m->forward(x, context(1, 6))));
  CHECK_THROWS(m->forward(x, context(2, 2)));
}

}  // namespace BLOCKLAB_TEST_FILE
