// mixer/ponet (PoNet's pooling token mixer), tag [mixers]: the formula token by token from the
// mixer's own weights (global attention pooling with the keys as values, segment maxima over
// floor(N / S) + 1 tokens, max pooling of 3); with the local projection zero, permuting tokens
// inside one segment permutes the output; one segment gives every token the same segment term;
// padded tokens never change the valid ones and come out zero; no causal form. (It learns in the
// sequence classifier and the ViT: tests/blocks/trains.cpp.)
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/mixers/ponet.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

constexpr std::int64_t kDim = 8;

std::shared_ptr<PoNetMixerImpl> make_ponet(const std::string& yaml) {
  auto m = std::dynamic_pointer_cast<PoNetMixerImpl>(
      mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{kDim, 64}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.normal_(0.0, 0.5);
  return m;
}

bool close(const torch::Tensor& a, const torch::Tensor& b) { return torch::allclose(a, b, 1e-10, 1e-12); }

// The mixer on one sample x [N, C], written token by token.
torch::Tensor ponet_by_hand(const PoNetMixerImpl& m, const torch::Tensor& x, std::int64_t heads,
                            std::int64_t segments) {
  const auto n = x.size(0), c = x.size(1), d = c / heads;
  const auto p = torch::matmul(x, m.in_proj->weight.t()) + m.in_proj->bias;  // [N, 5C]
  const auto q = p.narrow(1, 0, c), k = p.narrow(1, c, c), o = p.narrow(1, 2 * c, c);
  const auto l = p.narrow(1, 3 * c, c), s = p.narrow(1, 4 * c, c);
  const auto length = n / segments + 1;
  auto out = torch::zeros({n, c}, x.options());
  for (std::int64_t h = 0; h < heads; ++h) {
    const auto qh = q.narrow(1, h * d, d), kh = k.narrow(1, h * d, d);
    const auto a = torch::softmax(torch::matmul(kh, qh.mean(0)) / std::sqrt(static_cast<double>(d)), 0);  // [N]
    const auto g = (a.unsqueeze(1) * kh).sum(0);                                                          // [d]
    for (std::int64_t i = 0; i < n; ++i) {
      const auto seg = i / length, from = seg * length, to = std::min(n, from + length);
      const auto s_i = s.narrow(0, from, to - from).narrow(1, h * d, d).amax(0);
      const auto lo = std::max<std::int64_t>(0, i - 1), hi = std::min(n - 1, i + 1);
      const auto l_i = l.narrow(0, lo, hi - lo + 1).narrow(1, h * d, d).amax(0);
      out[i].narrow(0, h * d, d).copy_((g + s_i) * o[i].narrow(0, h * d, d) + l_i);
    }
  }
  return torch::matmul(out, m.out_proj->weight.t()) + m.out_proj->bias;
}

}  // namespace

TEST_CASE("mixer/ponet: global, segment and local pooling token by token", "[mixers]") {
  torch::manual_seed(1);
  for (const auto& [segments, n] : std::vector<std::pair<std::int64_t, std::int64_t>>{{3, 11}, {1, 7}, {4, 16}}) {
    DYNAMIC_SECTION("S " << segments << ", N " << n) {
      const auto m = make_ponet("{type: mixer/ponet, heads: 2, segments: " + std::to_string(segments) + "}");
      const auto x = torch::randn({2, n, kDim}, torch::kFloat64);
      const auto out = m->forward(x, MixerContext{});
      for (std::int64_t b = 0; b < 2; ++b) CHECK(close(out[b], ponet_by_hand(*m, x[b], 2, segments)));
    }
  }
}

TEST_CASE("mixer/ponet: permutations inside a segment; one segment; padding; no causal form", "[mixers]") {
  torch::manual_seed(2);
  const auto x = torch::randn({2, 12, kDim}, torch::kFloat64);
  SECTION("without the local term, permuting tokens inside one segment permutes the output") {
    const auto m = make_ponet("{type: mixer/ponet, heads: 2, segments: 2}");  // segments of 7: [0, 7), [7, 12)
    {
      torch::NoGradGuard no_grad;
      m->in_proj->weight.narrow(0, 3 * kDim, kDim).zero_();
      m->in_proj->bias.narrow(0, 3 * kDim, kDim).zero_();
    }
    const auto order = torch::tensor({3, 0, 6, 1, 5, 2, 4, 7, 8, 9, 10, 11}, torch::kLong);
    const auto out = m->forward(x, MixerContext{});
    CHECK(close(m->forward(x.index_select(1, order), MixerContext{}), out.index_select(1, order)));
  }
  SECTION("o = 1 and no local term: one segment gives every token the same output, two segments two") {
    const auto constant_o = [](PoNetMixerImpl& m) {
      torch::NoGradGuard no_grad;
      m.in_proj->weight.narrow(0, 2 * kDim, 2 * kDim).zero_();  // o and l: weights 0
      m.in_proj->bias.narrow(0, 2 * kDim, kDim).fill_(1.0);     // o_i = 1
      m.in_proj->bias.narrow(0, 3 * kDim, kDim).zero_();        // l_i = 0
    };
    const auto one = make_ponet("{type: mixer/ponet, heads: 2, segments: 1}");
    constant_o(*one);
    const auto out = one->forward(x, MixerContext{});
    CHECK(close(out, out.narrow(1, 0, 1).expand_as(out)));
    const auto two = make_ponet("{type: mixer/ponet, heads: 2, segments: 2}");
    constant_o(*two);
    const auto out2 = two->forward(x, MixerContext{});
    CHECK(close(out2.narrow(1, 0, 7), out2.narrow(1, 0, 1).expand({2, 7, kDim})));
    CHECK(close(out2.narrow(1, 7, 5), out2.narrow(1, 7, 1).expand({2, 5, kDim})));
    CHECK_FALSE(close(out2.narrow(1, 0, 1), out2.narrow(1, 7, 1)));
  }
  SECTION("padding: padded inputs change nothing valid, padded outputs are the bias, no global weight") {
    const auto m = make_ponet("{type: mixer/ponet, heads: 2, segments: 3}");
    MixerContext ctx;
    ctx.lengths = torch::tensor({9, 12}, torch::kLong);
    const auto out = m->forward(x, ctx);
    auto changed = x.clone();
    changed[0].narrow(0, 9, 3).normal_();
    CHECK(close(m->forward(changed, ctx)[0].narrow(0, 0, 9), out[0].narrow(0, 0, 9)));
    CHECK(close(out[1], m->forward(x.narrow(0, 1, 1), MixerContext{})[0]));
    CHECK(close(out[0].narrow(0, 9, 3), m->out_proj->bias.expand({3, kDim})));
    const auto weights = m->global_weights(x, ctx);
    CHECK(weights[0].narrow(-1, 9, 3).abs().max().item<double>() == 0.0);
    CHECK(close(weights.sum(-1), torch::ones({2, 2}, torch::kFloat64)));
  }
  SECTION("no causal form; heads must divide the width") {
    MixerContext causal;
    causal.causal = true;
    CHECK_THROWS_WITH(make_ponet("{type: mixer/ponet}")->forward(x, causal), Catch::Contains("causal"));
    CHECK_THROWS_AS(make_ponet("{type: mixer/ponet, heads: 3}"), ConfigError);
  }
}

}  // namespace BLOCKLAB_TEST_FILE
