// recurrent/aaren (blocks/recurrent/aaren.h), tag [recurrent]: the prefix scan's output at every t
// equals softmax attention over the prefix 1..t computed explicitly (float64, 1e-9), for the
// parallel (Hillis-Steele) and the sequential scan, which agree; stable at large scores; shift
// invariance; combining chunk summaries equals the whole scan; the mixer equals its explicit
// map, and stepping equals the forward.
#include <catch2/catch.hpp>

#include "blocks/common/weight_decay.h"
#include "blocks/recurrent/aaren.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

torch::Tensor scan_output(const SoftmaxScan& s) { return s.w / s.u.unsqueeze(-1); }

// o_t = softmax(s_0..s_t) . v_0..t, one prefix at a time: s [B, h, N], v [B, h, N, d].
torch::Tensor explicit_prefix_attention(const torch::Tensor& s, const torch::Tensor& v) {
  std::vector<torch::Tensor> outs;
  for (std::int64_t t = 0; t < s.size(-1); ++t) {
    const auto p = torch::softmax(s.narrow(-1, 0, t + 1), -1);  // [B, h, t+1]
    outs.push_back(torch::matmul(p.unsqueeze(-2), v.narrow(-2, 0, t + 1)).squeeze(-2));
  }
  return torch::stack(outs, -2);
}

}  // namespace

TEST_CASE("aaren: the scan's output at every t is softmax attention over the prefix; both forms agree", "[recurrent]") {
  torch::manual_seed(0);
  for (std::int64_t n : {1, 2, 3, 8, 13, 64, 77}) {
    INFO(n << " tokens");
    const auto s = torch::randn({2, 3, n}, torch::kFloat64) * 4;
    const auto v = torch::randn({2, 3, n, 5}, torch::kFloat64);
    const auto wanted = explicit_prefix_attention(s, v);
    const SoftmaxScan p = softmax_prefix_scan(s, v, true), q = softmax_prefix_scan(s, v, false);
    CHECK(max_diff(scan_output(p), wanted) <= 1e-9);
    CHECK(max_diff(scan_output(q), wanted) <= 1e-9);
    CHECK(torch::equal(p.m, std::get<0>(torch::cummax(s, -1))));  // m_t = max(s_0..s_t)
    CHECK(max_diff(p.u, q.u) <= 1e-9);
    CHECK(max_diff(p.w, q.w) <= 1e-9);
  }
}

TEST_CASE("aaren: stable at large scores, invariant to a shift of all scores", "[recurrent]") {
  torch::manual_seed(1);
  const auto s = torch::randn({1, 2, 40}, torch::kFloat64) * 500;  // e^500 would overflow float32 and float64 sums
  const auto v = torch::randn({1, 2, 40, 3}, torch::kFloat64);
  const auto o = scan_output(softmax_prefix_scan(s, v, true));
  CHECK(torch::isfinite(o).all().item<bool>());
  CHECK(max_diff(o, explicit_prefix_attention(s, v)) <= 1e-9);
  const auto shifted = scan_output(softmax_prefix_scan(s + 1000.0, v, true));
  CHECK(max_diff(o, shifted) <= 1e-9);
  const auto s32 = s.to(torch::kFloat32), v32 = v.to(torch::kFloat32);
  CHECK(max_diff(scan_output(softmax_prefix_scan(s32, v32, true)).to(torch::kFloat64), o) <= 1e-4);
}

TEST_CASE("aaren: a chunk's summary combined with the next chunk's prefixes equals the whole scan", "[recurrent]") {
  torch::manual_seed(2);
  const auto s = torch::randn({2, 2, 30}, torch::kFloat64) * 3;
  const auto v = torch::randn({2, 2, 30, 4}, torch::kFloat64);
  const SoftmaxScan whole = softmax_prefix_scan(s, v, true);
  const SoftmaxScan first = softmax_prefix_scan(s.narrow(-1, 0, 11), v.narrow(-2, 0, 11), true);
  const SoftmaxScan second = softmax_prefix_scan(s.narrow(-1, 11, 19), v.narrow(-2, 11, 19), false);
  const SoftmaxScan summary{first.m.select(-1, 10).unsqueeze(-1), first.u.select(-1, 10).unsqueeze(-1),
                            first.w.select(-2, 10).unsqueeze(-2)};
  const SoftmaxScan joined = combine(summary, second);
  CHECK(max_diff(scan_output(joined), scan_output(whole).narrow(-2, 11, 19)) <= 1e-12);
  // The operator is associative: (a + b) + c == a + (b + c) on random triples.
  const auto triple = [](std::int64_t seed) {
    torch::manual_seed(seed);
    return SoftmaxScan{torch::randn({4}, torch::kFloat64) * 5, torch::rand({4}, torch::kFloat64) + 0.1,
                       torch::randn({4, 3}, torch::kFloat64)};
  };
  const auto a = triple(3), b = triple(4), c = triple(5);
  const auto left = combine(combine(a, b), c), right = combine(a, combine(b, c));
  CHECK(max_diff(left.m, right.m) == 0.0);
  CHECK(max_diff(left.u, right.u) <= 1e-12);
  CHECK(max_diff(left.w, right.w) <= 1e-12);
}

TEST_CASE("aaren: the mixer equals the explicit map of its learned query; stepping equals the forward", "[recurrent]") {
  torch::manual_seed(3);
  Aaren aaren(16, AarenOptions().heads(4));
  aaren->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    aaren->query.normal_(0.0, 1.0);  // a sharp map: the learned query matters
  }
  const auto x = torch::randn({2, 21, 16}, torch::kFloat64);
  MixerContext ctx;
  ctx.causal = true;
  const auto y = aaren->forward(x, ctx);
  // Written out: s_hi = q_h . k_hi / sqrt(4), row t = softmax(s_h0..s_ht), merged heads, W_O.
  const auto kv = aaren->kv->forward(x);
  const auto k = kv.narrow(-1, 0, 16).view({2, 21, 4, 4}).permute({0, 2, 1, 3});
  const auto v = kv.narrow(-1, 16, 16).view({2, 21, 4, 4}).permute({0, 2, 1, 3});
  const auto s = (k * aaren->query.view({1, 4, 1, 4})).sum(-1) / 2.0;
  const auto o = explicit_prefix_attention(s, v);
  const auto wanted = aaren->proj->forward(o.permute({0, 2, 1, 3}).reshape({2, 21, 16}));
  CHECK(max_diff(y, wanted) <= 1e-9);
  // The map: rows sum to 1, zero above the diagonal, and its product with v is the output.
  const auto w = aaren->weights(x);
  CHECK(max_diff(w.sum(-1), torch::ones({2, 4, 21}, torch::kFloat64)) <= 1e-12);
  CHECK(w.triu(1).abs().max().item<double>() == 0.0);
  CHECK(max_diff(torch::matmul(w, v), o) <= 1e-9);
  // Stepping.
  MixerState state = aaren->init_state(2, x.options());
  std::vector<torch::Tensor> ys;
  for (std::int64_t t = 0; t < 21; ++t) {
    auto st = aaren->step(x.select(1, t), state, ctx);
    ys.push_back(st.output);
    state = st.state;
  }
  CHECK(max_diff(torch::stack(ys, 1), y) <= 1e-9);
  // The sequential form is the same function.
  Aaren sequential(16, AarenOptions().heads(4).form("sequential"));
  sequential->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (auto& p : sequential->named_parameters()) p.value().copy_(aaren->named_parameters()[p.key()]);
  CHECK(max_diff(sequential->forward(x, ctx), y) <= 1e-9);
}

TEST_CASE("aaren: bad options are named; the query is not decayed", "[recurrent]") {
  const auto make = [](const std::string& yaml) {
    return mixer_registry().create(parse_yaml(yaml, "test"), MixerArgs{12, 16});
  };
  CHECK_THROWS_WITH(make("{type: recurrent/aaren, heads: 5}"), Catch::Contains("heads"));
  CHECK_THROWS_WITH(make("{type: recurrent/aaren, form: blelloch}"), Catch::Contains("form"));
  CHECK(make("{type: recurrent/aaren, heads: 3}")->capabilities().recurrent);
  // The learned query takes no weight decay (with the rank <= 1 biases).
  const auto no_decay = no_weight_decay_names(*make("{type: recurrent/aaren, heads: 3}"));
  CHECK(no_decay.count("query") == 1);
  CHECK(no_decay.count("kv.weight") == 0);
}

}  // namespace BLOCKLAB_TEST_FILE
