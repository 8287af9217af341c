// Property tests of sparse/hyper, HyperAttention (tag [sparse]): one block or a short sequence is
// exact attention; the log-sum-exp merge of disjoint key sets is the attention over their union;
// the output equals a dense oracle built here from the pattern the block chose (its sort orders,
// blocks and sampled columns); the sampling is deterministic per seed and unbiased; the causal
// recursion is exact causal attention below min_seq_len and never reads a later token.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "blocks/probe.h"
#include "blocks/sparse/hyper.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kDim = 16;

TokenMixer make_hyper(const std::string& options, std::uint64_t weights_seed = 1) {
  torch::manual_seed(weights_seed);
  auto m = mixer_registry().create(parse_yaml("{type: sparse/hyper, heads: 2, " + options + "}", "t.yaml"),
                                   MixerArgs{kDim, 128});
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

HyperAttentionImpl& hyper_of(TokenMixer& m) { return dynamic_cast<HyperAttentionImpl&>(*m); }

torch::Tensor softmax_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
  return torch::matmul(torch::softmax(torch::matmul(q * scale, k.transpose(-2, -1)), -1), v);
}

// The reflected Gray-code sequence of r bits, as angular_lsh.py builds it: a_1 = [0, 1],
// a_r = [a_{r-1}, reversed(a_{r-1}) + 2^{r-1}].
std::vector<std::int64_t> gray_sequence(std::int64_t bits) {
  std::vector<std::int64_t> a{0, 1};
  for (std::int64_t r = 2; r <= bits; ++r) {
    const auto size = a.size();
    for (std::size_t i = 0; i < size; ++i) a.push_back(a[size - 1 - i] + (std::int64_t{1} << (r - 1)));
  }
  return a;
}

// The dense weights of the pattern: softmax(q k^T scale + log m) with m = 1 for the keys of the
// query's key block, count N / s per sampled key outside it, 0 elsewhere ([B, h, N_q, N_k]).
torch::Tensor pattern_weights(const torch::Tensor& q, const torch::Tensor& k, const HyperPattern& p, double scale) {
  const auto batch = q.size(0), heads = q.size(1), nq = q.size(2), n = k.size(2);
  auto mass = torch::zeros({batch, heads, nq, n}, torch::kFloat64);
  auto m = mass.accessor<double, 4>();
  const auto qb = p.query_block.accessor<std::int64_t, 3>(), ko = p.key_order.accessor<std::int64_t, 3>();
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < nq; ++i) {
        for (std::int64_t t = 0; t < n; ++t)
          if (qb[b][h][i] == t / p.block) m[b][h][i][ko[b][h][t]] += 1.0;
        if (!p.samples.defined()) continue;
        const auto s = p.samples.size(1);
        for (std::int64_t j = 0; j < s; ++j) {
          const auto t = p.samples[h][j].item<std::int64_t>();
          if (qb[b][h][i] != t / p.block) m[b][h][i][ko[b][h][t]] += double(n) / double(s);
        }
      }
  return torch::softmax(torch::matmul(q * scale, k.transpose(-2, -1)) + mass.log(), -1);
}

}  // namespace

TEST_CASE("sparse/hyper: one block (b >= N) or N <= min_seq_len is exact attention, causal or not", "[sparse]") {
  const auto x = torch::randn({2, 23, kDim}, torch::kFloat64);
  for (const bool causal : {false, true})
    for (const std::string options :
         {"block_size: 32, sample_size: 4, min_seq_len: 1", "block_size: 4, sample_size: 4, min_seq_len: 23"}) {
      INFO(options << ", causal " << causal);
      auto m = make_hyper(options);
      auto dense = attention_tests::softmax_twin(hyper_of(m));
      const auto ctx = attention_tests::context(0, 0, 0, causal);
      CHECK(max_diff(m->forward(x, ctx), dense->forward(x, ctx)) <= 1e-12);
    }
}

TEST_CASE("sparse/hyper: the log-sum-exp merge of disjoint key sets is the attention over their union", "[sparse]") {
  const auto q = torch::randn({2, 2, 5, 4}, torch::kFloat64), k = torch::randn({2, 2, 9, 4}, torch::kFloat64),
             v = torch::randn({2, 2, 9, 3}, torch::kFloat64);
  const double scale = 0.5;
  const auto [o, lse] = hyper_exact(q, k, v, scale, false, 2);
  CHECK(max_diff(o, softmax_attention(q, k, v, scale)) <= 1e-12);
  CHECK(max_diff(lse, torch::logsumexp(torch::matmul(q * scale, k.transpose(-2, -1)), -1)) <= 1e-12);
  const auto split = torch::randperm(9, torch::kLong);
  const auto first = split.narrow(0, 0, 4), second = split.narrow(0, 4, 5);
  const auto merged =
      hyper_merge(hyper_exact(q, k.index_select(2, first), v.index_select(2, first), scale, false, 3),
                  hyper_exact(q, k.index_select(2, second), v.index_select(2, second), scale, false, 3));
  CHECK(max_diff(merged.first, o) <= 1e-12);
  CHECK(max_diff(merged.second, lse) <= 1e-12);
  // A second set without keys (lse -inf) leaves the first unchanged.
  const auto none = hyper_merge({o, lse}, {torch::zeros_like(o), torch::full_like(lse, -INFINITY)});
  CHECK(max_diff(none.first, o) == 0.0);
  CHECK(max_diff(none.second, lse) == 0.0);
}

TEST_CASE("sparse/hyper: equals the dense oracle of its sortLSH blocks and weighted samples", "[sparse]") {
  auto m = make_hyper("lsh_projections: 3, block_size: 4, sample_size: 5, min_seq_len: 4");
  auto& hyper = hyper_of(m);
  const auto x = torch::randn({2, 23, kDim}, torch::kFloat64);  // 5 full blocks and one of 3
  const auto [q, k, v] = hyper.project(x);
  const auto p = hyper.pattern(q, k);
  // The buckets: Gray-code order of the sign bits, as the code's table; the orders sort them stably.
  const auto bits = torch::matmul(k, hyper.lsh_directions).gt(0).to(torch::kLong);
  const auto table = torch::tensor(gray_sequence(3), torch::kLong);
  const auto expected =
      table.index_select(0, (bits * torch::tensor({1, 2, 4}, torch::kLong)).sum(-1).flatten()).view_as(p.key_order);
  CHECK(torch::equal(hyper.buckets(k), expected));
  const auto sorted = expected.gather(2, p.key_order);
  CHECK((sorted.narrow(2, 1, 22) >= sorted.narrow(2, 0, 22)).all().item<bool>());
  const auto tie = sorted.narrow(2, 1, 22) == sorted.narrow(2, 0, 22);
  CHECK((p.key_order.narrow(2, 1, 22) > p.key_order.narrow(2, 0, 22)).logical_or(tie.logical_not()).all().item<bool>());
  // The code's rank rule: the i-th sorted query takes the block of the i-th sorted key.
  const auto rank_block = torch::arange(23, torch::kLong).div(4, "floor").expand({2, 2, 23});
  CHECK(torch::equal(p.query_block.gather(2, p.query_order), rank_block));
  REQUIRE(p.samples.defined());
  CHECK(p.samples.sizes() == torch::IntArrayRef({2, 5}));
  // The output and the probe's map against the oracle.
  const auto weights = pattern_weights(q, k, p, hyper.scale());
  AttentionProbe probe;
  probe.enable();
  auto ctx = attention_tests::context();
  ctx.probe = &probe;
  const auto o = hyper.attend(q, k, v, ctx);
  CHECK(max_diff(o, torch::matmul(weights, v)) <= 1e-9);
  REQUIRE(probe.records().size() == 1);
  CHECK(max_diff(probe.records()[0].probs, weights) <= 1e-9);
  CHECK(max_diff(o, softmax_attention(q, k, v, hyper.scale())) > 1e-6);  // not exact: the pattern matters
  // The causal recursion's rule: queries (11) over other keys (23), each in the block of sorted
  // keys where its bucket falls (searchsorted).
  const auto few = q.narrow(2, 0, 11);
  const auto by_keys = hyper.pattern(few, k, /*by_keys=*/true);
  const auto place = torch::searchsorted(sorted, hyper.buckets(few)).clamp_max(22).div(4, "floor");
  CHECK(torch::equal(by_keys.query_block, place));
  CHECK(max_diff(hyper.attend_non_causal(few, k, v, /*by_keys=*/true).first,
                 torch::matmul(pattern_weights(few, k, by_keys, hyper.scale()), v)) <= 1e-9);
}

TEST_CASE("sparse/hyper: the samples are fixed by the seed, independent of the batch", "[sparse]") {
  const std::string options = "lsh_projections: 3, block_size: 4, sample_size: 3, min_seq_len: 4, seed: ";
  auto a = make_hyper(options + "0"), again = make_hyper(options + "0"), other = make_hyper(options + "1");
  const auto x = torch::randn({2, 19, kDim}, torch::kFloat64);
  const auto ctx = attention_tests::context();
  const auto y = a->forward(x, ctx);
  CHECK(torch::equal(y, a->forward(x, ctx)));
  CHECK(torch::equal(y, again->forward(x, ctx)));
  CHECK(max_diff(y.narrow(0, 1, 1), a->forward(x.narrow(0, 1, 1), ctx)) <= 1e-12);
  CHECK(torch::equal(hyper_samples(0, 2, 19, 3), hyper_samples(0, 2, 19, 3)));
  CHECK_FALSE(torch::equal(hyper_samples(0, 2, 19, 3), hyper_samples(1, 2, 19, 3)));
  CHECK(max_diff(y, other->forward(x, ctx)) > 1e-6);
}

TEST_CASE("sparse/hyper: over many seeds the residual part estimates the attention over off-block keys", "[sparse]") {
  auto m = make_hyper("block_size: 4, sample_size: 3, min_seq_len: 4");
  auto& hyper = hyper_of(m);
  const std::int64_t n = 12, d = kDim / 2;
  const auto qs = 0.5 * torch::randn({1, 1, n, d}, torch::kFloat64),
             ks = 0.5 * torch::randn({1, 1, n, d}, torch::kFloat64), vs = torch::randn({1, 1, n, 3}, torch::kFloat64);
  auto numerator = torch::zeros({1, 1, n, 3}, torch::kFloat64), normaliser = torch::zeros({1, 1, n}, torch::kFloat64);
  const auto own_block = torch::arange(n).div(4, "floor").view({1, 1, n});  // the key block of each query
  const int seeds = 4000;
  for (int seed = 0; seed < seeds; ++seed) {
    const auto [o, lse] = hyper.residual_part(qs, ks, vs, hyper_samples(seed, 1, n, 3), own_block);
    numerator += lse.exp().unsqueeze(-1) * o;
    normaliser += lse.exp();
  }
  // Exact: exp(q_i k_j scale) over the keys outside i's block of 4.
  const auto blocks = torch::arange(n).div(4, "floor");
  const auto off = blocks.view({-1, 1}) != blocks.view({1, -1});
  const auto e = torch::matmul(qs * hyper.scale(), ks.transpose(-2, -1)).exp() * off.to(torch::kFloat64);
  const auto exact_normaliser = e.sum(-1);
  CHECK(((normaliser / seeds) / exact_normaliser - 1.0).abs().max().item<double>() < 0.05);
  CHECK(max_diff(numerator / normaliser.unsqueeze(-1), torch::matmul(e / exact_normaliser.unsqueeze(-1), vs)) < 0.05);
}

TEST_CASE("sparse/hyper: causal is exact below min_seq_len; the recursion never reads a later token", "[sparse]") {
  const auto x = torch::randn({2, 23, kDim}, torch::kFloat64);
  const auto ctx = attention_tests::context(0, 0, 0, true);
  auto exact = make_hyper("block_size: 4, sample_size: 4, min_seq_len: 23");
  auto dense = attention_tests::softmax_twin(hyper_of(exact));
  CHECK(max_diff(exact->forward(x, ctx), dense->forward(x, ctx)) <= 1e-12);
  auto m = make_hyper("lsh_projections: 3, block_size: 2, sample_size: 2, min_seq_len: 3");
  const auto y = m->forward(x, ctx);
  CHECK(max_diff(y, dense->forward(x, ctx)) > 1e-6);  // the approximation runs
  for (const std::int64_t t : {5, 11, 12, 20}) {
    INFO("token " << t << " perturbed");
    auto x2 = x.clone();
    x2.select(1, t).add_(torch::randn({2, kDim}, torch::kFloat64));
    const auto y2 = m->forward(x2, ctx);
    CHECK(max_diff(y.narrow(1, 0, t), y2.narrow(1, 0, t)) <= 1e-12);
    CHECK(max_diff(y.narrow(1, t, 23 - t), y2.narrow(1, t, 23 - t)) > 1e-6);
  }
  AttentionProbe probe;
  probe.enable();
  auto probed = ctx;
  probed.probe = &probe;
  CHECK(max_diff(m->forward(x, probed), y) <= 1e-12);
  const auto map = probe.records().at(0).probs;
  CHECK(map.triu(1).abs().max().item<double>() == 0.0);
  CHECK(max_diff(map.sum(-1), torch::ones({2, 2, 23}, torch::kFloat64)) <= 1e-12);
}

}  // namespace BLOCKLAB_TEST_FILE
