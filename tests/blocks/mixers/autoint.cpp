// mixer/autoint (AutoInt's interacting layer), tag [mixers]: the layer written field by field
// (activated Q, K, V, a softmax per head and query, the ReLU'd residual, ReLU, LayerNorm with the
// code's eps 1e-8), with qkv_act relu and none, causal and not, and the probe's weights; permuting
// the tokens permutes the output (no positions); with W_Q = 0 and b_Q = 0 the attention is uniform
// and every output is LN(ReLU(mean V + residual)) (the mean over the visible tokens when causal);
// the parameter count 4 C^2 + 4 C + 2 C; bad options fail at build time.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/mixers/autoint.h"
#include "blocks/probe.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::close;
using attention_tests::parameter_count;

namespace {

constexpr std::int64_t kDim = 8, kHeads = 2, kHeadDim = 4;

std::shared_ptr<AutoIntMixerImpl> make_autoint(const std::string& options, bool randomise = true) {
  auto m = std::dynamic_pointer_cast<AutoIntMixerImpl>(mixer_registry().create(
      parse_yaml("{type: mixer/autoint, heads: 2" + options + "}", "t.yaml"), MixerArgs{kDim, 64}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  m->eval();
  if (randomise) {
    torch::NoGradGuard no_grad;
    for (auto& p : m->parameters()) p.normal_(0.0, 0.5);
  }
  return m;
}

MixerContext context(bool causal = false, AttentionProbe* probe = nullptr) {
  MixerContext ctx;
  ctx.causal = causal;
  ctx.probe = probe;
  return ctx;
}

// LayerNorm over the width by hand: biased variance, eps 1e-8 (the official code's), scale and shift.
torch::Tensor layer_norm_by_hand(const AutoIntMixerImpl& m, const torch::Tensor& o) {
  const auto mean = o.mean(-1, true);
  const auto var = (o - mean).pow(2).mean(-1, true);
  return (o - mean) / torch::sqrt(var + 1e-8) * m.norm->weight + m.norm->bias;
}

// rows [from C, (from + 1) C) of the q|k|v Linear applied to e [N, C], activated.
torch::Tensor projected(const AutoIntMixerImpl& m, const torch::Tensor& e, std::int64_t from, bool relu) {
  const auto y =
      torch::matmul(e, m.qkv->weight.narrow(0, from * kDim, kDim).t()) + m.qkv->bias.narrow(0, from * kDim, kDim);
  return relu ? y.clamp_min(0.0) : y;
}

torch::Tensor residual(const AutoIntMixerImpl& m, const torch::Tensor& e) {
  return (torch::matmul(e, m.res->weight.t()) + m.res->bias).clamp_min(0.0);
}

struct ByHand {
  torch::Tensor out;      // [N, C]
  torch::Tensor weights;  // [h, N, N]
};

// The interacting layer on one sample E [N, C], query by query and head by head.
ByHand autoint_by_hand(const AutoIntMixerImpl& m, const torch::Tensor& e, bool relu, bool causal) {
  const auto n = e.size(0);
  const auto q = projected(m, e, 0, relu), k = projected(m, e, 1, relu), v = projected(m, e, 2, relu);
  auto heads = torch::zeros({n, kDim}, e.options());
  auto weights = torch::zeros({kHeads, n, n}, e.options());
  for (std::int64_t h = 0; h < kHeads; ++h) {
    const auto qh = q.narrow(1, h * kHeadDim, kHeadDim), kh = k.narrow(1, h * kHeadDim, kHeadDim);
    const auto vh = v.narrow(1, h * kHeadDim, kHeadDim);
    for (std::int64_t i = 0; i < n; ++i) {
      const auto seen = causal ? i + 1 : n;
      const auto logits = torch::matmul(kh.narrow(0, 0, seen), qh[i]) / std::sqrt(double(kHeadDim));  // [seen]
      const auto e_i = torch::exp(logits - logits.max());
      const auto a = e_i / e_i.sum();
      weights[h][i].narrow(0, 0, seen).copy_(a);
      heads[i].narrow(0, h * kHeadDim, kHeadDim).copy_(torch::matmul(a, vh.narrow(0, 0, seen)));
    }
  }
  return {layer_norm_by_hand(m, (heads + residual(m, e)).clamp_min(0.0)), weights};
}

}  // namespace

TEST_CASE("mixer/autoint: the interacting layer field by field, relu and none, causal and not", "[mixers]") {
  torch::manual_seed(1);
  for (const std::string act : {"relu", "none"}) {
    const auto m = make_autoint(", qkv_act: " + act);
    const auto x = torch::randn({2, 6, kDim}, torch::kFloat64);
    for (bool causal : {false, true}) {
      INFO("qkv_act " << act << ", causal " << causal);
      AttentionProbe probe;
      probe.enable();
      const auto recorded = m->forward(x, context(causal, &probe));  // the reference path
      const auto fused = m->forward(x, context(causal));
      REQUIRE(probe.records().size() == 1);
      CHECK(probe.records()[0].mixer == "mixer/autoint");
      for (std::int64_t b = 0; b < 2; ++b) {
        const auto expected = autoint_by_hand(*m, x[b], act == "relu", causal);
        CHECK(close(recorded[b], expected.out));
        CHECK(close(fused[b], expected.out));
        CHECK(close(probe.records()[0].probs[b], expected.weights));
      }
    }
  }
}

TEST_CASE("mixer/autoint: permuting the fields permutes the output (no positions)", "[mixers]") {
  torch::manual_seed(2);
  for (const std::string act : {"relu", "none"}) {
    INFO("qkv_act " << act);
    const auto m = make_autoint(", qkv_act: " + act);
    const auto x = torch::randn({2, 9, kDim}, torch::kFloat64);
    const auto perm = torch::randperm(9, torch::kLong);
    CHECK(close(m->forward(x.index_select(1, perm), context()), m->forward(x, context()).index_select(1, perm)));
  }
}

TEST_CASE("mixer/autoint: W_Q = 0, b_Q = 0 give uniform attention: out = LN(ReLU(mean V + residual))", "[mixers]") {
  torch::manual_seed(3);
  for (const std::string act : {"relu", "none"}) {
    const auto m = make_autoint(", qkv_act: " + act);
    {
      torch::NoGradGuard no_grad;
      m->qkv->weight.narrow(0, 0, kDim).zero_();
      m->qkv->bias.narrow(0, 0, kDim).zero_();
    }
    const std::int64_t n = 7;
    const auto x = torch::randn({2, n, kDim}, torch::kFloat64);
    for (bool causal : {false, true}) {
      INFO("qkv_act " << act << ", causal " << causal);
      AttentionProbe probe;
      probe.enable();
      const auto out = m->forward(x, context(causal, &probe));
      auto uniform = torch::full({n, n}, 1.0 / double(n), torch::kFloat64);
      if (causal)
        uniform = torch::ones({n, n}, torch::kFloat64).tril() / torch::arange(1, n + 1, torch::kFloat64).view({n, 1});
      CHECK(close(probe.records()[0].probs, uniform.expand({2, kHeads, n, n})));
      for (std::int64_t b = 0; b < 2; ++b) {
        const auto v = projected(*m, x[b], 2, act == "relu");
        // mean V over every token, or over tokens j <= i when causal
        const auto mean_v = causal ? v.cumsum(0) / torch::arange(1, n + 1, torch::kFloat64).view({n, 1})
                                   : v.mean(0, true).expand({n, kDim});
        CHECK(close(out[b], layer_norm_by_hand(*m, (mean_v + residual(*m, x[b])).clamp_min(0.0))));
      }
    }
  }
}

TEST_CASE("mixer/autoint: parameter count 4 d_in d_o + 4 d_o, plus the LayerNorm's 2 d_o", "[mixers]") {
  for (std::int64_t dim : {8, 12}) {
    const auto m = mixer_registry().create(parse_yaml("{type: mixer/autoint, heads: 2}", "t.yaml"), MixerArgs{dim, 16});
    CHECK(parameter_count(*m) == 4 * dim * dim + 4 * dim + 2 * dim);
  }
  CHECK(make_autoint("", false)->capabilities().weights == MixerCapabilities::Weights::normalised);
}

TEST_CASE("mixer/autoint: options that cannot work fail at build time", "[mixers]") {
  const auto build = [](const std::string& yaml) {
    return mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{kDim, 16});
  };
  CHECK_THROWS_AS(build("{type: mixer/autoint, heads: 3}"), ConfigError);        // 3 does not divide 8
  CHECK_THROWS_AS(build("{type: mixer/autoint, qkv_act: gelu}"), ConfigError);   // relu | none
  CHECK_THROWS_AS(build("{type: mixer/autoint, attn_drop: 1.5}"), ConfigError);  // a rate
  CHECK_THROWS_AS(build("{type: mixer/autoint, heads: 0}"), ConfigError);
  CHECK_THROWS_AS(build("{type: mixer/autoint, residual: false}"), ConfigError);  // no such option
  CHECK_NOTHROW(build("{type: mixer/autoint, heads: 4, qkv_act: none}"));
}

}  // namespace BLOCKLAB_TEST_FILE
