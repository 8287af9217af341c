// mixer/matrix (tag [mixers]): every matrix type's fast apply equals its materialised matrix; the
// structure of each class (Toeplitz diagonals, the DFT, low rank, row-stochastic attention,
// causal semiseparable); the leading block at shorter lengths; quasiseparable == Hydra's core.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "blocks/mixers/matrix.h"
#include "blocks/ssm/hydra.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

constexpr std::int64_t kDim = 16, kMax = 12, kHeads = 4, kQk = 3;  // E = 32, headdim 8

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

MatrixMixer make(const std::string& matrix, bool data_dependent, const std::string& form = "chunked") {
  torch::manual_seed(5);
  MatrixMixer m(
      kDim, kMax,
      MatrixMixerOptions().matrix(matrix).data_dependent(data_dependent).headdim(8).qk_dim(kQk).form(form).chunk(4));
  m->to(torch::kFloat64);
  return m;
}

struct Variant {
  std::string matrix;
  bool data_dependent;
};

std::vector<Variant> variants() {
  std::vector<Variant> all;
  for (const auto& name : matrix_type_names()) {
    all.push_back({name, false});
    if (has_data_dependent_variant(name)) all.push_back({name, true});
  }
  return all;
}

MatrixInputs leading(const MatrixInputs& in, std::int64_t n) {
  return {in.v.narrow(1, 0, n), in.extra.narrow(1, 0, n), in.raw.narrow(1, 0, n)};
}

// y = M v per head, [B, N, E].
torch::Tensor apply(const torch::Tensor& m, const torch::Tensor& v) {
  const auto heads = v.view({v.size(0), v.size(1), kHeads, -1}).transpose(1, 2);
  return m.matmul(heads).transpose(1, 2).flatten(2);
}

torch::Tensor heads_of(const torch::Tensor& t) { return t.view({t.size(0), t.size(1), kHeads, -1}).transpose(1, 2); }

}  // namespace

TEST_CASE("mixer/matrix: every type's fast apply == its materialised matrix times v, and forward uses it", "[mixers]") {
  for (const auto& variant : variants()) {
    for (const std::int64_t n : {std::int64_t{1}, std::int64_t{9}, kMax}) {
      INFO(variant.matrix << " data_dependent " << variant.data_dependent << " N " << n);
      auto m = make(variant.matrix, variant.data_dependent);
      const auto u = torch::randn({2, n, kDim}, torch::kFloat64);
      torch::NoGradGuard no_grad;
      const auto [in, z] = m->inputs(u);
      const auto M = m->mixer->matrix(in);
      CHECK(M.size(1) == kHeads);
      CHECK(M.size(-1) == n);
      CHECK(max_diff(m->mixer->apply(in), apply(M, in.v)) <= 1e-9);
      const auto expected = m->out_proj->forward(m->norm->forward(apply(m->mixing_matrix(u), in.v), z));
      CHECK(max_diff(m->forward(u, {}), expected) <= 1e-9);
      if (n > 1) CHECK(M.abs().max().item<double>() > 1e-6);  // not a trivially empty matrix
    }
  }
}

TEST_CASE("mixer/matrix: data-independent types use the leading N x N block and refuse N > max_tokens", "[mixers]") {
  for (const auto& name : matrix_type_names()) {
    INFO(name);
    auto m = make(name, false);
    const auto u = torch::randn({2, kMax, kDim}, torch::kFloat64);
    torch::NoGradGuard no_grad;
    const auto in = m->inputs(u).first;
    const auto full = m->mixer->matrix(in), part = m->mixer->matrix(leading(in, 5));
    const auto block = full.narrow(-2, 0, 5).narrow(-1, 0, 5);
    if (name == "attention")
      CHECK(max_diff(part, block / block.sum(-1, true)) <= 1e-12);  // the softmax renormalises the block
    else
      CHECK(max_diff(part, block) <= 1e-12);
    CHECK_THROWS_WITH(m->forward(torch::randn({1, kMax + 1, kDim}, torch::kFloat64), {}),
                      Catch::Contains("max_tokens") && Catch::Contains(name));
  }
  auto dd = make("toeplitz", true);
  CHECK(dd->forward(torch::randn({1, kMax + 5, kDim}, torch::kFloat64), {}).size(1) == kMax + 5);
}

TEST_CASE("mixer/matrix: toeplitz matrices are constant along diagonals, and the kernel is c[t - s]", "[mixers]") {
  for (const bool dd : {false, true}) {
    INFO("data_dependent " << dd);
    auto m = make("toeplitz", dd);
    torch::NoGradGuard no_grad;
    const auto in = m->inputs(torch::randn({2, 9, kDim}, torch::kFloat64)).first;
    const auto M = m->mixer->matrix(in);
    CHECK(max_diff(M.narrow(-2, 1, 8).narrow(-1, 1, 8), M.narrow(-2, 0, 8).narrow(-1, 0, 8)) <= 1e-15);
    CHECK(max_diff(M.narrow(-2, 0, 8).narrow(-1, 1, 8), M.narrow(-2, 0, 8).narrow(-1, 0, 8)) > 1e-6);
    if (dd) {
      // Forward kernel f_d on the lower diagonals t - s = d >= 0, reverse r_d on the upper ones.
      const auto f = in.extra.narrow(-1, 0, kHeads), r = in.extra.narrow(-1, kHeads, kHeads);  // [B, N, H]
      const double scale = 0.5 / 3.0;                                                          // 0.5 / sqrt(9)
      CHECK(std::abs(M[1][2][5][2].item<double>() - scale * f[1][3][2].item<double>()) <= 1e-14);
      CHECK(std::abs(M[0][3][1][5].item<double>() - scale * r[0][4][3].item<double>()) <= 1e-14);
      CHECK(std::abs(M[0][0][4][4].item<double>() - scale * f[0][0][0].item<double>()) <= 1e-14);
    }
  }
}

TEST_CASE("mixer/matrix: data-independent vandermonde is cos(2 pi t l / L) / sqrt(L)", "[mixers]") {
  auto m = make("vandermonde", false);
  CHECK(m->mixer->parameters().empty());  // the fixed DFT
  torch::NoGradGuard no_grad;
  const auto M = m->mixer->matrix(m->inputs(torch::randn({1, 9, kDim}, torch::kFloat64)).first);
  const double pi = std::acos(-1.0), l = static_cast<double>(kMax);
  for (std::int64_t t = 0; t < 9; ++t)
    for (std::int64_t s = 0; s < 9; ++s)
      for (std::int64_t h = 0; h < kHeads; ++h)
        CHECK(std::abs(M[0][h][t][s].item<double>() - std::cos(2 * pi * t * s / l) / std::sqrt(l)) <= 1e-14);
}

TEST_CASE("mixer/matrix: data-dependent vandermonde and cauchy from their q, k", "[mixers]") {
  torch::NoGradGuard no_grad;
  const double pi = std::acos(-1.0);
  {
    auto m = make("vandermonde", true);
    const auto in = m->inputs(torch::randn({1, 6, kDim}, torch::kFloat64)).first;
    const auto q = heads_of(in.extra.narrow(-1, 0, kHeads * kQk)),
               k = heads_of(in.extra.narrow(-1, kHeads * kQk, kHeads * kQk));
    const auto M = m->mixer->matrix(in);
    double expected = 0.0;  // entry (h 2, t 4, l 1)
    for (std::int64_t d = 0; d < kQk; ++d)
      expected += std::cos(2 * pi * 1e-3 * q[0][2][4][d].item<double>() * 1) -
                  std::cos(2 * pi * 1e-3 * k[0][2][1][d].item<double>() * 4);
    CHECK(std::abs(M[0][2][4][1].item<double>() - expected / std::sqrt(2.0 * 6 * kQk)) <= 1e-14);
  }
  {
    auto m = make("cauchy", true);
    const auto in = m->inputs(torch::randn({1, 6, kDim}, torch::kFloat64)).first;
    const auto q = heads_of(in.extra.narrow(-1, 0, kHeads * kQk)),
               k = heads_of(in.extra.narrow(-1, kHeads * kQk, kHeads * kQk));
    const auto M = m->mixer->matrix(in);
    double expected = 0.0;  // entry (h 1, t 0, l 5), b = 0.5 at initialisation
    for (std::int64_t d = 0; d < kQk; ++d)
      expected += 1.0 / (std::exp(q[0][1][0][d].item<double>()) + std::exp(k[0][1][5][d].item<double>()) + 1.0 + 1e-8);
    CHECK(std::abs(M[0][1][0][5].item<double>() - expected / std::sqrt(6.0 * kQk)) <= 1e-14);
  }
}

TEST_CASE("mixer/matrix: low_rank is (Q K^T) V / sqrt(L d), of rank <= d", "[mixers]") {
  torch::NoGradGuard no_grad;
  for (const bool dd : {false, true}) {
    INFO("data_dependent " << dd);
    auto m = make("low_rank", dd);
    const std::int64_t n = 9;
    const auto in = m->inputs(torch::randn({2, n, kDim}, torch::kFloat64)).first;
    torch::Tensor q, k;
    if (dd) {
      q = heads_of(in.extra.narrow(-1, 0, kHeads * kQk));
      k = heads_of(in.extra.narrow(-1, kHeads * kQk, kHeads * kQk));
    } else {
      const auto params = m->mixer->named_parameters();
      q = params["q"].narrow(0, 0, n).permute({1, 0, 2}).unsqueeze(0);
      k = params["k"].narrow(0, 0, n).permute({1, 0, 2}).unsqueeze(0);
    }
    const double l = dd ? n : kMax;
    const auto expected = q.matmul(k.transpose(-1, -2)).matmul(heads_of(in.v)) / std::sqrt(l * kQk);
    CHECK(max_diff(m->mixer->apply(in), expected.transpose(1, 2).flatten(2)) <= 1e-12);
    const auto singular = torch::linalg_svdvals(m->mixer->matrix(in));  // descending
    CHECK((singular.narrow(-1, kQk, n - kQk) / singular.narrow(-1, 0, 1)).max().item<double>() <= 1e-12);
    CHECK((singular.narrow(-1, kQk - 1, 1) / singular.narrow(-1, 0, 1)).min().item<double>() > 1e-6);
  }
}

TEST_CASE("mixer/matrix: attention rows are probabilities; semiseparable is causal", "[mixers]") {
  torch::NoGradGuard no_grad;
  for (const bool dd : {false, true}) {
    INFO("data_dependent " << dd);
    auto a = make("attention", dd);
    const auto u = torch::randn({2, 9, kDim}, torch::kFloat64);
    const auto A = a->mixer->matrix(a->inputs(u).first);
    CHECK(max_diff(A.sum(-1), torch::ones_like(A.sum(-1))) <= 1e-12);
    CHECK(A.min().item<double>() >= 0.0);
    auto s = make("semiseparable", dd);
    const auto S = s->mixing_matrix(u);
    CHECK(S.triu(1).abs().max().item<double>() == 0.0);
    CHECK(S.tril(-1).abs().max().item<double>() > 1e-6);
    // ... so a later token never changes an earlier output of the matrix (the conv aside).
    auto in = s->inputs(u).first;
    const auto y = s->mixer->apply(in);
    in.v = in.v.clone();
    in.v.narrow(1, 6, 3).normal_();
    CHECK(max_diff(s->mixer->apply(in).narrow(1, 0, 6), y.narrow(1, 0, 6)) <= 1e-12);
  }
}

TEST_CASE("mixer/matrix: chunked == parallel for the SSD types", "[mixers]") {
  torch::NoGradGuard no_grad;
  for (const auto& name : {"semiseparable", "quasiseparable"})
    for (const bool dd : {false, true}) {
      INFO(name << " data_dependent " << dd);
      const auto u = torch::randn({2, 11, kDim}, torch::kFloat64);
      CHECK(max_diff(make(name, dd, "chunked")->forward(u, {}), make(name, dd, "parallel")->forward(u, {})) <= 1e-10);
    }
}

TEST_CASE("mixer/matrix: quasiseparable == ssm/hydra with B_b = B_f and C_b = C_f", "[mixers]") {
  const std::int64_t e = 2 * kDim, states = kHeads * kQk;
  auto m = make("quasiseparable", true);
  torch::manual_seed(9);
  Hydra h(kDim, HydraOptions().d_state(states).headdim(8).chunk(4));
  h->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    // Matrix mixer rows [z E | v E | B S | C S | dt 2H]; Hydra's [z E | x E | B_f C_f | B_b C_b | dt 2H].
    const auto w = m->in_proj->weight;
    h->in_proj->weight.copy_(torch::cat({w.narrow(0, 0, 2 * e + 2 * states), w.narrow(0, 2 * e, 2 * states),
                                         w.narrow(0, 2 * e + 2 * states, 2 * kHeads)}));
    const auto cw = m->conv->weight, cb = m->conv->bias;  // channels [v E | B S | C S]
    h->conv->weight.copy_(torch::cat({cw, cw.narrow(0, e, 2 * states)}));
    h->conv->bias.copy_(torch::cat({cb, cb.narrow(0, e, 2 * states)}));
    auto from = m->named_parameters();
    for (auto& p : h->core->named_parameters()) p.value().copy_(from["mixer.core." + p.key()]);
    h->norm->weight.copy_(m->norm->weight.detach() + 0.1 * torch::randn_like(m->norm->weight));
    m->norm->weight.copy_(h->norm->weight);
    h->out_proj->weight.copy_(m->out_proj->weight);
  }
  const auto u = torch::randn({2, 10, kDim}, torch::kFloat64);
  CHECK(max_diff(h->forward(u, {}), m->forward(u, {})) <= 1e-10);
  CHECK(max_diff(h->mixing_matrix(u), m->mixing_matrix(u)) <= 1e-10);
}

TEST_CASE("mixer/matrix: registry entry and option errors", "[mixers]") {
  const auto create = [](const std::string& text, std::int64_t max_tokens = 64) {
    return mixer_registry().create(parse_yaml(text, "test"), MixerArgs{32, max_tokens});
  };
  for (const auto& v : variants()) {
    INFO(v.matrix << " data_dependent " << v.data_dependent);
    const auto m = create("{type: mixer/matrix, matrix: " + v.matrix + ", data_dependent: " +
                          (v.data_dependent ? "true" : "false") + ", headdim: 16, qk_dim: 4, chunk: 8}");
    const auto x = torch::randn({2, 20, 32}, torch::requires_grad());
    const auto y = m->forward(x, {});
    CHECK(y.sizes() == x.sizes());
    y.pow(2).sum().backward();
    CHECK(x.grad().abs().sum().item<double>() > 0.0);
    CHECK(torch::isfinite(x.grad()).all().item<bool>());
    CHECK_FALSE(m->capabilities().causal);
    // The probe gets M itself (y = out(norm(M v, z))), unnormalised: what `blocklab attn` draws.
    CHECK(m->capabilities().weights == MixerCapabilities::Weights::unnormalised);
    AttentionProbe probe;
    probe.enable();
    MixerContext ctx;
    ctx.probe = &probe;
    torch::NoGradGuard no_grad;
    CHECK(torch::equal(m->forward(x, ctx), y.detach()));
    REQUIRE(probe.records().size() == 1);
    CHECK(torch::allclose(probe.records()[0].probs,
                          std::dynamic_pointer_cast<MatrixMixerImpl>(m)->mixing_matrix(x.detach())));
  }
  CHECK_THROWS_WITH(create("{type: mixer/matrix, matrix: dense, headdim: 16}"), Catch::Contains("data_dependent"));
  CHECK_THROWS_WITH(create("{type: mixer/matrix, matrix: dense, data_dependent: false, headdim: 16}", 0),
                    Catch::Contains("max_tokens"));
  CHECK_THROWS_WITH(create("{type: mixer/matrix, headdim: 24}"), Catch::Contains("headdim"));
  CHECK_THROWS_WITH(create("{type: mixer/matrix, matrix: circulant, headdim: 16}"), Catch::Contains("matrix"));
}

}  // namespace BLOCKLAB_TEST_FILE
