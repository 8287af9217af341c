// The gating-unit token mixers of issue 16 (wave 5), tag [mixers]: NiNformer's Mixer Gating Unit
// (mixer/nin) equals u ⊙ MixerBlock(x) written by hand, with W_u = 0, b_u = 1 it is the MixerBlock,
// a shorter sequence is the zero-padded max_tokens sequence with its first N outputs kept (and so
// is a right-padded one), longer sequences and causal use are refused; the Activator's gating unit
// (mixer/activator) equals W_3(LN_F(GELU(W_1 x)) ⊙ LN_F(W_2 x)) by hand with ONE shared LN_F, has a
// block-diagonal Jacobian over tokens, is permutation equivariant, steps with an empty state; both
// have their catalog parameter counts and refuse bad options. (Registry conformance covers shape,
// gradients, determinism, batch independence, causality, recurrence and padding.)
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/mixers/activator.h"
#include "blocks/mixers/nin.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::close;
using attention_tests::parameter_count;
using attention_tests::randomise_for_by_hand;

namespace {

template <class Impl>
std::shared_ptr<Impl> make_mixer(const std::string& yaml, std::int64_t dim, std::int64_t max_tokens) {
  auto m =
      std::dynamic_pointer_cast<Impl>(mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{dim, max_tokens}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  randomise_for_by_hand(*m);  // every weight N(0, 0.5), LayerNorm gamma and beta included; eval mode
  return m;
}

torch::Tensor gelu_by_hand(const torch::Tensor& t) { return 0.5 * t * (1.0 + torch::erf(t / std::sqrt(2.0))); }

torch::Tensor linear_by_hand(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return torch::matmul(x, w.t()) + b;
}

// LayerNorm over the last axis: biased variance, eps, then gamma and beta.
torch::Tensor layer_norm_by_hand(const torch::Tensor& x, const torch::Tensor& gamma, const torch::Tensor& beta,
                                 double eps) {
  const auto mean = x.mean(-1, true);
  const auto var = (x - mean).pow(2).mean(-1, true);
  return (x - mean) / torch::sqrt(var + eps) * gamma + beta;
}

torch::Tensor layer_norm_by_hand(const torch::nn::LayerNormImpl& ln, const torch::Tensor& x) {
  return layer_norm_by_hand(x, ln.weight, ln.bias, ln.options.eps());
}

// NiNformer's MixerBlock by hand, the documented length rule included: LN_1(x) [B, N, C] is
// zero-padded to max_tokens M tokens, the token MLP (M -> d_tok -> M) runs over the token axis,
// the first N outputs are kept; then the channel MLP on LN_2(v). Eval mode (no dropout).
torch::Tensor mixer_block_by_hand(const NinMixerImpl& m, const torch::Tensor& x) {
  const auto n = x.size(1), big_m = m.max_tokens();
  const auto z = layer_norm_by_hand(*m.token_norm, x);
  const auto padded = torch::cat({z, torch::zeros({x.size(0), big_m - n, x.size(2)}, x.options())}, 1);
  const auto zt = padded.transpose(1, 2);  // [B, C, M]: each channel is an M-vector over tokens
  const auto h = gelu_by_hand(linear_by_hand(zt, m.token_fc1->weight, m.token_fc1->bias));
  const auto t = linear_by_hand(h, m.token_fc2->weight, m.token_fc2->bias);  // [B, C, M]
  const auto v = x + t.narrow(2, 0, n).transpose(1, 2);
  const auto& mlp = *m.channel_mlp;
  const auto c = gelu_by_hand(linear_by_hand(layer_norm_by_hand(*m.channel_norm, v), mlp.fc1->weight, mlp.fc1->bias));
  return v + linear_by_hand(c, mlp.fc2->weight, mlp.fc2->bias);
}

torch::Tensor mgu_by_hand(const NinMixerImpl& m, const torch::Tensor& x) {
  return linear_by_hand(x, m.proj->weight, m.proj->bias) * mixer_block_by_hand(m, x);
}

MixerContext plain() { return MixerContext{}; }

// The Activator's gating unit by hand with the LayerNorm affine of each branch given apart:
// W_3 (LN(GELU(W_1 x); gamma_g, beta_g) ⊙ LN(W_2 x; gamma_v, beta_v)).
torch::Tensor activator_by_hand(const ActivatorMixerImpl& m, const torch::Tensor& x, const torch::Tensor& gamma_g,
                                const torch::Tensor& beta_g, const torch::Tensor& gamma_v,
                                const torch::Tensor& beta_v) {
  const double eps = m.norm->options.eps();
  const auto g = layer_norm_by_hand(gelu_by_hand(linear_by_hand(x, m.w1->weight, m.w1->bias)), gamma_g, beta_g, eps);
  const auto v = layer_norm_by_hand(linear_by_hand(x, m.w2->weight, m.w2->bias), gamma_v, beta_v, eps);
  return linear_by_hand(g * v, m.w3->weight, m.w3->bias);
}

torch::Tensor activator_by_hand(const ActivatorMixerImpl& m, const torch::Tensor& x) {
  return activator_by_hand(m, x, m.norm->weight, m.norm->bias, m.norm->weight, m.norm->bias);
}

}  // namespace

TEST_CASE("mixer/nin: u ⊙ MixerBlock(x) by hand; W_u = 0, b_u = 1 gives the MixerBlock; parameter count", "[mixers]") {
  torch::manual_seed(1);
  constexpr std::int64_t kC = 6, kMax = 9;
  const auto m =
      make_mixer<NinMixerImpl>("{type: mixer/nin, token_ratio: 1.5, channel_ratio: 2}", kC, kMax);  // d_tok 9, d_ch 12
  REQUIRE(m->token_fc1->weight.sizes() == torch::IntArrayRef({9, kMax}));
  REQUIRE(m->channel_mlp->fc1->weight.sizes() == torch::IntArrayRef({12, kC}));
  const auto x = torch::randn({2, kMax, kC}, torch::kFloat64);
  const auto out = m->forward(x, plain());
  CHECK(close(out, mgu_by_hand(*m, x)));
  SECTION("prefix tokens are tokens like any other: the grid layout changes nothing") {
    MixerContext ctx;
    ctx.prefix_tokens = 1, ctx.grid_height = 2, ctx.grid_width = 4;
    CHECK(torch::equal(m->forward(x, ctx), out));
  }
  SECTION("W_u = 0, b_u = 1: the MGU is the MixerBlock x + T(LN_1 x) then + ChannelMLP(LN_2 v)") {
    {
      torch::NoGradGuard no_grad;
      m->proj->weight.zero_();
      m->proj->bias.fill_(1.0);
    }
    CHECK(close(m->forward(x, plain()), mixer_block_by_hand(*m, x)));
  }
  SECTION("parameters: C^2 + C + (2 M d_tok + M + d_tok) + (2 C d_ch + C + d_ch) + two LayerNorms 4C") {
    constexpr std::int64_t d_tok = 9, d_ch = 12;
    CHECK(parameter_count(*m) ==
          kC * kC + kC + (2 * kMax * d_tok + kMax + d_tok) + (2 * kC * d_ch + kC + d_ch) + 4 * kC);
    // The defaults: d_tok = d_ch = 2C (NiNformer's 512 at C = 256).
    const auto d = make_mixer<NinMixerImpl>("{type: mixer/nin}", kC, kMax);
    CHECK(d->token_fc1->weight.sizes() == torch::IntArrayRef({2 * kC, kMax}));
    CHECK(d->channel_mlp->fc1->weight.sizes() == torch::IntArrayRef({2 * kC, kC}));
  }
}

TEST_CASE("mixer/nin: N < max_tokens is the zero-padded sequence's first N outputs; N > max_tokens and causal fail",
          "[mixers]") {
  torch::manual_seed(2);
  constexpr std::int64_t kC = 5, kMax = 11;
  const auto m = make_mixer<NinMixerImpl>("{type: mixer/nin}", kC, kMax);
  SECTION("a short sequence: LN_1(x) zero-padded to max_tokens, the token MLP, the first N outputs kept") {
    for (std::int64_t n : {std::int64_t{1}, std::int64_t{4}, kMax - 1}) {
      INFO(n << " tokens");
      const auto x = torch::randn({2, n, kC}, torch::kFloat64);
      CHECK(close(m->forward(x, plain()), mgu_by_hand(*m, x)));
    }
  }
  SECTION("the token MLP's weights for positions >= N take no part in a sequence of N tokens") {
    const auto x = torch::randn({2, 7, kC}, torch::kFloat64);
    const auto before = m->forward(x, plain());
    {
      torch::NoGradGuard no_grad;
      m->token_fc1->weight.narrow(1, 7, kMax - 7).normal_(0.0, 3.0);
      m->token_fc2->weight.narrow(0, 7, kMax - 7).normal_(0.0, 3.0);
      m->token_fc2->bias.narrow(0, 7, kMax - 7).normal_(0.0, 3.0);
    }
    CHECK(torch::equal(m->forward(x, plain()), before));
  }
  SECTION("right padding (ctx.lengths) follows the same rule: valid outputs equal the unpadded sequence's") {
    const auto x = torch::randn({2, 8, kC}, torch::kFloat64);
    MixerContext ctx;
    ctx.lengths = torch::tensor({8, 3}, torch::kLong);
    const auto out = m->forward(x, ctx);
    CHECK(close(out.select(0, 0), mgu_by_hand(*m, x.narrow(0, 0, 1)).select(0, 0)));
    CHECK(close(out.select(0, 1).narrow(0, 0, 3), mgu_by_hand(*m, x.narrow(0, 1, 1).narrow(1, 0, 3)).select(0, 0)));
  }
  SECTION("a sequence longer than max_tokens fails naming max_tokens; causal use fails naming causal") {
    CHECK_THROWS_WITH(m->forward(torch::randn({1, kMax + 1, kC}, torch::kFloat64), plain()),
                      Catch::Contains("max_tokens") && Catch::Contains("mixer/nin"));
    MixerContext causal;
    causal.causal = true;
    CHECK_THROWS_WITH(m->forward(torch::randn({1, 4, kC}, torch::kFloat64), causal), Catch::Contains("causal"));
    CHECK_FALSE(m->capabilities().causal);
    CHECK(m->capabilities().variable_lengths);
  }
}

TEST_CASE("mixer/activator: W_3(LN_F(GELU(W_1 x)) ⊙ LN_F(W_2 x)) by hand; 3CF + 2F + C + 2F parameters", "[mixers]") {
  torch::manual_seed(3);
  constexpr std::int64_t kC = 6, kF = 9;
  const auto m = make_mixer<ActivatorMixerImpl>("{type: mixer/activator, ratio: 1.5}", kC, 16);
  REQUIRE(m->w1->weight.sizes() == torch::IntArrayRef({kF, kC}));
  const auto x = torch::randn({2, 5, kC}, torch::kFloat64);
  CHECK(close(m->forward(x, plain()), activator_by_hand(*m, x)));
  CHECK(parameter_count(*m) == 3 * kC * kF + 2 * kF + kC + 2 * kF);
  CHECK(make_mixer<ActivatorMixerImpl>("{type: mixer/activator}", kC, 16)->w1->weight.size(0) == 2 * kC);  // default
  SECTION("one LN_F module serves both branches: a new gamma and beta change both") {
    std::int64_t layer_norms = 0;
    for (const auto& child : m->modules(/*include_self=*/false))
      if (std::dynamic_pointer_cast<torch::nn::LayerNormImpl>(child)) ++layer_norms;
    CHECK(layer_norms == 1);
    const auto old_gamma = m->norm->weight.clone(), old_beta = m->norm->bias.clone();
    {
      torch::NoGradGuard no_grad;
      m->norm->weight.normal_(1.0, 0.5);
      m->norm->bias.normal_(0.0, 0.5);
    }
    const auto out = m->forward(x, plain());
    const auto& gamma = m->norm->weight;
    const auto& beta = m->norm->bias;
    CHECK(close(out, activator_by_hand(*m, x, gamma, beta, gamma, beta)));
    // Had only one branch seen the new affine, the output would differ.
    CHECK_FALSE(close(out, activator_by_hand(*m, x, gamma, beta, old_gamma, old_beta)));
    CHECK_FALSE(close(out, activator_by_hand(*m, x, old_gamma, old_beta, gamma, beta)));
  }
}

TEST_CASE("mixer/activator: token-wise: zero Jacobian off the diagonal, permutation equivariant, empty-state steps",
          "[mixers]") {
  torch::manual_seed(4);
  constexpr std::int64_t kC = 4, kN = 5;
  const auto m = make_mixer<ActivatorMixerImpl>("{type: mixer/activator}", kC, 16);
  const auto x = torch::randn({1, kN, kC}, torch::kFloat64);
  SECTION("d out_i / d x_j = 0 for i != j (autograd, every output element), non-zero for i = j") {
    const auto xr = x.clone().requires_grad_(true);
    const auto out = m->forward(xr, plain());
    for (std::int64_t i = 0; i < kN; ++i)
      for (std::int64_t c = 0; c < kC; ++c) {
        const auto g = torch::autograd::grad({out[0][i][c]}, {xr}, {}, /*retain_graph=*/true)[0][0];  // [N, C]
        for (std::int64_t j = 0; j < kN; ++j) {
          INFO("output token " << i << ", channel " << c << ", input token " << j);
          const double size = g[j].abs().max().item<double>();
          if (j == i)
            CHECK(size > 0.0);
          else
            CHECK(size == 0.0);
        }
      }
  }
  SECTION("permuting the tokens permutes the output") {
    const auto perm = torch::randperm(kN, torch::kLong);
    CHECK(close(m->forward(x.index_select(1, perm), plain()), m->forward(x, plain()).index_select(1, perm)));
  }
  SECTION("causal, recurrent with an empty state, padding-proof; a step is the map on x_t") {
    const auto caps = m->capabilities();
    CHECK(caps.causal);
    CHECK(caps.recurrent);
    CHECK(caps.variable_lengths);
    const auto full = activator_by_hand(*m, x);
    MixerState state = m->init_state(1, x.options());
    CHECK(state.numel() == 0);
    for (std::int64_t t = 0; t < kN; ++t) {
      MixerStep s = m->step(x.select(1, t), state, plain());
      CHECK(close(s.output, full.select(1, t)));
      state = std::move(s.state);
      CHECK(state.numel() == 0);
    }
    CHECK(state.position == kN);
  }
}

TEST_CASE("mixer/nin and mixer/activator: bad options fail at build time with a ConfigError", "[mixers]") {
  const auto create = [](const std::string& yaml, std::int64_t max_tokens = 16) {
    return mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{8, max_tokens});
  };
  CHECK_NOTHROW(create("{type: mixer/nin}"));
  CHECK_NOTHROW(create("{type: mixer/activator}"));
  CHECK_THROWS_AS(create("{type: mixer/nin, token_ratio: 0}"), ConfigError);
  CHECK_THROWS_AS(create("{type: mixer/nin, channel_ratio: -1}"), ConfigError);
  CHECK_THROWS_AS(create("{type: mixer/nin, dropout: 1.5}"), ConfigError);
  CHECK_THROWS_AS(create("{type: mixer/nin, token_hidden: 64}"), ConfigError);  // unknown key
  CHECK_THROWS_AS(create("{type: mixer/nin}", 0), ConfigError);                 // no max_tokens to size the token MLP
  CHECK_THROWS_AS(create("{type: mixer/activator, ratio: 0}"), ConfigError);
  CHECK_THROWS_AS(create("{type: mixer/activator, hidden: 16}"), ConfigError);  // unknown key
}

}  // namespace BLOCKLAB_TEST_FILE
