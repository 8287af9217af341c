// Property tests of attention/relative (tag [variants]), moved from tests/test_attention_variants.cpp.
#include "tests/blocks/attention/helpers.h"

#include "blocks/attention/relative.h"
#include "blocks/common/relative_positions.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::attention_tests;

TEST_CASE("relative: skewed S_rel equals the naive q_i . E_{j-i}, causal and not, short and long sequences",
          "[variants]") {
  torch::manual_seed(2);
  struct Case {
    std::int64_t tokens, max_rel;
    bool shared;
  };
  for (const auto c : {Case{7, 7, false}, Case{7, 4, false}, Case{5, 9, true}, Case{1, 3, false}}) {
    RelativeAttention m(12,
                        RelativeAttentionOptions().heads(3).max_relative_position(c.max_rel).shared_heads(c.shared));
    m->to(torch::kFloat64);
    const auto q = randn({2, 3, c.tokens, 4});
    const auto e = m->rel_embeddings;
    REQUIRE(e.sizes() == torch::IntArrayRef({c.shared ? 1 : 3, 2 * c.max_rel - 1, 4}));
    for (bool causal : {false, true}) {
      INFO("N " << c.tokens << ", M " << c.max_rel << ", shared " << c.shared << ", causal " << causal);
      const auto s = m->relative_logits(q, causal);
      REQUIRE(s.sizes() == torch::IntArrayRef({2, 3, c.tokens, c.tokens}));
      auto naive = torch::zeros_like(s);
      for (std::int64_t h = 0; h < 3; ++h)
        for (std::int64_t i = 0; i < c.tokens; ++i)
          for (std::int64_t j = 0; j < c.tokens; ++j) {
            const auto offset = j - i;
            if (std::abs(offset) > c.max_rel - 1) continue;  // beyond the table: zero embedding
            const auto row = e[c.shared ? 0 : h][offset + c.max_rel - 1];
            naive.select(1, h).select(1, i).select(1, j).copy_(q.select(1, h).select(1, i).matmul(row));
          }
      const auto keep = causal ? torch::ones({c.tokens, c.tokens}, torch::kBool).tril()
                               : torch::ones({c.tokens, c.tokens}, torch::kBool);
      CHECK(max_diff(s.masked_fill(~keep, 0.0), naive.masked_fill(~keep, 0.0)) < 1e-12);
    }
  }
}

TEST_CASE("relative: with E_r = 0 the block equals softmax attention with the same weights", "[variants]") {
  torch::manual_seed(3);
  RelativeAttention m(16, RelativeAttentionOptions().heads(4).max_relative_position(9));
  m->to(torch::kFloat64);
  m->eval();
  auto ref = softmax_twin(*m);
  const auto x = randn({2, 9, 16});
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto ctx = context(0, 0, 0, causal);
    // Learned embeddings change the output...
    CHECK_FALSE(close(m->forward(x, ctx), ref->forward(x, ctx), 1e-6, 1e-9));
    // ... and zero embeddings give plain softmax attention.
    torch::NoGradGuard no_grad;
    const auto saved = m->rel_embeddings.clone();
    m->rel_embeddings.zero_();
    CHECK(close(m->forward(x, ctx), ref->forward(x, ctx)));
    m->rel_embeddings.copy_(saved);
  }
}

TEST_CASE("relative: the logits are translation invariant in the relative term; forward is the explicit formula",
          "[variants]") {
  torch::manual_seed(4);
  RelativeAttention m(8, RelativeAttentionOptions().heads(2).max_relative_position(6));
  m->to(torch::kFloat64);
  m->eval();
  const auto x = randn({1, 6, 8});
  const auto [q, k, v] = m->project(x);
  for (bool causal : {false, true}) {
    const auto ctx = context(0, 0, 0, causal);
    const auto qs = q * (1.0 / std::sqrt(4.0));
    auto s = qs.matmul(k.transpose(-2, -1)) + m->relative_logits(qs, causal);
    if (causal) s = s.masked_fill(torch::ones({6, 6}, torch::kBool).triu(1), -std::numeric_limits<double>::infinity());
    CHECK(close(m->forward(x, ctx), merge_by_hand(*m, torch::softmax(s, -1).matmul(v))));
  }
  // The same query vector at every position: S_rel depends on j - i only (Toeplitz).
  const auto same = q.select(2, 0).unsqueeze(2).expand({1, 2, 6, 4}).contiguous();
  const auto s = m->relative_logits(same, false);
  CHECK(close(s.narrow(2, 1, 5).narrow(3, 1, 5), s.narrow(2, 0, 5).narrow(3, 0, 5)));
}

TEST_CASE("relative: parameter count; max_relative_position defaults to the longest sequence", "[variants]") {
  const auto m = mixer_registry().create(yaml("{type: attention/relative, heads: 4}"), MixerArgs{32, 17});
  CHECK(parameter_count(*m) == mhsa_count(32, true) + 4 * (2 * 17 - 1) * 8);
  const auto shared = mixer_registry().create(
      yaml("{type: attention/relative, heads: 4, shared_heads: true, max_relative_position: 5}"), MixerArgs{32, 17});
  CHECK(parameter_count(*shared) == mhsa_count(32, true) + (2 * 5 - 1) * 8);
  CHECK_THROWS_AS(mixer_registry().create(yaml("{type: attention/relative}"), MixerArgs{32, 0}), ConfigError);
}

}  // namespace BLOCKLAB_TEST_FILE
