// The linear attention core (blocks/attention/parts/linear_core.h), tag [linear]: the parallel,
// chunked and recurrent forms compute the same function (float64, <= 1e-9) with and without
// decay and normaliser, causal and not, at lengths that are not multiples of the chunk and
// cross several chunks; each equals the formula written out by hand; gradients agree.
#include <catch2/catch.hpp>

#include "blocks/attention/parts/linear_core.h"
#include "tests/blocks/linear/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::linear_tests;

namespace {

constexpr std::int64_t kBatch = 2, kHeads = 3, kKeyDim = 4, kValueDim = 5;

torch::Tensor randn(std::vector<std::int64_t> shape) { return torch::randn(shape, torch::kFloat64); }

// Per-head decays lambda = 0.5, 0.9, 0.99 (strong to weak), as logs.
torch::Tensor log_decays() { return torch::tensor({0.5, 0.9, 0.99}, torch::kFloat64).log(); }

// A core with a fixed decay (or none), for the tests.
struct TestCore : LinearCore {
  TestCore(LinearCoreConfig c, torch::Tensor decay)
      : LinearCore("test/linear", std::move(c)), decay_(std::move(decay)) {}
  torch::Tensor log_decay() const override { return decay_; }
  torch::Tensor decay_;
};

struct Terms {
  torch::Tensor q, k, v;
};
Terms terms(std::int64_t n, bool positive = false) {
  Terms t{randn({kBatch, kHeads, n, kKeyDim}), randn({kBatch, kHeads, n, kKeyDim}),
          randn({kBatch, kHeads, n, kValueDim})};
  if (positive) t.q = t.q.exp(), t.k = t.k.exp();  // positive features, as phi gives
  return t;
}

// o_i = sum_j M_ij (q_i . k_j) v_j by loops.
torch::Tensor by_hand(const Terms& t, const torch::Tensor& log_decay, bool causal) {
  const auto n = t.q.size(2);
  auto o = torch::zeros({kBatch, kHeads, n, kValueDim}, torch::kFloat64);
  for (std::int64_t h = 0; h < kHeads; ++h)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        if (causal && j > i) continue;
        const double m = log_decay.defined() ? std::exp(log_decay[h].item<double>() * std::abs(i - j)) : 1.0;
        const auto score = (t.q.select(1, h).select(1, i) * t.k.select(1, h).select(1, j)).sum(-1, true);  // [B, 1]
        o.select(1, h).select(1, i) += m * score * t.v.select(1, h).select(1, j);
      }
  return o;
}

// Steps the core through the sequence: [B, h, N, e].
torch::Tensor stepped(TestCore& core, const Terms& t) {
  auto s = core.initial_state(kBatch, kHeads, kKeyDim, kValueDim, t.q.options());
  std::vector<torch::Tensor> out;
  for (std::int64_t i = 0; i < t.q.size(2); ++i) {
    auto [o, next] = core.attend_step(t.q.select(2, i), t.k.select(2, i), t.v.select(2, i), s);
    CHECK(next.sizes() == s.sizes());  // the state does not grow
    out.push_back(o);
    s = next;
  }
  return torch::stack(out, 2);
}

}  // namespace

TEST_CASE("linear core: each form equals the masked sum written out by hand", "[linear]") {
  torch::manual_seed(1);
  for (bool causal : {true, false})
    for (bool decay : {false, true}) {
      INFO("causal " << causal << ", decay " << decay);
      const auto t = terms(6);
      const auto logs = decay ? log_decays() : torch::Tensor();
      const auto expected = by_hand(t, logs, causal);
      CHECK(max_diff(linear_parallel(t.q, t.k, t.v, logs, causal), expected) <= 1e-12);
      CHECK(max_diff(linear_chunked(t.q, t.k, t.v, logs, causal, 4), expected) <= 1e-12);
    }
}

TEST_CASE("linear core: chunked equals parallel at lengths that are not multiples of the chunk", "[linear]") {
  torch::manual_seed(2);
  for (std::int64_t n : {1, 5, 16, 37, 130})
    for (std::int64_t chunk : {1, 4, 16, 64})
      for (bool causal : {true, false})
        for (bool decay : {false, true}) {
          INFO("n " << n << ", chunk " << chunk << ", causal " << causal << ", decay " << decay);
          const auto t = terms(n);
          const auto logs = decay ? log_decays() : torch::Tensor();
          CHECK(max_diff(linear_chunked(t.q, t.k, t.v, logs, causal, chunk),
                         linear_parallel(t.q, t.k, t.v, logs, causal)) <= 1e-9);
        }
}

TEST_CASE("linear core: the recurrent form equals the parallel and chunked forms, normalised or not", "[linear]") {
  torch::manual_seed(3);
  for (bool normalise : {false, true})
    for (bool decay : {false, true}) {
      INFO("normalise " << normalise << ", decay " << decay);
      LinearCoreConfig parallel_config{"parallel", 8, normalise, 1e-6, false};
      LinearCoreConfig chunked_config{"chunked", 8, normalise, 1e-6, false};
      const auto logs = decay ? log_decays() : torch::Tensor();
      TestCore parallel(parallel_config, logs), chunked(chunked_config, logs);
      const auto t = terms(29, normalise);
      MixerContext ctx;
      ctx.causal = true;
      const auto reference = parallel.attend(t.q, t.k, t.v, ctx);
      CHECK(max_diff(chunked.attend(t.q, t.k, t.v, ctx), reference) <= 1e-9);
      CHECK(max_diff(stepped(chunked, t), reference) <= 1e-9);
    }
}

TEST_CASE("linear core: the normaliser divides by the row sums of the implicit weights", "[linear]") {
  torch::manual_seed(4);
  TestCore core({"chunked", 4, true, 1e-6, false}, {});
  const auto t = terms(9, true);
  for (bool causal : {false, true}) {
    MixerContext ctx;
    ctx.causal = causal;
    const auto a = linear_weights(t.q, t.k, {}, causal);
    CHECK(max_diff(core.attend(t.q, t.k, t.v, ctx), a.matmul(t.v) / (a.sum(-1, true) + 1e-6)) <= 1e-12);
  }
}

TEST_CASE("linear core: the decay matrix is lambda^(i-j) below the diagonal, lambda^|i-j| when not causal",
          "[linear]") {
  const auto logs = log_decays();
  const auto causal = linear_decay_matrix(logs, 5, true), both = linear_decay_matrix(logs, 5, false);
  CHECK(causal.sizes() == torch::IntArrayRef({3, 5, 5}));
  CHECK(causal[1][4][1].item<double>() == Approx(std::pow(0.9, 3)).epsilon(1e-14));
  CHECK(causal[1][1][4].item<double>() == 0.0);
  CHECK(both[2][1][4].item<double>() == Approx(std::pow(0.99, 3)).epsilon(1e-14));
  CHECK(torch::equal(causal.diagonal(0, 1, 2), torch::ones({3, 5}, torch::kFloat64)));
}

TEST_CASE("linear core: gradients through the chunked form equal the parallel form's", "[linear]") {
  // A constant decay (a buffer, as RetNet's and Lightning's) or none takes the chunked form's
  // own backward (three more chunked passes); a decay with a gradient goes through autograd.
  torch::manual_seed(5);
  enum class Decay { none, constant, learned };
  for (bool causal : {true, false})
    for (Decay decay : {Decay::none, Decay::constant, Decay::learned})
      for (std::int64_t n : {1, 8, 21}) {
        INFO("causal " << causal << ", decay " << static_cast<int>(decay) << ", N " << n);
        auto t = terms(n);
        std::vector<torch::Tensor> inputs{t.q, t.k, t.v};
        for (auto& x : inputs) x.requires_grad_(true);
        torch::Tensor logs;
        if (decay != Decay::none) logs = log_decays().requires_grad_(decay == Decay::learned);
        if (decay == Decay::learned) inputs.push_back(logs);
        const auto weights = randn({kBatch, kHeads, n, kValueDim});
        const auto grads = [&](const torch::Tensor& out) {
          return torch::autograd::grad({(out * weights).sum()}, inputs);
        };
        const auto a = grads(linear_chunked(inputs[0], inputs[1], inputs[2], logs, causal, 8));
        const auto b = grads(linear_parallel(inputs[0], inputs[1], inputs[2], logs, causal));
        for (std::size_t i = 0; i < a.size(); ++i) CHECK(max_diff(a[i], b[i]) <= 1e-9);
      }
}

TEST_CASE("linear core: across several tiles (1,024 tokens each), outputs and gradients equal the parallel form's",
          "[linear]") {
  // Chunk 256: tiles of 4 chunks; 2,100 tokens are 3 tiles, the last one padded.
  torch::manual_seed(7);
  const std::int64_t n = 2100;
  for (bool causal : {true, false})
    for (bool decay : {false, true}) {
      INFO("causal " << causal << ", decay " << decay);
      auto t = terms(n, /*positive=*/true);
      std::vector<torch::Tensor> inputs{t.q / 8, t.k / 8, t.v};
      for (auto& x : inputs) x.requires_grad_(true);
      const auto logs = decay ? log_decays() : torch::Tensor();
      const auto weights = randn({kBatch, kHeads, n, kValueDim});
      const auto run = [&](const torch::Tensor& out) {
        auto g = torch::autograd::grad({(out * weights).sum()}, inputs);
        g.push_back(out.detach());
        return g;
      };
      const auto a = run(linear_chunked(inputs[0], inputs[1], inputs[2], logs, causal, 256));
      const auto b = run(linear_parallel(inputs[0], inputs[1], inputs[2], logs, causal));
      for (std::size_t i = 0; i < a.size(); ++i)
        CHECK(max_diff(a[i], b[i]) <= 1e-9 * (1 + b[i].abs().max().item<double>()));
    }
}

TEST_CASE("linear core: the chunked form's backward is differentiable again (second derivatives agree)", "[linear]") {
  torch::manual_seed(6);
  const auto logs = log_decays();
  for (std::int64_t n : {13, 1100}) {  // one tile (autograd's backward), two tiles (the recomputing one)
    INFO("N " << n);
    auto t = terms(n, /*positive=*/true);
    t.q = (t.q / 8).requires_grad_(true), t.k = t.k / 8;
    const auto second = [&](const torch::Tensor& out) {
      const auto g = torch::autograd::grad({out.pow(2).sum()}, {t.q}, {}, /*retain_graph=*/true, /*create_graph=*/true);
      return torch::autograd::grad({g[0].pow(2).sum()}, {t.q})[0];
    };
    const auto expected = second(linear_parallel(t.q, t.k, t.v, logs, true));
    CHECK(max_diff(second(linear_chunked(t.q, t.k, t.v, logs, true, 256)), expected) <=
          1e-9 * (1 + expected.abs().max().item<double>()));
  }
}

TEST_CASE("linear core: padded keys change no valid output; the probe records rows that sum to 1", "[linear]") {
  torch::manual_seed(6);
  TestCore core({"chunked", 4, true, 1e-6, false}, {});
  auto t = terms(10, true);
  MixerContext ctx;
  ctx.lengths = torch::tensor({10, 6}, torch::kLong);
  AttentionProbe probe;
  probe.enable();
  ctx.probe = &probe;
  const auto a = core.attend(t.q, t.k, t.v, ctx);
  auto padded = t;
  padded.k = t.k.clone(), padded.v = t.v.clone();
  padded.k[1].narrow(1, 6, 4).fill_(7.0);
  padded.v[1].narrow(1, 6, 4).fill_(-3.0);
  const auto b = core.attend(padded.q, padded.k, padded.v, ctx);
  CHECK(max_diff(a[1].narrow(1, 0, 6), b[1].narrow(1, 0, 6)) == 0.0);
  REQUIRE(probe.records().size() == 2);
  const auto& w = probe.records()[0].probs;
  CHECK(max_diff(w.sum(-1), torch::ones({kBatch, kHeads, 10}, torch::kFloat64)) <= 1e-12);
  CHECK(w[1].narrow(2, 6, 4).abs().max().item<double>() == 0.0);  // no weight on padded keys
}

TEST_CASE("linear core: per-token decays (Mamba-2's SSD): chunked == parallel == recurrent == by hand, with gradients",
          "[linear]") {
  // log a_t = -softplus(.) < 0 per batch, head and token; M_ij = prod_{j < l <= i} a_l.
  torch::manual_seed(8);
  for (std::int64_t n : {1, 7, 21, 1100}) {  // 1,100 tokens at chunk 256: two tiles, the last padded
    INFO("N " << n);
    auto t = terms(n, /*positive=*/true);
    std::vector<torch::Tensor> inputs{t.q / 8, t.k / 8, t.v,
                                      -torch::nn::functional::softplus(randn({kBatch, kHeads, n}))};
    for (auto& x : inputs) x.requires_grad_(true);
    const auto& logs = inputs[3];
    const auto weights = randn({kBatch, kHeads, n, kValueDim});
    const auto run = [&](const torch::Tensor& out) {
      auto g = torch::autograd::grad({(out * weights).sum()}, inputs);
      g.push_back(out.detach());
      return g;
    };
    const auto parallel = linear_parallel(inputs[0], inputs[1], inputs[2], logs, true);
    const auto expected = run(parallel);
    const auto chunked = run(linear_chunked(inputs[0], inputs[1], inputs[2], logs, true, n > 100 ? 256 : 4));
    for (std::size_t i = 0; i < chunked.size(); ++i)
      CHECK(max_diff(chunked[i], expected[i]) <= 1e-9 * (1 + expected[i].abs().max().item<double>()));
    if (n > 21) continue;
    // The weights written out, and the recurrence S_t = a_t S_{t-1} + k_t v_t^T stepped.
    const auto l = logs.detach();
    auto m = torch::zeros({kBatch, kHeads, n, n}, torch::kFloat64);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j) m.select(2, i).select(2, j).copy_(l.narrow(2, j + 1, i - j).sum(-1).exp());
    const auto by_hand = torch::matmul(torch::matmul(inputs[0], inputs[1].transpose(-1, -2)).detach() * m, t.v);
    CHECK(max_diff(parallel.detach(), by_hand) <= 1e-12);
    auto s = torch::zeros({kBatch, kHeads, kKeyDim, kValueDim}, torch::kFloat64);
    for (std::int64_t i = 0; i < n; ++i) {
      auto [o, next] = linear_recurrent_step(inputs[0].detach().select(2, i), inputs[1].detach().select(2, i),
                                             t.v.select(2, i), s, l.select(2, i));
      CHECK(max_diff(o, by_hand.select(2, i)) <= 1e-12);
      s = next;
    }
  }
  CHECK_THROWS_WITH(
      linear_chunked(randn({1, 1, 3, 2}), randn({1, 1, 3, 2}), randn({1, 1, 3, 2}), randn({1, 1, 3}), false, 2),
      Catch::Contains("causal only"));
}

}  // namespace BLOCKLAB_TEST_FILE
