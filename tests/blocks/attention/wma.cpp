// Property tests of attention/wma (FlexiBERT's weighted multiplicative attention, catalog
// 003/004 C20), tag [variants]: with W = I (its init) it equals attention/softmax with the same
// Q/K/V/O; with a random W it equals softmax(q W k^T / sqrt(d)) v written with plain torch ops,
// shared by the heads or one per head (the probe records those weights); parameter counts.
#include "tests/blocks/attention/helpers.h"

#include "blocks/attention/wma.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::attention_tests;

namespace {

std::shared_ptr<WmaAttentionImpl> wma_make(const std::string& config, std::int64_t dim = 16) {
  auto m = std::dynamic_pointer_cast<WmaAttentionImpl>(mixer_registry().create(yaml(config), MixerArgs{dim, 32}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

// softmax(q W_h k^T / sqrt(d)) per head by hand, W [d, d] (shared) or [h, d, d]; causal masks j > i.
torch::Tensor wma_weights_by_hand(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& w, bool causal) {
  const auto h = q.size(1), n = q.size(2), d = q.size(3);
  std::vector<torch::Tensor> heads;
  for (std::int64_t i = 0; i < h; ++i) {
    const auto w_h = w.dim() == 2 ? w : w[i];
    auto s = q.select(1, i).matmul(w_h).matmul(k.select(1, i).transpose(-2, -1)) / std::sqrt(double(d));
    if (causal) s = s.masked_fill(torch::ones({n, n}, torch::kBool).triu(1), -std::numeric_limits<double>::infinity());
    heads.push_back(torch::softmax(s, -1));
  }
  return torch::stack(heads, 1);  // [B, h, N, N]
}

}  // namespace

TEST_CASE("wma: W = I (the init) equals attention/softmax with the same Q, K, V, O", "[variants]") {
  torch::manual_seed(20);
  for (const std::string shared : {"true", "false"}) {
    for (bool causal : {false, true}) {
      INFO("shared " << shared << ", causal " << causal);
      const auto m = wma_make("{type: attention/wma, heads: 2, shared: " + shared + "}");
      const auto eye = torch::eye(8, torch::kFloat64);
      CHECK(close(m->similarity, shared == "true" ? eye : eye.expand({2, 8, 8})));
      auto ref = softmax_twin(*m);
      const auto x = randn({2, 9, 16});
      const auto ctx = context(0, 0, 0, causal);
      CHECK(close(m->forward(x, ctx), ref->forward(x, ctx)));
    }
  }
}

TEST_CASE("wma: a random W gives softmax(q W k^T / sqrt(d)) v, shared by the heads or per head", "[variants]") {
  torch::manual_seed(21);
  for (const std::string shared : {"true", "false"}) {
    for (bool causal : {false, true}) {
      INFO("shared " << shared << ", causal " << causal);
      const auto m = wma_make("{type: attention/wma, heads: 2, shared: " + shared + "}");
      {
        torch::NoGradGuard no_grad;
        m->similarity.normal_(0.0, 0.7);
      }
      const auto x = randn({2, 7, 16});
      const auto [q, k, v] = m->project(x);
      const auto expected = wma_weights_by_hand(q, k, m->similarity, causal);
      const auto ctx = context(0, 0, 0, causal);
      CHECK(close(m->weights(q, k, ctx), expected));
      CHECK(close(m->forward(x, ctx), merge_by_hand(*m, expected.matmul(v))));  // fused kernel
      // W != I: no longer the plain scaled dot product.
      CHECK_FALSE(close(m->forward(x, ctx), softmax_twin(*m)->forward(x, ctx)));
      AttentionProbe probe;
      probe.enable();
      auto recorded = ctx;
      recorded.probe = &probe;
      recorded.layer = 3;
      CHECK(close(m->forward(x, recorded), merge_by_hand(*m, expected.matmul(v))));  // reference path
      REQUIRE(probe.records().size() == 1);
      CHECK(probe.records()[0].mixer == "attention/wma");
      CHECK(probe.records()[0].layer == 3);
      CHECK(close(probe.records()[0].probs, expected));
    }
  }
  SECTION("per-head matrices all equal to M equal one shared M") {
    const auto shared = wma_make("{type: attention/wma, heads: 2}");
    const auto per_head = wma_make("{type: attention/wma, heads: 2, shared: false}");
    copy_projections(*shared, *per_head);
    {
      torch::NoGradGuard no_grad;
      shared->similarity.normal_(0.0, 0.7);
      per_head->similarity.copy_(shared->similarity.expand({2, 8, 8}));
    }
    const auto x = randn({2, 6, 16});
    CHECK(close(per_head->forward(x, context()), shared->forward(x, context())));
  }
}

TEST_CASE("wma: parameters are the MHSA's + d^2 (shared) or + h d^2; options", "[variants]") {
  CHECK(parameter_count(*wma_make("{type: attention/wma, heads: 2}")) == mhsa_count(16, true) + 8 * 8);
  CHECK(parameter_count(*wma_make("{type: attention/wma, heads: 2, shared: false}")) ==
        mhsa_count(16, true) + 2 * 8 * 8);
  CHECK(parameter_count(*wma_make("{type: attention/wma, heads: 4, qkv_bias: false}")) ==
        mhsa_count(16, false) + 4 * 4);
  CHECK(parameter_count(*wma_make("{type: attention/wma, heads: 4, shared: false}")) ==
        mhsa_count(16, true) + 4 * 4 * 4);
  const auto uniform = wma_make("{type: attention/wma, heads: 2, shared: false, init: uniform}");
  CHECK(uniform->similarity.sizes() == torch::IntArrayRef({2, 8, 8}));
  CHECK(uniform->similarity.abs().max().item<double>() <= 0.1 + 1e-7);  // drawn in float32
  CHECK_FALSE(close(uniform->similarity, torch::eye(8, torch::kFloat64).expand({2, 8, 8})));
  CHECK_THROWS_AS(wma_make("{type: attention/wma, init: zeros}"), ConfigError);
  CHECK_THROWS_AS(wma_make("{type: attention/wma, heads: 3}"), ConfigError);
}

}  // namespace BLOCKLAB_TEST_FILE
