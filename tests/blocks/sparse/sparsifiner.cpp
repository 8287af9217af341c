// Property tests of sparse/sparsifiner (tag [sparse]): keep_rate 1 is softmax attention; each
// body row keeps exactly k keys and prefix rows every key; the output equals a dense oracle whose
// mask is recomputed here from the predictor's weights by the paper's formula; the predictor
// learns only from the reconstruction loss, whose value and gradients equal a by-hand MSE.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "blocks/probe.h"
#include "blocks/sparse/sparsifiner.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kDim = 16, kMaxTokens = 32;

SparsifinerAttentionImpl& sparsifiner(TokenMixer& m) { return dynamic_cast<SparsifinerAttentionImpl&>(*m); }

TokenMixer build_sparsifiner(const std::string& yaml) {
  auto m = mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{kDim, kMaxTokens});
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

// approx = softmax(q W_cq (k W_ck)^T P_n / sqrt(h)) P_back^T over every row, [B, h, N, N], from
// the module's weights (q, k [B, h, N, d]).
torch::Tensor paper_approx(SparsifinerAttentionImpl& m, const torch::Tensor& q, const torch::Tensor& k) {
  const auto n = k.size(2);
  const auto q_low = torch::linear(q, m.proj_c_q->weight, m.proj_c_q->bias);
  const auto k_low = torch::linear(k, m.proj_c_k->weight, m.proj_c_k->bias);
  const auto k_hat = torch::matmul(k_low.transpose(-2, -1), m.proj_n.slice(0, 0, n));
  const auto coef = torch::softmax(torch::matmul(q_low, k_hat) / std::sqrt(double(q.size(1))), -1);
  return torch::matmul(coef, m.proj_back_n.slice(0, 0, n).t());
}

// M: the top ceil(keep_rate N) entries of each approx row; the prefix rows all ones.
torch::Tensor paper_mask(SparsifinerAttentionImpl& m, const torch::Tensor& q, const torch::Tensor& k,
                         std::int64_t prefix) {
  const auto approx = paper_approx(m, q, k);
  const auto kept =
      std::min(k.size(2), static_cast<std::int64_t>(std::ceil(m.options().keep_rate() * double(k.size(2)))));
  auto mask = torch::zeros(approx.sizes(), torch::kBool).scatter(-1, std::get<1>(approx.topk(kept, -1)), true);
  mask.narrow(2, 0, prefix).fill_(true);
  return mask;
}

// The dense oracle: softmax(q k^T / sqrt(d)) with -inf outside M, then the output projection.
torch::Tensor paper_output(SparsifinerAttentionImpl& m, const torch::Tensor& x, std::int64_t prefix) {
  const auto [q, k, v] = m.project(x);
  const auto logits = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(q.size(3)));
  const auto mask = paper_mask(m, q, k, prefix);
  return m.merge(torch::matmul(torch::softmax(logits.masked_fill(mask.logical_not(), kMinusInf), -1), v), x);
}

// recon_weight * the mean over (batch, head, body row) of sum_j (approx - softmax(q k^T / sqrt(d)))^2,
// by autograd.
torch::Tensor paper_recon_loss(SparsifinerAttentionImpl& m, const torch::Tensor& x, std::int64_t prefix) {
  auto [q, k, v] = m.project(x);
  q = q.detach(), k = k.detach();
  const auto body = q.size(2) - prefix;
  const auto teacher = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(q.size(3))), -1);
  const auto diff = (paper_approx(m, q, k) - teacher).narrow(2, prefix, body);
  return m.options().recon_weight() * diff.pow(2).sum(-1).mean();
}

std::vector<torch::Tensor> predictor_parameters(SparsifinerAttentionImpl& m) {
  return {m.proj_c_q->weight, m.proj_c_q->bias, m.proj_c_k->weight, m.proj_c_k->bias, m.proj_n, m.proj_back_n};
}

void clear_grads(torch::nn::Module& m) {
  for (auto& p : m.parameters()) p.mutable_grad() = torch::Tensor();
}

torch::Tensor probe_map(TokenMixer& m, const torch::Tensor& x, MixerContext ctx) {
  AttentionProbe probe;
  probe.enable();
  ctx.probe = &probe;
  ctx.layer = 2;
  m->forward(x, ctx);
  REQUIRE(probe.records().size() == 1);
  CHECK(probe.records()[0].mixer == "sparse/sparsifiner");
  return probe.records()[0].probs;
}

}  // namespace

TEST_CASE("sparse/sparsifiner: keep_rate 1 is softmax attention from the same weights", "[sparse]") {
  torch::manual_seed(41);
  auto m = build_sparsifiner("{type: sparse/sparsifiner, heads: 2, keep_rate: 1.0, query_chunk: 3}");
  auto ref = attention_tests::softmax_twin(sparsifiner(m));
  for (const auto& ctx : {attention_tests::context(3, 3, 1), attention_tests::context(0, 0, 0)}) {
    const auto x = torch::randn({2, 10, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, ctx), ref->forward(x, ctx)) <= 1e-12);
  }
}

TEST_CASE("sparse/sparsifiner: each body row keeps exactly k keys, prefix rows every key", "[sparse]") {
  torch::manual_seed(42);
  auto m = build_sparsifiner("{type: sparse/sparsifiner, heads: 2, query_chunk: 4}");
  for (const std::int64_t prefix : {0, 1, 2}) {
    INFO(prefix << " prefix tokens");
    const auto ctx = attention_tests::context(3, 5, prefix);
    const auto n = prefix + 15, kept = std::int64_t(std::ceil(0.25 * double(n)));
    const auto map = probe_map(m, torch::randn({2, n, kDim}, torch::kFloat64), ctx);
    REQUIRE(map.sizes() == torch::IntArrayRef({2, 2, n, n}));
    const auto nonzero = (map > 0).sum(-1);  // [B, h, N]
    CHECK((nonzero.narrow(2, prefix, n - prefix) == kept).all().item<bool>());
    CHECK((nonzero.narrow(2, 0, prefix) == n).all().item<bool>());
    CHECK(max_diff(map.sum(-1), torch::ones({2, 2, n}, torch::kFloat64)) <= 1e-12);
  }
}

TEST_CASE("sparse/sparsifiner: equals the dense oracle whose mask is the paper's formula on its weights", "[sparse]") {
  torch::manual_seed(43);
  for (const std::string chunk : {"1", "3", "64"}) {
    auto m = build_sparsifiner("{type: sparse/sparsifiner, heads: 2, keep_rate: 0.3, query_chunk: " + chunk + "}");
    auto& s = sparsifiner(m);
    {  // P_n of std 1 instead of 0.02: coef far from uniform, so the top-k depends on its nonlinearity
      torch::NoGradGuard no_grad;
      s.proj_n.mul_(50.0);
    }
    for (const auto& ctx : {attention_tests::context(4, 4, 1), attention_tests::context(0, 0, 0)}) {
      INFO("query_chunk " << chunk << ", prefix " << ctx.prefix_tokens);
      const auto n = ctx.has_grid() ? 17 : 11;
      const auto x = torch::randn({2, n, kDim}, torch::kFloat64);
      CHECK(max_diff(m->forward(x, ctx), paper_output(s, x, ctx.prefix_tokens)) <= 1e-9);
      // The probe's map is the oracle's weights: zero exactly outside M.
      const auto [q, k, v] = s.project(x);
      const auto outside = paper_mask(s, q, k, ctx.prefix_tokens).logical_not();
      CHECK(probe_map(m, x, ctx).masked_select(outside).abs().max().item<double>() == 0.0);
    }
  }
  // Parameters: MHSA plus the predictor, 2 (d d / r_c + d / r_c) + 2 max_tokens (max_tokens / r_n).
  auto m = build_sparsifiner("{type: sparse/sparsifiner, heads: 2}");
  const std::int64_t d = kDim / 2;
  CHECK(attention_tests::parameter_count(*m) ==
        attention_tests::mhsa_count(kDim, true) + 2 * (d * d / 2 + d / 2) + 2 * kMaxTokens * (kMaxTokens / 8));
}

TEST_CASE("sparse/sparsifiner: the task loss gives the predictor no gradient, the reconstruction loss does",
          "[sparse]") {
  torch::manual_seed(44);
  auto m = build_sparsifiner("{type: sparse/sparsifiner, heads: 2, query_chunk: 5}");
  auto& s = sparsifiner(m);
  m->train();
  const auto ctx = attention_tests::context(4, 4, 1);
  const auto x = torch::randn({2, 17, kDim}, torch::kFloat64);
  (m->forward(x, ctx) * torch::randn({2, 17, kDim}, torch::kFloat64)).sum().backward();
  for (const auto& p : predictor_parameters(s)) {
    REQUIRE(p.grad().defined());
    CHECK(p.grad().abs().max().item<double>() == 0.0);
  }
  CHECK(s.qkv->weight.grad().abs().sum().item<double>() > 0.0);
  (void)s.take_auxiliary_loss();
  clear_grads(*m);
  m->forward(x, ctx);
  s.take_auxiliary_loss().backward();
  for (const auto& p : predictor_parameters(s)) CHECK(p.grad().abs().sum().item<double>() > 0.0);
  // The predictor's inputs are detached: the loss trains the predictor alone.
  CHECK((!s.qkv->weight.grad().defined() || s.qkv->weight.grad().abs().max().item<double>() == 0.0));
}

TEST_CASE(
    "sparse/sparsifiner: the reconstruction loss and its gradients are the by-hand MSE, 0 iff approx is the "
    "dense attention",
    "[sparse]") {
  torch::manual_seed(45);
  auto m = build_sparsifiner("{type: sparse/sparsifiner, heads: 2, recon_weight: 0.5, query_chunk: 4}");
  auto& s = sparsifiner(m);
  const auto params = predictor_parameters(s);
  m->train();
  for (const auto& ctx : {attention_tests::context(3, 3, 1), attention_tests::context(0, 0, 0)}) {
    INFO("prefix " << ctx.prefix_tokens);
    const auto x = torch::randn({2, 10, kDim}, torch::kFloat64);
    clear_grads(*m);
    m->forward(x, ctx);
    const auto loss = s.take_auxiliary_loss();
    CHECK(!s.take_auxiliary_loss().defined());  // taken once
    const auto grads = torch::autograd::grad({loss}, params);
    const auto want = paper_recon_loss(s, x, ctx.prefix_tokens);
    const auto want_grads = torch::autograd::grad({want}, params);
    CHECK(want.item<double>() > 1e-3);
    CHECK(std::abs(loss.item<double>() - want.item<double>()) <= 1e-12 * want.item<double>());
    for (std::size_t i = 0; i < params.size(); ++i) CHECK(max_diff(grads[i], want_grads[i]) <= 1e-12);
  }
  {  // Equal keys make every dense row uniform, and a constant basis 1/N makes every approx row 1/N.
    torch::NoGradGuard no_grad;
    s.qkv->weight.narrow(0, kDim, kDim).zero_();
    s.qkv->bias.narrow(0, kDim, kDim).zero_();
    s.proj_back_n.fill_(1.0 / 10);
  }
  const auto ctx = attention_tests::context(3, 3, 1);
  const auto x = torch::randn({2, 10, kDim}, torch::kFloat64);
  m->forward(x, ctx);
  CHECK(s.take_auxiliary_loss().item<double>() <= 1e-28);
  {
    torch::NoGradGuard no_grad;
    s.proj_back_n[0][3] += 0.01;  // approx no longer the dense rows
  }
  m->forward(x, ctx);
  const double perturbed = s.take_auxiliary_loss().item<double>();
  CHECK(perturbed > 1e-8);
  CHECK(std::abs(perturbed - paper_recon_loss(s, x, 1).item<double>()) <= 1e-12 * perturbed);
  // No loss in evaluation, nor with recon_weight 0.
  m->eval();
  m->forward(x, ctx);
  CHECK(!s.take_auxiliary_loss().defined());
  auto off = build_sparsifiner("{type: sparse/sparsifiner, heads: 2, recon_weight: 0}");
  off->train();
  off->forward(x, ctx);
  CHECK(!sparsifiner(off).take_auxiliary_loss().defined());
}

TEST_CASE("sparse/sparsifiner: the query chunks change neither the output, nor the loss, nor its gradients",
          "[sparse]") {
  const auto run = [](const std::string& chunk) {
    torch::manual_seed(46);
    auto m = build_sparsifiner("{type: sparse/sparsifiner, heads: 2, query_chunk: " + chunk + "}");
    m->train();
    const auto x = torch::randn({2, 17, kDim}, torch::kFloat64);
    const auto y = m->forward(x, attention_tests::context(4, 4, 1));
    const auto loss = sparsifiner(m).take_auxiliary_loss();
    const auto grads = torch::autograd::grad({loss}, predictor_parameters(sparsifiner(m)));
    return std::make_tuple(y, loss, grads);
  };
  const auto [y1, loss1, grads1] = run("1");
  const auto [y2, loss2, grads2] = run("7");
  CHECK(max_diff(y1, y2) <= 1e-12);
  CHECK(std::abs(loss1.item<double>() - loss2.item<double>()) <= 1e-12 * loss2.item<double>());
  for (std::size_t i = 0; i < grads1.size(); ++i) CHECK(max_diff(grads1[i], grads2[i]) <= 1e-12);
}

TEST_CASE("sparse/sparsifiner: options and inputs it cannot take fail clearly", "[sparse]") {
  const auto fails_with = [](const std::string& yaml, const std::string& message) {
    try {
      build_sparsifiner(yaml);
      FAIL("no error for " << yaml);
    } catch (const ConfigError& e) {
      CHECK_THAT(e.what(), Catch::Contains(message));
    }
  };
  fails_with("{type: sparse/sparsifiner, keep_rate: 0}", "keep_rate must be in (0, 1]");
  fails_with("{type: sparse/sparsifiner, heads: 2, reduce_c: 9}", "reduce_c must be at most the head width 8");
  CHECK_THROWS_AS(mixer_registry().create(parse_yaml("{type: sparse/sparsifiner}", "t.yaml"), MixerArgs{kDim, 0}),
                  ConfigError);
  auto m = build_sparsifiner("{type: sparse/sparsifiner, heads: 2}");
  CHECK_THROWS_WITH(m->forward(torch::randn({1, 5, kDim}, torch::kFloat64), attention_tests::context(0, 0, 0, true)),
                    Catch::Contains("no causal form"));
  CHECK_THROWS_WITH(m->forward(torch::randn({1, kMaxTokens + 1, kDim}, torch::kFloat64), attention_tests::context()),
                    Catch::Contains("max_tokens = 32"));
}

}  // namespace BLOCKLAB_TEST_FILE
