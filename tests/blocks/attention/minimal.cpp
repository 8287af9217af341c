// Property tests of attention/minimal (tag [variants]): each mode equals its formula written
// head by head (wqk: softmax(X W^h X^T / sqrt(d)) then W_V, W_O; wqk_novo: softmax(X_h W^h X_h^T /
// sqrt(d)) X_h; symmetric: W^h = L^h L^h^T on the head's slice), with a causal softmax written
// out by hand; wqk with W^h = W_Q^h W_K^h^T (and its rank-d form U = W_Q, V = W_K) is MHSA;
// symmetric logits are symmetric with a non-negative diagonal; wqk_novo outputs stay inside the
// input's range over the (visible) tokens; a mask component composes; the parameter counts per
// mode; bad options fail at build time.
#include "blocks/family_trains.h"
#include "tests/blocks/attention/helpers.h"

#include "blocks/attention/minimal.h"
#include "blocks/probe.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::attention_tests;

namespace {

constexpr std::int64_t kDim = 8, kHeads = 2, kHeadDim = 4;
const double kSqrtD = 2.0;  // sqrt(kHeadDim)

std::shared_ptr<MinimalAttentionImpl> make_minimal(const std::string& options, bool randomise = true) {
  auto m = std::dynamic_pointer_cast<MinimalAttentionImpl>(
      mixer_registry().create(yaml("{type: attention/minimal, heads: 2" + options + "}"), MixerArgs{kDim, 16}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  m->eval();
  if (randomise) {
    torch::NoGradGuard no_grad;
    for (auto& p : m->parameters()) p.normal_(0.0, 0.5);
  }
  return m;
}

// Row softmax of logits s [..., N, N] written out; causal: keys j > i get weight 0.
torch::Tensor softmax_by_hand(const torch::Tensor& s, bool causal) {
  const auto n = s.size(-1);
  auto visible = torch::ones({n, n}, s.options());
  if (causal) visible = visible.tril();
  const auto top = std::get<0>(s.max(-1, true));
  const auto e = torch::exp(s - top) * visible;
  return e / e.sum(-1, true);
}

torch::Tensor head_slice(const torch::Tensor& x, std::int64_t h) { return x.narrow(-1, h * kHeadDim, kHeadDim); }

// The heads' outputs [B, N, C] through W_O, by hand.
torch::Tensor output_by_hand(const MinimalAttentionImpl& m, const std::vector<torch::Tensor>& heads) {
  return torch::matmul(torch::cat(heads, -1), m.proj->weight.t()) + m.proj->bias;
}

// One forward with the probe on: the output and the recorded weights [B, h, N, N].
std::pair<torch::Tensor, torch::Tensor> forward_recorded(MinimalAttentionImpl& m, const torch::Tensor& x,
                                                         MixerContext ctx) {
  AttentionProbe probe;
  probe.enable();
  ctx.probe = &probe;
  const auto out = m.forward(x, ctx);
  REQUIRE(probe.records().size() == 1);
  CHECK(probe.records()[0].mixer == "attention/minimal");
  return {out, probe.records()[0].probs};
}

}  // namespace

TEST_CASE("minimal: wqk is softmax(X W^h X^T / sqrt(d)) per head, then W_V and W_O; causal by hand", "[variants]") {
  torch::manual_seed(1);
  for (std::int64_t rank : {0, 3}) {
    INFO("qk_rank " << rank);
    const auto m = make_minimal(", mode: wqk, qk_rank: " + std::to_string(rank));
    const auto x = randn({2, 6, kDim});
    const auto w = m->qk->weight;  // Linear rows: x -> x w^T
    const auto v = torch::matmul(x, m->value->weight.t()) + m->value->bias;
    for (bool causal : {false, true}) {
      INFO("causal " << causal);
      std::vector<torch::Tensor> heads, maps;
      for (std::int64_t h = 0; h < kHeads; ++h) {
        // The collapsed C x C matrix W^h (rank r: U^h V^h^T from the rows of [U | V]).
        const auto wh = rank == 0
                            ? w.narrow(0, h * kDim, kDim).t()
                            : torch::matmul(w.narrow(0, h * rank, rank).t(), w.narrow(0, (kHeads + h) * rank, rank));
        const auto s = torch::matmul(torch::matmul(x, wh), x.transpose(1, 2)) / kSqrtD;
        const auto a = softmax_by_hand(s, causal);
        maps.push_back(a);
        heads.push_back(torch::matmul(a, head_slice(v, h)));
      }
      const auto expected = output_by_hand(*m, heads);
      const auto [out, probs] = forward_recorded(*m, x, context(0, 0, 0, causal));
      CHECK(close(out, expected));
      CHECK(close(probs, torch::stack(maps, 1)));
      CHECK(close(m->forward(x, context(0, 0, 0, causal)), expected));  // the fused path
    }
  }
}

TEST_CASE("minimal: wqk with W^h = W_Q^h W_K^h^T (or U = W_Q, V = W_K at rank d) reproduces MHSA exactly",
          "[variants]") {
  torch::manual_seed(2);
  SoftmaxAttention ref(kDim, SoftmaxAttentionOptions().heads(kHeads).qkv_bias(false).fused(false));
  ref->to(torch::kFloat64);
  ref->eval();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : ref->parameters()) p.normal_(0.0, 0.5);
  }
  const auto wq = ref->qkv->weight.narrow(0, 0, kDim), wk = ref->qkv->weight.narrow(0, kDim, kDim);
  const auto wv = ref->qkv->weight.narrow(0, 2 * kDim, kDim);
  const auto x = randn({2, 7, kDim});
  const auto [q, k, v] = ref->project(x);
  const auto mhsa_logits = torch::matmul(q, k.transpose(-2, -1)) / kSqrtD;
  for (std::int64_t rank : {std::int64_t{0}, kHeadDim}) {
    INFO("qk_rank " << rank);
    const auto m = make_minimal(", mode: wqk, v_bias: false, qk_rank: " + std::to_string(rank));
    {
      torch::NoGradGuard no_grad;
      if (rank == 0) {
        for (std::int64_t h = 0; h < kHeads; ++h) {
          // W_Q^h = wq[h d:(h+1) d]^T [C, d]; W^h = W_Q^h W_K^h^T [C, C], stored transposed.
          const auto wh = torch::matmul(wq.narrow(0, h * kHeadDim, kHeadDim).t(), wk.narrow(0, h * kHeadDim, kHeadDim));
          m->qk->weight.narrow(0, h * kDim, kDim).copy_(wh.t());
        }
      } else {
        m->qk->weight.narrow(0, 0, kDim).copy_(wq);
        m->qk->weight.narrow(0, kDim, kDim).copy_(wk);
      }
      m->value->weight.copy_(wv);
      m->proj->weight.copy_(ref->proj->weight);
      m->proj->bias.copy_(ref->proj->bias);
    }
    CHECK(close(m->logits(x), mhsa_logits));
    for (bool causal : {false, true}) {
      INFO("causal " << causal);
      const auto ctx = context(0, 0, 0, causal);
      CHECK(close(m->forward(x, ctx), ref->forward(x, ctx)));
    }
  }
  // Rank d keeps MHSA's parameter count (MHSA without its q/k biases, W_V without bias).
  CHECK(parameter_count(*make_minimal(", mode: wqk, v_bias: false, qk_rank: 4")) == mhsa_count(kDim, false));
}

TEST_CASE("minimal: wqk_novo is A X on each head's slice, no W_V or W_O; outputs stay in the inputs' range",
          "[variants]") {
  torch::manual_seed(3);
  for (std::int64_t rank : {0, 2}) {
    INFO("qk_rank " << rank);
    const auto m = make_minimal(", mode: wqk_novo, qk_rank: " + std::to_string(rank));
    const auto x = randn({2, 7, kDim}) * 2.0;
    for (bool causal : {false, true}) {
      INFO("causal " << causal);
      std::vector<torch::Tensor> heads, maps;
      for (std::int64_t h = 0; h < kHeads; ++h) {
        const auto xh = head_slice(x, h);
        const auto s =
            rank == 0 ? torch::matmul(torch::matmul(xh, m->qk_weight[h]), xh.transpose(1, 2))
                      : torch::matmul(torch::matmul(xh, m->qk_u[h]), torch::matmul(xh, m->qk_v[h]).transpose(1, 2));
        const auto a = softmax_by_hand(s / kSqrtD, causal);
        maps.push_back(a);
        heads.push_back(torch::matmul(a, xh));
      }
      const auto [out, probs] = forward_recorded(*m, x, context(0, 0, 0, causal));
      CHECK(close(out, torch::cat(heads, -1)));
      CHECK(close(probs, torch::stack(maps, 1)));
      CHECK(close(m->forward(x, context(0, 0, 0, causal)), out));  // the fused path
      // Convex combinations: each output coordinate lies in [min, max] of that input coordinate
      // over the tokens it sees (all of them; causal: tokens j <= i).
      const auto lo = causal ? std::get<0>(torch::cummin(x, 1)) : std::get<0>(x.min(1, true)).expand_as(x);
      const auto hi = causal ? std::get<0>(torch::cummax(x, 1)) : std::get<0>(x.max(1, true)).expand_as(x);
      CHECK((out >= lo - 1e-12).all().item<bool>());
      CHECK((out <= hi + 1e-12).all().item<bool>());
    }
  }
}

TEST_CASE("minimal: symmetric logits X_h L L^T X_h^T / sqrt(d) are symmetric with diag >= 0; V and O by hand",
          "[variants]") {
  torch::manual_seed(4);
  const auto m = make_minimal(", mode: symmetric");
  const auto x = randn({2, 6, kDim});
  REQUIRE(m->tril.sizes() == torch::IntArrayRef({kHeads, kHeadDim * (kHeadDim + 1) / 2}));
  std::vector<torch::Tensor> logits;
  for (std::int64_t h = 0; h < kHeads; ++h) {
    // L^h from its lower triangle, row by row.
    auto l = torch::zeros({kHeadDim, kHeadDim}, torch::kFloat64);
    std::int64_t next = 0;
    for (std::int64_t r = 0; r < kHeadDim; ++r)
      for (std::int64_t c = 0; c <= r; ++c) l[r][c] = m->tril[h][next++].item<double>();
    const auto xh = head_slice(x, h);
    logits.push_back(torch::matmul(torch::matmul(xh, torch::matmul(l, l.t())), xh.transpose(1, 2)) / kSqrtD);
  }
  const auto s = m->logits(x);
  CHECK(close(s, torch::stack(logits, 1)));
  CHECK(close(s, s.transpose(-2, -1)));
  CHECK(torch::diagonal(s, 0, -2, -1).min().item<double>() >= 0.0);
  CHECK(m->lower_factor().triu(1).abs().max().item<double>() == 0.0);
  const auto v = torch::matmul(x, m->value->weight.t()) + m->value->bias;
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    std::vector<torch::Tensor> heads, maps;
    for (std::int64_t h = 0; h < kHeads; ++h) {
      const auto a = softmax_by_hand(logits[h], causal);
      maps.push_back(a);
      heads.push_back(torch::matmul(a, head_slice(v, h)));
    }
    const auto [out, probs] = forward_recorded(*m, x, context(0, 0, 0, causal));
    CHECK(close(out, output_by_hand(*m, heads)));
    CHECK(close(probs, torch::stack(maps, 1)));
    CHECK(close(m->forward(x, context(0, 0, 0, causal)), out));  // the fused path
  }
}

TEST_CASE("minimal: wqk_novo and symmetric start from the plain scaled dot product of the head's channels",
          "[variants]") {
  torch::manual_seed(5);
  const auto x = randn({2, 5, kDim});
  for (const auto& [options, width] : std::vector<std::pair<std::string, std::int64_t>>{
           {", mode: wqk_novo", kHeadDim}, {", mode: wqk_novo, qk_rank: 2", 2}, {", mode: symmetric", kHeadDim}}) {
    INFO(options);
    const auto m = make_minimal(options, /*randomise=*/false);
    std::vector<torch::Tensor> expected;
    for (std::int64_t h = 0; h < kHeads; ++h) {
      const auto xh = head_slice(x, h).narrow(-1, 0, width);  // rank r: the first r channels
      expected.push_back(torch::matmul(xh, xh.transpose(1, 2)) / kSqrtD);
    }
    CHECK(close(m->logits(x), torch::stack(expected, 1)));
  }
}

TEST_CASE("minimal: a mask component composes (softmax(S + M) for an additive mask)", "[variants]") {
  torch::manual_seed(6);
  const auto m = make_minimal(", mode: wqk_novo, mask: {type: mask/alibi}");
  REQUIRE(m->mask);
  const auto x = randn({2, 6, kDim});
  const auto ctx = context();
  const auto bias = m->mask->matrix(6, ctx);  // [h|1, N, N]
  const auto [out, probs] = forward_recorded(*m, x, ctx);
  CHECK(close(probs, softmax_by_hand(m->logits(x) + bias, false)));
  CHECK(close(m->forward(x, ctx), out));  // the fused path with the mask as its bias
}

TEST_CASE("minimal: every mode leaks no future under causal, ignores padding, and trains every parameter",
          "[variants]") {
  torch::manual_seed(7);
  for (const std::string options : {", mode: wqk", ", mode: wqk, qk_rank: 2", ", mode: wqk_novo",
                                    ", mode: wqk_novo, qk_rank: 1", ", mode: symmetric"}) {
    INFO(options);
    const auto m = make_minimal(options);
    const auto x = randn({2, 8, kDim});
    auto later = x.clone();
    later.narrow(1, 5, 3).normal_();
    const auto causal = context(0, 0, 0, true);
    const auto y = m->forward(x, causal), y_later = m->forward(later, causal);
    CHECK(close(y.narrow(1, 0, 5), y_later.narrow(1, 0, 5)));
    CHECK_FALSE(close(y.narrow(1, 5, 3), y_later.narrow(1, 5, 3)));
    auto padded = context();
    padded.lengths = torch::tensor({std::int64_t{8}, std::int64_t{5}}, torch::kLong);
    const auto p = m->forward(x, padded), p_later = m->forward(later, padded);
    CHECK(close(p[1].narrow(0, 0, 5), p_later[1].narrow(0, 0, 5)));
    m->train();
    const auto xg = x.clone().requires_grad_(true);
    (m->forward(xg, context()) * randn({2, 8, kDim})).sum().backward();
    for (const auto& param : m->named_parameters()) {
      INFO(param.key());
      REQUIRE(param.value().grad().defined());
      CHECK(param.value().grad().abs().sum().item<double>() > 0.0);
    }
  }
}

TEST_CASE("minimal: parameter counts per mode", "[variants]") {
  const std::int64_t c = kDim, h = kHeads, d = kHeadDim;
  const auto count = [](const std::string& options) { return parameter_count(*make_minimal(options, false)); };
  const auto v_and_o = 2 * (c * c + c);
  CHECK(count(", mode: wqk") == h * c * c + v_and_o);                     // 272
  CHECK(count(", mode: wqk, qk_rank: 3") == 2 * h * c * 3 + v_and_o);     // 240
  CHECK(count(", mode: wqk, v_bias: false") == h * c * c + v_and_o - c);  // 264
  CHECK(count(", mode: wqk_novo") == h * d * d);                          // 32 = C^2 / h
  CHECK(count(", mode: wqk_novo, qk_rank: 1") == 2 * h * d * 1);          // 16
  CHECK(count(", mode: symmetric") == h * d * (d + 1) / 2 + v_and_o);     // 164
}

TEST_CASE("minimal: options that cannot work fail at build time", "[variants]") {
  const auto build = [](const std::string& options) {
    return mixer_registry().create(yaml("{type: attention/minimal" + options + "}"), MixerArgs{kDim, 16});
  };
  CHECK_THROWS_AS(build(", heads: 3"), ConfigError);                               // 3 does not divide 8
  CHECK_THROWS_AS(build(", mode: collapsed"), ConfigError);                        // no such mode
  CHECK_THROWS_AS(build(", heads: 2, mode: symmetric, qk_rank: 2"), ConfigError);  // symmetric has no rank
  CHECK_THROWS_AS(build(", heads: 2, mode: wqk, qk_rank: 9"), ConfigError);        // rank above C
  CHECK_THROWS_AS(build(", heads: 2, mode: wqk_novo, qk_rank: 5"), ConfigError);   // rank above d
  CHECK_THROWS_AS(build(", heads: 2, qk_rank: -1"), ConfigError);
  CHECK_THROWS_AS(build(", heads: 2, mode: wqk_novo, proj_drop: 0.1"), ConfigError);  // no W_O
  CHECK_THROWS_AS(build(", heads: 2, attn_drop: 1.5"), ConfigError);
  CHECK_NOTHROW(build(", heads: 2, mode: wqk, qk_rank: 8"));
  CHECK_NOTHROW(build(", heads: 2, mode: wqk_novo, qk_rank: 4"));
}

TEST_CASE("attention/minimal: learns in a causal LM and in a ViT", "[trains]") {
  SECTION("causal LM") { family_trains::check_learns_lm("attention/minimal"); }
  SECTION("ViT") { family_trains::check_learns_vit("attention/minimal"); }
}

}  // namespace BLOCKLAB_TEST_FILE
