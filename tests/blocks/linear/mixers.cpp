// Property tests of the linear-attention and retention mixers (tag [linear]): each equals its
// paper's equations written out by hand from the module's weights, and its options are checked.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/linear/cosformer.h"
#include "blocks/linear/elu.h"
#include "blocks/retention/retnet.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/linear/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::linear_tests;

namespace {

// [B, N, h d] -> [B, h, N, d]

// RetNet's rotation of channel pairs (2i, 2i+1) by n theta_i, theta_i = 10000^(-i/(d/2-1))
// (torchscale's RetNetRelPos: exponents linspace(0, 1, d/2)), by hand.
torch::Tensor rotate(const torch::Tensor& x) {
  const auto n = x.size(2), d = x.size(3);
  auto out = x.clone();
  for (std::int64_t p = 0; p < n; ++p)
    for (std::int64_t i = 0; i < d / 2; ++i) {
      const double angle = static_cast<double>(p) * std::pow(10000.0, -static_cast<double>(i) / (d / 2 - 1));
      const auto a = x.select(2, p).select(-1, 2 * i), b = x.select(2, p).select(-1, 2 * i + 1);
      out.select(2, p).select(-1, 2 * i).copy_(a * std::cos(angle) - b * std::sin(angle));
      out.select(2, p).select(-1, 2 * i + 1).copy_(a * std::sin(angle) + b * std::cos(angle));
    }
  return out;
}

}  // namespace

TEST_CASE("linear/elu: Katharopoulos et al. eq. (6) with phi = elu + 1, causal eq. (8), from its weights", "[linear]") {
  torch::manual_seed(1);
  for (const std::string form : {"parallel", "chunked"}) {
    EluLinear m(16, EluLinearOptions().heads(2).form(form).chunk(4));
    m->to(torch::kFloat64);
    const auto x = torch::randn({2, 11, 16}, torch::kFloat64);
    const auto y = torch::linear(x, param(*m, "qkv.weight"), param(*m, "qkv.bias"));
    const auto phi = [](const torch::Tensor& t) { return torch::where(t > 0, t + 1, t.exp()); };
    const auto q = phi(split_heads(y.narrow(-1, 0, 16), 2)), k = phi(split_heads(y.narrow(-1, 16, 16), 2));
    const auto v = split_heads(y.narrow(-1, 32, 16), 2);
    for (bool causal : {false, true}) {
      INFO("form " << form << ", causal " << causal);
      auto a = q.matmul(k.transpose(-1, -2));
      if (causal) a = a.tril();
      const auto o = a.matmul(v) / (a.sum(-1, true) + 1e-6);
      const auto expected = torch::linear(merge_heads(o), param(*m, "proj.weight"), param(*m, "proj.bias"));
      CHECK(max_diff(m->forward(x, context(causal)), expected) <= 1e-12);
    }
  }
}

TEST_CASE("retention/retnet: eqs. (5) and (8) of Sun et al. from its weights; causal even when not asked", "[linear]") {
  torch::manual_seed(2);
  const std::int64_t c = 16, h = 2, n = 13;
  RetNet m(c, RetNetOptions().heads(h).chunk(4));
  m->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;  // a non-trivial affine GroupNorm
    m->norm->weight.uniform_(0.5, 1.5);
    m->norm->bias.uniform_(-0.5, 0.5);
  }
  const auto x = torch::randn({2, n, c}, torch::kFloat64);
  const auto qh = rotate(split_heads(torch::linear(x, param(*m, "q.weight")), h));
  const auto kh = rotate(split_heads(torch::linear(x, param(*m, "k.weight")), h)) / std::sqrt(8.0);
  const auto vh = split_heads(torch::linear(x, param(*m, "v.weight")), h);  // [B, h, N, 16]
  CHECK(vh.size(-1) == 2 * c / h);                                          // value_factor 2
  const std::vector<double> gammas{1 - std::pow(2.0, -5), 1 - std::pow(2.0, -6)};
  auto retained = torch::zeros_like(vh);
  for (std::int64_t head = 0; head < h; ++head) {
    auto d = torch::zeros({n, n}, torch::kFloat64);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j) d[i][j] = std::pow(gammas[head], static_cast<double>(i - j));
    retained.select(1, head).copy_(
        (qh.select(1, head).matmul(kh.select(1, head).transpose(-1, -2)) * d).matmul(vh.select(1, head)));
  }
  // GroupNorm over each head's channels, per token, then the swish gate and W_O.
  auto normed = (retained - retained.mean(-1, true)) / (retained.var({-1}, false, true) + 1e-6).sqrt();
  normed = merge_heads(normed) * m->norm->weight + m->norm->bias;
  const auto gate = torch::silu(torch::linear(x, param(*m, "g.weight")));
  const auto expected = torch::linear(gate * normed, param(*m, "out.weight"));
  CHECK(max_diff(m->forward(x, context(true)), expected) <= 1e-10);
  CHECK(max_diff(m->forward(x, context(false)), expected) <= 1e-10);
  CHECK(m->capabilities().causal);
  CHECK(m->capabilities().weights == MixerCapabilities::Weights::unnormalised);
}

TEST_CASE("retention/retnet: the default decays are 1 - 2^(-5-h); explicit gammas per head", "[linear]") {
  RetNet m(32, RetNetOptions().heads(4));
  const auto gammas = m->named_buffers()["log_gammas"].exp();
  CHECK(gammas.dtype() == torch::kFloat64);
  for (int i = 0; i < 4; ++i) CHECK(gammas[i].item<double>() == Approx(1 - std::pow(2.0, -5 - i)).epsilon(1e-15));
  const auto made = mixer_registry().create(parse_yaml("{type: retention/retnet, heads: 2, gammas: [0.5, 0.75]}", "t"),
                                            MixerArgs{16, 32});
  CHECK(made->named_buffers()["log_gammas"].exp()[1].item<double>() == Approx(0.75));
}

TEST_CASE("retention/retnet: option errors name the option and the fix", "[linear]") {
  const auto make = [](const std::string& yaml, std::int64_t dim) {
    return mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{dim, 32});
  };
  CHECK_THROWS_WITH(make("{type: retention/retnet, heads: 2, gammas: [0.5]}", 16),
                    Catch::Contains("1 gammas for 2 heads") && Catch::Contains("gammas"));
  CHECK_THROWS_WITH(make("{type: retention/retnet, heads: 2, gammas: [0.5, 1.0]}", 16),
                    Catch::Contains("must lie in (0, 1)"));
  CHECK_THROWS_WITH(make("{type: retention/retnet, heads: 4}", 12), Catch::Contains("heads of even width"));
  CHECK_THROWS_AS(make("{type: retention/retnet, form: quadratic}", 16), ConfigError);
}

TEST_CASE("linear/cosformer: the decomposed form equals the direct cos-re-weighted form (eqs. (9)-(10))", "[linear]") {
  torch::manual_seed(3);
  const std::int64_t n = 12, max_length = 20;
  Cosformer m(16, CosformerOptions().heads(2).max_length(max_length).chunk(5));
  m->to(torch::kFloat64);
  const auto x = torch::randn({2, n, 16}, torch::kFloat64);
  const auto y = torch::linear(x, param(*m, "qkv.weight"), param(*m, "qkv.bias"));
  const auto q = torch::relu(split_heads(y.narrow(-1, 0, 16), 2)),
             k = torch::relu(split_heads(y.narrow(-1, 16, 16), 2));
  const auto v = split_heads(y.narrow(-1, 32, 16), 2);
  auto cosine = torch::zeros({n, n}, torch::kFloat64);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) cosine[i][j] = std::cos(M_PI / 2 * static_cast<double>(i - j) / max_length);
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    auto s = q.matmul(k.transpose(-1, -2)) * cosine;
    CHECK(s.min().item<double>() >= 0.0);
    if (causal) s = s.tril();
    const auto o = s.matmul(v) / (s.sum(-1, true) + 1e-6);
    const auto expected = torch::linear(merge_heads(o), param(*m, "proj.weight"), param(*m, "proj.bias"));
    CHECK(max_diff(m->forward(x, context(causal)), expected) <= 1e-12);
  }
}

TEST_CASE("linear/cosformer: M defaults to the longest sequence; positions beyond it are refused", "[linear]") {
  const auto made = mixer_registry().create(parse_yaml("{type: linear/cosformer, heads: 2}", "t"), MixerArgs{16, 9});
  const auto x = torch::randn({1, 9, 16});
  CHECK(made->forward(x, context(true)).sizes() == x.sizes());
  CHECK_THROWS_WITH(made->forward(torch::randn({1, 10, 16}), context(true)),
                    Catch::Contains("position 9 is beyond its re-weighting length max_length = 9"));
  auto state = made->init_state(1, x.options());
  state.position = 9;
  CHECK_THROWS_WITH(made->step(x.select(1, 0), state, context(true)), Catch::Contains("max_length"));
}

}  // namespace BLOCKLAB_TEST_FILE
