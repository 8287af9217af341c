// ssm/hydra (tag [ssm]): the two shifted SSD scans equal the closed-form quasiseparable matrix of
// catalog_000_001 B 0-09; chunked == parallel; reflection equivariance; no diagonal without
// W_fcD and D.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/ssm/hydra.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

Hydra small_hydra(const std::string& form = "chunked", std::int64_t chunk = 4) {
  torch::manual_seed(3);
  Hydra m(8, HydraOptions().d_state(3).headdim(4).form(form).chunk(chunk));  // E = 16, H = 4
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  m->core->A_log.uniform_(-1.0, 1.0);  // a decay per head, not the init's A = -1 everywhere
  m->core->D.uniform_(-1.0, 1.0);
  return m;
}

// M [B, H, L, L] by the closed form, entry by entry (catalog B 0-09).
torch::Tensor closed_form(const QuasiseparableInputs& in) {
  const auto b = in.x.size(0), l = in.x.size(1), h = in.x.size(2);
  auto m = torch::zeros({b, h, l, l}, torch::kFloat64);
  const auto A = in.A.accessor<double, 1>();
  const auto dt_f = in.dt_f.accessor<double, 3>(), dt_b = in.dt_b.accessor<double, 3>();
  const auto diag = in.diagonal.accessor<double, 3>();
  const auto Bf = in.B_f.contiguous(), Cf = in.C_f.contiguous(), Bb = in.B_b.contiguous(), Cb = in.C_b.contiguous();
  const auto dot = [](const torch::Tensor& u, const torch::Tensor& v) { return (u * v).sum().item<double>(); };
  auto acc = m.accessor<double, 4>();
  for (std::int64_t n = 0; n < b; ++n)
    for (std::int64_t k = 0; k < h; ++k)
      for (std::int64_t i = 0; i < l; ++i)
        for (std::int64_t j = 0; j < l; ++j) {
          if (i > j) {
            double s = 0.0;
            for (std::int64_t r = j + 1; r < i; ++r) s += dt_f[n][r][k];
            acc[n][k][i][j] = dot(Cf[n][i - 1], Bf[n][j]) * std::exp(A[k] * s) * dt_f[n][j][k];
          } else if (i < j) {
            double s = 0.0;
            for (std::int64_t r = i + 1; r < j; ++r) s += dt_b[n][r][k];
            acc[n][k][i][j] = dot(Cb[n][i + 1], Bb[n][j]) * std::exp(A[k] * s) * dt_b[n][j][k];
          } else {
            acc[n][k][i][j] = diag[n][i][k];
          }
        }
  return m;
}

// y [B, L, E] = M x per head.
torch::Tensor apply(const torch::Tensor& m, const torch::Tensor& x) {
  return m.matmul(x.transpose(1, 2)).transpose(1, 2).flatten(2);
}

void swap_rows(torch::Tensor& w, std::int64_t a, std::int64_t b, std::int64_t count) {
  const auto first = w.narrow(0, a, count).clone();
  w.narrow(0, a, count).copy_(w.narrow(0, b, count));
  w.narrow(0, b, count).copy_(first);
}

}  // namespace

TEST_CASE("ssm/hydra: the scans equal the closed-form quasiseparable matrix applied to x", "[ssm]") {
  for (const std::string form : {"parallel", "chunked"}) {
    INFO("form " << form);
    auto m = small_hydra(form, 3);
    const auto u = torch::randn({2, 7, 8}, torch::kFloat64);
    torch::NoGradGuard no_grad;
    const auto [in, z] = m->core_inputs(u);
    const auto expected = closed_form(in);
    CHECK(max_diff(m->mixing_matrix(u), expected) <= 1e-9);
    CHECK(max_diff(quasiseparable(in, form, 3), apply(expected, in.x).view_as(in.x)) <= 1e-9);
    const auto out = m->out_proj->forward(m->norm->forward(apply(expected, in.x), z));
    CHECK(max_diff(m->forward(u, {}), out) <= 1e-9);
    // The oracle is not trivially satisfied: a changed entry shows.
    CHECK(max_diff(m->forward(u + 1e-3 * torch::randn_like(u), {}), out) > 1e-6);
  }
}

TEST_CASE("ssm/hydra: chunked == parallel, for chunks that do and do not divide L", "[ssm]") {
  const auto u = torch::randn({2, 13, 8}, torch::kFloat64);
  auto parallel = small_hydra("parallel");
  for (std::int64_t chunk : {1, 4, 13, 32}) {
    auto chunked = small_hydra("chunked", chunk);
    CHECK(max_diff(chunked->forward(u, {}), parallel->forward(u, {})) <= 1e-10);
  }
}

TEST_CASE("ssm/hydra: reflection equivariance (swap the directions, reverse the conv, flip the input)", "[ssm]") {
  auto m = small_hydra(), r = small_hydra();
  const std::int64_t e = 16, n = 3, h = 4;
  {
    torch::NoGradGuard no_grad;
    auto w = r->in_proj->weight;  // rows [z E | x E | B_f C_f | B_b C_b | dt_f H | dt_b H]
    swap_rows(w, 2 * e, 2 * e + 2 * n, 2 * n);
    swap_rows(w, 2 * e + 4 * n, 2 * e + 4 * n + h, h);
    auto cw = r->conv->weight, cb = r->conv->bias;  // channels [x E | B_f C_f | B_b C_b]
    swap_rows(cw, e, e + 2 * n, 2 * n);
    swap_rows(cb, e, e + 2 * n, 2 * n);
    cw.copy_(cw.flip(-1));
  }
  const auto u = torch::randn({2, 9, 8}, torch::kFloat64);
  const auto y = m->forward(u, {});
  CHECK(max_diff(r->forward(u.flip(1), {}), y.flip(1)) <= 1e-10);
  CHECK(max_diff(m->forward(u.flip(1), {}), y.flip(1)) > 1e-4);  // Hydra itself is not reflection-symmetric
}

TEST_CASE("ssm/hydra: with W_fcD = 0 and D = 0 the core has no diagonal (d y_i / d x_i = 0)", "[ssm]") {
  auto m = small_hydra();
  const auto u = torch::randn({2, 6, 8}, torch::kFloat64);
  const auto jacobian_diagonal = [&](bool zero_diagonal) {
    torch::NoGradGuard no_grad;
    if (zero_diagonal) {
      m->core->fc_D->weight.zero_();
      m->core->D.zero_();
    }
    auto in = m->core_inputs(u).first;
    double on = 0.0, off = 0.0;
    for (std::int64_t i = 0; i < 6; ++i) {
      torch::AutoGradMode grad_on(true);
      const auto x = in.x.detach().requires_grad_();
      auto terms = in;
      terms.x = x;
      terms.diagonal = m->core->fc_D->forward(x.flatten(2)) + m->core->D;
      const auto y = quasiseparable(terms, "chunked", 4);
      const auto g = torch::autograd::grad({(y.select(1, i) * torch::randn_like(y.select(1, i))).sum()}, {x})[0];
      on = std::max(on, g.select(1, i).abs().max().item<double>());
      off = std::max(off, (g.abs().sum(1) - g.select(1, i).abs()).max().item<double>());
    }
    return std::make_pair(on, off);
  };
  const auto [with_on, with_off] = jacobian_diagonal(false);
  CHECK(with_on > 1e-3);  // the default diagonal x W_fcD + D
  const auto [on, off] = jacobian_diagonal(true);
  CHECK(on <= 1e-12);
  CHECK(off > 1e-3);  // the other tokens still mix in
  const auto diagonal = m->mixing_matrix(u).diagonal(0, -2, -1);
  CHECK(diagonal.abs().max().item<double>() == 0.0);
}

TEST_CASE("ssm/hydra: registry entry and option errors", "[ssm]") {
  const auto m =
      mixer_registry().create(parse_yaml("{type: ssm/hydra, d_state: 4, headdim: 16}", "test"), MixerArgs{32, 64});
  CHECK(m->forward(torch::randn({1, 5, 32}), {}).sizes() == std::vector<std::int64_t>{1, 5, 32});
  CHECK_FALSE(m->capabilities().causal);
  CHECK_FALSE(m->capabilities().recurrent);
  CHECK_THROWS_WITH(mixer_registry().create(parse_yaml("{type: ssm/hydra, headdim: 24}", "test"), MixerArgs{32, 64}),
                    Catch::Contains("headdim"));
  CHECK_THROWS_WITH(mixer_registry().create(parse_yaml("{type: ssm/hydra, d_conv: 4}", "test"), MixerArgs{32, 64}),
                    Catch::Contains("d_conv"));
}

}  // namespace BLOCKLAB_TEST_FILE
