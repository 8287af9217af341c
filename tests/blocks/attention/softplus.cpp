// Property tests of attention/softplus (tag [variants]), moved from tests/test_attention_variants.cpp.
#include "tests/blocks/attention/helpers.h"

#include "blocks/attention/softplus.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::attention_tests;

TEST_CASE("softplus: LSSA closed form on a tiny input, causal and not", "[variants]") {
  // One head of width 1 (scale 1): s_ij = q_i k_j.
  SoftplusAttention m(1, SoftplusAttentionOptions().heads(1));
  m->to(torch::kFloat64);
  const double qv[3] = {1.0, -2.0, 0.5}, kv[3] = {0.5, 1.0, -2.0};
  const auto q = torch::tensor({qv[0], qv[1], qv[2]}, torch::kFloat64).view({1, 1, 3, 1});
  const auto k = torch::tensor({kv[0], kv[1], kv[2]}, torch::kFloat64).view({1, 1, 3, 1});
  const auto softplus = [](double z) { return std::log1p(std::exp(z)); };
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto w = m->weights(q, k, context(0, 0, 0, causal));
    for (int i = 0; i < 3; ++i) {
      const int n = causal ? i + 1 : 3;
      const double kappa = std::log(static_cast<double>(n)) / std::log(512.0);
      double total = 0.0;
      for (int j = 0; j < n; ++j) total += softplus(kappa * qv[i] * kv[j]);
      for (int j = 0; j < 3; ++j) {
        const double expected = j < n ? softplus(kappa * qv[i] * kv[j]) / total : 0.0;
        CHECK(w[0][0][i][j].item<double>() == Approx(expected).epsilon(1e-13).margin(1e-15));
      }
    }
  }
  // The length scale is 1 when n equals the base: plain softplus, l1-normalised.
  SoftplusAttention at_base(1, SoftplusAttentionOptions().heads(1).length_base(3.0));
  at_base->to(torch::kFloat64);
  const auto s = torch::tensor({{0.3, -1.0, 2.0}}, torch::kFloat64);
  const auto plain = torch::softplus(s) / torch::softplus(s).sum(-1, true);
  CHECK(close(at_base->normalise_logits(s), plain));
}

TEST_CASE("softplus: LSSAR re-weighting closed form, argmax kept, rows sum to 1, large p one-hot, uniform rows kept",
          "[variants]") {
  torch::manual_seed(12);
  SoftplusAttention lssa(8, SoftplusAttentionOptions().heads(2));
  SoftplusAttention lssar(8, SoftplusAttentionOptions().heads(2).reweight(true).power(3.0));
  const auto s = randn({2, 2, 6, 6}) * 3.0;
  const auto a = lssa->normalise_logits(s);
  const auto r = lssar->normalise_logits(s);
  const auto sharpened = torch::relu(6.0 * a - 1.0).pow(3.0);
  CHECK(close(r, sharpened / sharpened.sum(-1, true)));
  CHECK(close(r.sum(-1), torch::ones({2, 2, 6}, torch::kFloat64)));
  CHECK(torch::equal(r.argmax(-1), a.argmax(-1)));
  // A large power tends to one-hot at the argmax (rows with clear maxima).
  SoftplusAttention steep(8, SoftplusAttentionOptions().heads(2).reweight(true).power(200.0));
  const auto rows =
      torch::tensor({{2.0, 1.0, 0.0, -1.0}, {0.5, 3.0, 0.1, 0.2}, {-2.0, -1.0, -3.0, 1.5}}, torch::kFloat64);
  const auto one_hot = torch::one_hot(rows.argmax(-1), 4).to(torch::kFloat64);
  CHECK(max_diff(steep->normalise_logits(rows), one_hot) < 1e-6);
  CHECK(max_diff(lssar->normalise_logits(rows), one_hot) > 1e-3);
  // A uniform row (equal logits) has nothing above 1/n: it keeps A, with finite gradients.
  const auto flat = torch::zeros({1, 4}, torch::kFloat64).requires_grad_(true);
  const auto kept = lssar->normalise_logits(flat);
  CHECK(close(kept, torch::full({1, 4}, 0.25, torch::kFloat64)));
  (kept * torch::randn_like(kept)).sum().backward();
  CHECK(torch::isfinite(flat.grad()).all().item<bool>());
}

TEST_CASE("softplus: length_base 0 is the longest sequence; invalid bases are config errors", "[variants]") {
  const auto m = mixer_registry().create(yaml("{type: attention/softplus, heads: 2, length_base: 0}"), MixerArgs{8, 5});
  const auto* impl = dynamic_cast<SoftplusAttentionImpl*>(m.get());
  REQUIRE(impl != nullptr);
  CHECK(impl->options().length_base() == 5.0);
  CHECK(parameter_count(*m) == mhsa_count(8, true));
  CHECK_THROWS_AS(mixer_registry().create(yaml("{type: attention/softplus, length_base: 1}"), MixerArgs{8, 5}),
                  ConfigError);
  CHECK_THROWS_AS(mixer_registry().create(yaml("{type: attention/softplus, length_base: 0}"), MixerArgs{8, 0}),
                  ConfigError);
}

}  // namespace BLOCKLAB_TEST_FILE
