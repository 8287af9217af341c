// mixer/dsc (dynamic span-based convolution, ConvBERT §3.2; FlexiBERT's DSC operation, catalog
// 003/004 C20), tag [mixers]: the output equals the formula written with explicit loops over
// positions and taps from the mixer's own weights; a token's output depends only on the tokens
// within kernel // 2 of it; the kernels are distributions over the taps (kernel 1: out = W_O v);
// padded tokens never change valid ones; the parameter count; no causal form; bad options fail.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/mixers/dsc.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

constexpr std::int64_t kDscDim = 8;

std::shared_ptr<DscMixerImpl> dsc_make(const std::string& yaml, std::int64_t dim = kDscDim) {
  auto m =
      std::dynamic_pointer_cast<DscMixerImpl>(mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{dim, 64}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.normal_(0.0, 0.5);
  return m;
}

bool dsc_close(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, 1e-10, 1e-12);
}

std::int64_t dsc_parameter_count(const torch::nn::Module& m) {
  std::int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// The mixer on one sample x [N, C], position by position and tap by tap (zeros outside).
torch::Tensor dsc_by_hand(const DscMixerImpl& m, const torch::Tensor& x, std::int64_t heads, std::int64_t kernel) {
  torch::NoGradGuard no_grad;
  const auto n = x.size(0), c = x.size(1), d = c / heads, p = (kernel - 1) / 2;
  const auto in_range = [n](std::int64_t j) { return j >= 0 && j < n; };
  // Span-aware keys: depth-wise k taps per channel (cross-correlation, as Conv1d), then pointwise.
  const auto taps = m.depthwise->weight.squeeze(1);  // [C, k]
  auto depthwise = torch::zeros({n, c}, x.options());
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t t = 0; t < kernel; ++t)
      if (in_range(i + t - p)) depthwise[i] += taps.select(1, t) * x[i + t - p];
  const auto span_keys = torch::matmul(depthwise, m.pointwise->weight.t()) + m.pointwise->bias;
  const auto qv = torch::matmul(x, m.qv->weight.t()) + m.qv->bias;
  const auto q = qv.narrow(1, 0, c), v = qv.narrow(1, c, c);
  auto o = torch::zeros({n, c}, x.options());
  for (std::int64_t i = 0; i < n; ++i) {
    const auto logits = torch::matmul(m.kernel_proj->weight, q[i] * span_keys[i]) + m.kernel_proj->bias;  // [h k]
    for (std::int64_t h = 0; h < heads; ++h) {
      const auto kernel_i = torch::softmax(logits.narrow(0, h * kernel, kernel), 0);
      for (std::int64_t t = 0; t < kernel; ++t)
        if (in_range(i + t - p)) o[i].narrow(0, h * d, d) += kernel_i[t] * v[i + t - p].narrow(0, h * d, d);
    }
  }
  return torch::matmul(o, m.proj->weight.t()) + m.proj->bias;
}

}  // namespace

TEST_CASE("mixer/dsc: equals the dynamic convolution written position by position and tap by tap", "[mixers]") {
  torch::manual_seed(30);
  struct Case {
    std::int64_t heads, kernel, tokens;
  };
  for (const auto& [heads, kernel, tokens] : std::vector<Case>{{2, 3, 5}, {2, 5, 3}, {4, 9, 12}, {1, 1, 4}}) {
    DYNAMIC_SECTION("heads " << heads << ", kernel " << kernel << ", tokens " << tokens) {
      const auto m =
          dsc_make("{type: mixer/dsc, heads: " + std::to_string(heads) + ", kernel: " + std::to_string(kernel) + "}");
      const auto x = torch::randn({2, tokens, kDscDim}, torch::kFloat64);
      const auto out = m->forward(x, MixerContext{});
      for (std::int64_t b = 0; b < 2; ++b) CHECK(dsc_close(out[b], dsc_by_hand(*m, x[b], heads, kernel)));
      const auto k = m->kernels(x, MixerContext{});  // [B, N, h, k], distributions over the taps
      CHECK(k.sizes() == torch::IntArrayRef({2, tokens, heads, kernel}));
      CHECK(dsc_close(k.sum(-1), torch::ones({2, tokens, heads}, torch::kFloat64)));
    }
  }
  SECTION("kernel 1: one tap of weight 1, out = W_O v token by token") {
    const auto m = dsc_make("{type: mixer/dsc, heads: 2, kernel: 1}");
    const auto x = torch::randn({2, 6, kDscDim}, torch::kFloat64);
    const auto v = torch::linear(x, m->qv->weight.narrow(0, kDscDim, kDscDim), m->qv->bias.narrow(0, kDscDim, kDscDim));
    CHECK(dsc_close(m->forward(x, MixerContext{}), torch::linear(v, m->proj->weight, m->proj->bias)));
  }
}

TEST_CASE("mixer/dsc: a token sees only the tokens within kernel // 2; padding; options", "[mixers]") {
  torch::manual_seed(31);
  SECTION("perturbing token 6 changes exactly the outputs within 2 of it (kernel 5)") {
    const auto m = dsc_make("{type: mixer/dsc, heads: 2, kernel: 5}");
    const auto x = torch::randn({1, 12, kDscDim}, torch::kFloat64);
    auto changed = x.clone();
    changed[0][6] += torch::randn({kDscDim}, torch::kFloat64);
    const auto a = m->forward(x, MixerContext{}), b = m->forward(changed, MixerContext{});
    for (std::int64_t i = 0; i < 12; ++i) {
      INFO("token " << i);
      if (std::abs(i - 6) > 2)
        CHECK(dsc_close(a[0][i], b[0][i]));
      else
        CHECK_FALSE(dsc_close(a[0][i], b[0][i]));
    }
  }
  SECTION("padded tokens never change valid ones; valid outputs are the shorter sequence's") {
    const auto m = dsc_make("{type: mixer/dsc, heads: 2, kernel: 5}");
    const auto x = torch::randn({2, 10, kDscDim}, torch::kFloat64);
    MixerContext ctx;
    ctx.lengths = torch::tensor({7, 10}, torch::kLong);
    const auto out = m->forward(x, ctx);
    auto changed = x.clone();
    changed[0].narrow(0, 7, 3).normal_();
    CHECK(dsc_close(m->forward(changed, ctx)[0].narrow(0, 0, 7), out[0].narrow(0, 0, 7)));
    CHECK(dsc_close(out[0].narrow(0, 0, 7), m->forward(x.narrow(0, 0, 1).narrow(1, 0, 7), MixerContext{})[0]));
    CHECK(dsc_close(out[1], m->forward(x.narrow(0, 1, 1), MixerContext{})[0]));
  }
  SECTION("parameters: C k + 4 C^2 + 4 C + C h k + h k") {
    const std::int64_t c = kDscDim, h = 2, k = 3;
    CHECK(dsc_parameter_count(*dsc_make("{type: mixer/dsc, heads: 2, kernel: 3}")) ==
          c * k + 4 * c * c + 4 * c + c * h * k + h * k);
    const auto defaults = dsc_make("{type: mixer/dsc}", 16);  // kernel 9, heads 4
    CHECK(dsc_parameter_count(*defaults) == 16 * 9 + 4 * 16 * 16 + 4 * 16 + 16 * 4 * 9 + 4 * 9);
  }
  SECTION("no causal form; even or non-positive kernels and heads not dividing the width fail") {
    MixerContext causal;
    causal.causal = true;
    CHECK_THROWS_WITH(dsc_make("{type: mixer/dsc, heads: 2, kernel: 3}")
                          ->forward(torch::randn({1, 4, kDscDim}, torch::kFloat64), causal),
                      Catch::Contains("causal"));
    CHECK_FALSE(dsc_make("{type: mixer/dsc}")->capabilities().causal);
    for (const char* bad :
         {"{type: mixer/dsc, kernel: 4}", "{type: mixer/dsc, kernel: 0}", "{type: mixer/dsc, kernel: -3}",
          "{type: mixer/dsc, heads: 3}", "{type: mixer/dsc, heads: 0}"}) {
      INFO(bad);
      CHECK_THROWS_AS(mixer_registry().create(parse_yaml(bad, "t.yaml"), MixerArgs{kDscDim, 64}), ConfigError);
    }
  }
}

}  // namespace BLOCKLAB_TEST_FILE
