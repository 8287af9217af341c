// Monarch Mixer (blocks/common/monarch.h, blocks/mixers/monarch.h, blocks/channel/monarch_glu.h),
// tag [mixers]: BlockdiagLinear equals its block-diagonal dense matrix (and a Linear with one
// block); MonarchLinear equals its dense product P2 BD(W2) P1 BD(W1) (square, rectangular,
// padded sizes), is the identity with identity blocks and a permutation with permuted
// identity blocks; the M2 sequence mixer equals its materialised long-convolution operator
// (bidirectional and causal, with and without the residual long convolution), its FFT path
// equals the direct one, and ctx.causal makes it causal; the GLU MLP equals its dense layers.
#include <catch2/catch.hpp>

#include <array>

#include "blocks/channel/monarch_glu.h"
#include "blocks/conv/hyena.h"
#include "blocks/mixers/monarch.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

torch::Tensor randn(std::vector<std::int64_t> shape) { return torch::randn(shape, torch::kFloat64); }

// x [..., in] through a dense matrix [out, in] plus bias.
torch::Tensor apply_dense(const torch::Tensor& m, const torch::Tensor& x, const torch::Tensor& bias) {
  auto y = torch::matmul(x, m.t());
  return bias.defined() ? y + bias : y;
}

MonarchMixer mixer64(std::int64_t dim, std::int64_t max_tokens, const MonarchMixerOptions& o, std::uint64_t seed) {
  torch::manual_seed(seed);
  MonarchMixer m(dim, max_tokens, o);
  m->to(torch::kFloat64);
  return m;
}

}  // namespace

TEST_CASE("monarch: BlockdiagLinear equals its block-diagonal dense matrix", "[mixers]") {
  torch::manual_seed(0);
  for (auto [in, out, nb] : std::vector<std::array<std::int64_t, 3>>{{8, 8, 4}, {8, 12, 2}, {12, 8, 4}, {10, 7, 3}}) {
    INFO("in " << in << ", out " << out << ", blocks " << nb);
    BlockdiagLinear layer(in, out, nb);
    layer->to(torch::kFloat64);
    const auto x = randn({3, 5, in});
    const auto dense = layer->dense();
    REQUIRE(dense.sizes() == torch::IntArrayRef({out, in}));
    CHECK(max_diff(layer->forward(x), apply_dense(dense, x, layer->bias)) <= 1e-12);
    // Entries outside the diagonal blocks are zero (when the sizes divide).
    if (in % nb == 0 && out % nb == 0) {
      const auto mask =
          torch::block_diag(std::vector<torch::Tensor>(nb, torch::ones({out / nb, in / nb}, torch::kFloat64)));
      CHECK(max_diff(dense * (1 - mask), torch::zeros_like(dense)) == 0.0);
      CHECK(max_diff(dense.narrow(0, 0, out / nb).narrow(1, 0, in / nb), layer->weight[0]) == 0.0);
    }
  }
  // One block: a dense Linear.
  BlockdiagLinear one(6, 5, 1);
  one->to(torch::kFloat64);
  const auto x = randn({4, 6});
  CHECK(max_diff(one->forward(x), torch::nn::functional::linear(x, one->weight[0], one->bias)) <= 1e-12);
}

TEST_CASE("monarch: MonarchLinear equals its dense product P2 BD(W2) P1 BD(W1)", "[mixers]") {
  torch::manual_seed(1);
  for (auto [in, out, nb] :
       std::vector<std::array<std::int64_t, 3>>{{16, 16, 4}, {9, 9, 3}, {8, 16, 4}, {16, 8, 4}, {10, 14, 3}}) {
    INFO("in " << in << ", out " << out << ", blocks " << nb);
    MonarchLinear layer(in, out, nb);
    layer->to(torch::kFloat64);
    const auto x = randn({2, 3, in});
    const auto dense = layer->dense();
    REQUIRE(dense.sizes() == torch::IntArrayRef({out, in}));
    CHECK(max_diff(layer->forward(x), apply_dense(dense, x, layer->bias)) <= 1e-12);
    // A Monarch matrix is dense in general (every output sees every input) when in and out are
    // nb^2-sized: the permutation spreads each block over all blocks of the other factor.
    if (in == nb * nb && out == nb * nb) CHECK((dense.abs() > 0).all().item<bool>());
  }
  // Square n = m^2 with m blocks: 2 m^3 = 2 n^1.5 parameters.
  MonarchLinear square(16, 16, 4, /*bias=*/false);
  CHECK(square->weight1.numel() + square->weight2.numel() == 2 * 64);
}

TEST_CASE("monarch: identity blocks give the identity; permuted blocks a permutation", "[mixers]") {
  for (auto [n, nb] : std::vector<std::array<std::int64_t, 2>>{{16, 4}, {12, 3}, {12, 4}, {6, 2}}) {
    INFO("n " << n << ", blocks " << nb);
    MonarchLinear layer(n, n, nb, /*bias=*/false);
    layer->to(torch::kFloat64);
    {
      torch::NoGradGuard no_grad;
      const auto block = n / nb;
      layer->weight1.copy_(torch::eye(block, torch::kFloat64).expand({nb, block, block}));
      layer->weight2.copy_(torch::eye(block, torch::kFloat64).expand({nb, block, block}));
    }
    const auto x = randn({5, n});
    CHECK(max_diff(layer->forward(x), x) == 0.0);
    CHECK(max_diff(layer->dense(), torch::eye(n, torch::kFloat64)) == 0.0);
    // A permutation in the first factor's blocks: the whole map is a permutation matrix (one 1
    // per row and column), consistent between forward and dense.
    {
      torch::NoGradGuard no_grad;
      const auto block = n / nb;
      const auto flip = torch::eye(block, torch::kFloat64).flip(0);
      layer->weight1.copy_(flip.expand({nb, block, block}));
    }
    const auto p = layer->dense();
    CHECK(max_diff(p.sum(0), torch::ones({n}, torch::kFloat64)) == 0.0);
    CHECK(max_diff(p.sum(1), torch::ones({n}, torch::kFloat64)) == 0.0);
    CHECK(max_diff(layer->forward(x), torch::matmul(x, p.t())) == 0.0);
    CHECK(max_diff(p, torch::eye(n, torch::kFloat64)) == 1.0);  // not the identity any more
  }
  CHECK(max_diff(stride_permutation(2, 3, torch::kFloat64).mv(torch::arange(6, torch::kFloat64)),
                 torch::tensor({0.0, 3.0, 1.0, 4.0, 2.0, 5.0}, torch::kFloat64)) == 0.0);
}

TEST_CASE("monarch mixer: the output equals its materialised long-convolution operator", "[mixers]") {
  for (bool bidirectional : {true, false})
    for (bool residual : {true, false})
      for (bool causal : {false, true}) {
        INFO("bidirectional " << bidirectional << ", residual " << residual << ", ctx.causal " << causal);
        auto m = mixer64(8, 24,
                         MonarchMixerOptions()
                             .bidirectional(bidirectional)
                             .residual_long_conv(residual)
                             .filter_width(8)
                             .projection("monarch"),
                         2);
        torch::manual_seed(3);
        const auto x = randn({2, 13, 8});
        MixerContext ctx;
        ctx.causal = causal;
        const auto [t, t2] = m->conv_matrices(13, causal);  // [C, N, N]
        const auto z = m->short_conv->forward(m->in_proj.forward(x)).split(8, -1);
        auto y = z[1] * torch::einsum("cts,bsc->btc", {t, z[0] * z[2]});
        if (residual) y = y + torch::einsum("cts,bsc->btc", {t2, x});
        CHECK(max_diff(m->forward(x, ctx), m->out_proj.forward(y)) <= 1e-10);
        // The operator reads the future only when bidirectional and not causal.
        const bool upper = bidirectional && !causal;
        CHECK((t.triu(1).abs().max().item<double>() > 0) == upper);
      }
}

TEST_CASE("monarch mixer: FFT equals direct; causal under ctx.causal; lengths", "[mixers]") {
  auto fft = mixer64(8, 32, MonarchMixerOptions().filter_width(8), 4);
  auto direct = mixer64(8, 32, MonarchMixerOptions().filter_width(8).conv("direct"), 4);
  torch::manual_seed(5);
  const auto x = randn({2, 30, 8});
  for (bool causal : {false, true}) {
    MixerContext ctx;
    ctx.causal = causal;
    CHECK(max_diff(fft->forward(x, ctx), direct->forward(x, ctx)) <= 1e-9);
  }
  auto changed = x.clone();
  changed.select(1, 20).add_(1.0);
  MixerContext causal;
  causal.causal = true;
  auto diff = (fft->forward(changed, causal) - fft->forward(x, causal)).abs().amax({0, 2});
  CHECK(diff.narrow(0, 0, 20).max().item<double>() <= 1e-12);
  CHECK(diff.narrow(0, 20, 10).min().item<double>() > 1e-8);
  diff = (fft->forward(changed, {}) - fft->forward(x, {})).abs().amax({0, 2});
  CHECK(diff.narrow(0, 0, 20).min().item<double>() > 1e-8);  // bidirectional: the past sees the change
  // Lengths: valid tokens see the unpadded sequence.
  MixerContext lengths;
  lengths.lengths = torch::tensor({30, 11}, torch::kLong);
  const auto y = fft->forward(x, lengths).select(0, 1).narrow(0, 0, 11);
  const auto trimmed = fft->forward(x.select(0, 1).narrow(0, 0, 11).unsqueeze(0), {}).squeeze(0);
  CHECK(max_diff(y, trimmed) <= 1e-10);
  CHECK_THROWS_WITH(fft->forward(randn({1, 33, 8}), {}), Catch::Contains("max_tokens"));
}

TEST_CASE("monarch mixer: causal, without the residual convolution, it is order-2 Hyena (matched weights)",
          "[mixers]") {
  auto m2 = mixer64(8, 20, MonarchMixerOptions().bidirectional(false).residual_long_conv(false).filter_width(8), 7);
  torch::manual_seed(8);
  Hyena hyena(8, 20, HyenaOptions().filter_width(8).emb_dim(5).frequency(10.0));
  hyena->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    // M2's projections [x1; x2; v] are Hyena's [x_1; x_0; v]: y = x2 ⊙ S (x1 ⊙ v) = x_0 ⊙ S (x_1 ⊙ v).
    const auto permute_rows = [](const torch::Tensor& t) {
      const auto c = t.chunk(3, 0);
      return torch::cat({c[1], c[0], c[2]});
    };
    auto m2_in = m2->in_proj.get<torch::nn::Linear>();
    hyena->in_proj->weight.copy_(permute_rows(m2_in->weight));
    hyena->in_proj->bias.copy_(permute_rows(m2_in->bias));
    hyena->short_conv->weight.copy_(permute_rows(m2->short_conv->weight));
    hyena->short_conv->bias.copy_(permute_rows(m2->short_conv->bias));
    auto m2_out = m2->out_proj.get<torch::nn::Linear>();
    hyena->out_proj->weight.copy_(m2_out->weight);
    hyena->out_proj->bias.copy_(m2_out->bias);
    const auto source = m2->filter->named_parameters();
    for (auto& p : hyena->filter->named_parameters()) p.value().copy_(source[p.key()]);
    hyena->skip.copy_(m2->skip);
  }
  torch::manual_seed(9);
  const auto x = randn({2, 17, 8});
  CHECK(max_diff(m2->forward(x, {}), hyena->forward(x, {})) <= 1e-12);
}

TEST_CASE("monarch glu: equals its dense layers; blockdiag has nblocks times fewer weights", "[mixers]") {
  for (const char* linear : {"blockdiag", "monarch", "dense"}) {
    INFO("linear " << linear);
    torch::manual_seed(6);
    MonarchGlu glu(16, MonarchGluOptions().ratio(2).linear(linear));
    glu->to(torch::kFloat64);
    const auto x = randn({3, 16});
    torch::Tensor w1, w2, b2;
    if (std::string(linear) == "dense") {
      w1 = glu->fc1.get<torch::nn::Linear>()->weight;
      w2 = glu->fc2.get<torch::nn::Linear>()->weight;
      b2 = glu->fc2.get<torch::nn::Linear>()->bias;
    } else if (std::string(linear) == "blockdiag") {
      w1 = glu->fc1.get<BlockdiagLinear>()->dense();
      w2 = glu->fc2.get<BlockdiagLinear>()->dense();
      b2 = glu->fc2.get<BlockdiagLinear>()->bias;
      CHECK(glu->fc1.get<BlockdiagLinear>()->weight.numel() == 16 * 64 / 4);
    } else {
      w1 = glu->fc1.get<MonarchLinear>()->dense();
      w2 = glu->fc2.get<MonarchLinear>()->dense();
      b2 = glu->fc2.get<MonarchLinear>()->bias;
    }
    const auto h = torch::matmul(x, w1.t()).chunk(2, -1);
    const auto expected = torch::matmul(torch::gelu(h[0]) * h[1], w2.t()) + b2;
    CHECK(max_diff(glu->forward(x), expected) <= 1e-12);
  }
}

}  // namespace BLOCKLAB_TEST_FILE
