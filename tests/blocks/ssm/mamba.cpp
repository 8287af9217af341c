// ssm/mamba and ssm/mamba2 (tag [ssm]): Mamba's block against Algorithm 2 written out token by
// token, its fused scan against the reference, its recurrent form, its initialisation; Mamba-2's
// chunked == parallel == recurrent forms across chunk boundaries, its core against the
// semiseparable matrix it defines, the decay of its state when B is zero, its state size.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/common/ssd.h"
#include "blocks/ssm/mamba.h"
#include "blocks/ssm/mamba2.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

MixerContext context(bool causal) {
  MixerContext ctx;
  ctx.causal = causal;
  return ctx;
}

// Steps a mixer through x [B, L, C] token by token; checks the state's size stays put.
torch::Tensor run_steps(TokenMixerImpl& m, const torch::Tensor& x) {
  MixerState state = m.init_state(x.size(0), x.options());
  const auto size = state.numel();
  std::vector<torch::Tensor> outputs;
  for (std::int64_t t = 0; t < x.size(1); ++t) {
    MixerStep s = m.step(x.select(1, t), state, context(true));
    outputs.push_back(s.output);
    state = std::move(s.state);
    CHECK(state.numel() == size);
  }
  CHECK(state.position == x.size(1));
  return torch::stack(outputs, 1);
}

// Gradients of <y, w> in x and in every parameter of m, then y itself.
std::vector<torch::Tensor> grads(torch::nn::Module& m, const torch::Tensor& x, const torch::Tensor& y,
                                 const torch::Tensor& w) {
  std::vector<torch::Tensor> inputs{x};
  for (const auto& p : m.parameters()) inputs.push_back(p);
  auto g = torch::autograd::grad({(y * w).sum()}, inputs);
  g.push_back(y.detach());
  return g;
}

// The causal depthwise convolution written out: y_t = bias + sum_k w[:, k] u_{t - K + 1 + k} (zeros
// before the start); u [B, L, E], w [E, 1, K].
torch::Tensor causal_conv_by_hand(const torch::Tensor& u, const torch::Tensor& w, const torch::Tensor& bias) {
  const auto taps = w.size(-1);
  std::vector<torch::Tensor> outputs;
  for (std::int64_t t = 0; t < u.size(1); ++t) {
    auto y = bias.unsqueeze(0).expand({u.size(0), -1}).clone();
    for (std::int64_t k = 0; k < taps; ++k)
      if (t - taps + 1 + k >= 0) y = y + w.select(-1, k).squeeze(1) * u.select(1, t - taps + 1 + k);
    outputs.push_back(y);
  }
  return torch::stack(outputs, 1);
}

}  // namespace

TEST_CASE("ssm/mamba: the block equals Algorithm 2 written out token by token", "[ssm]") {
  torch::manual_seed(0);
  const std::int64_t c = 8, n = 4, l = 9, e = 16, r = 1;  // dt_rank ceil(8 / 16) = 1
  Mamba m(c, MambaOptions().d_state(n));
  m->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;  // D and A away from their initial values, so that both matter
    m->D.uniform_(-1.0, 1.0);
    m->A_log.add_(torch::randn_like(m->A_log) * 0.3);
  }
  const auto x = torch::randn({2, l, c}, torch::kFloat64);
  const auto uz = torch::matmul(x, m->in_proj->weight.t());
  const auto z = uz.narrow(-1, e, e);
  const auto conv = causal_conv_by_hand(uz.narrow(-1, 0, e), m->conv->weight, m->conv->bias);
  auto h = torch::zeros({2, e, n}, torch::kFloat64);
  std::vector<torch::Tensor> outputs;
  for (std::int64_t t = 0; t < l; ++t) {
    const auto u = torch::silu(conv.select(1, t));             // [2, E]
    const auto dbc = torch::matmul(u, m->x_proj->weight.t());  // [2, R + 2N]
    const auto delta = torch::softplus(torch::matmul(dbc.narrow(-1, 0, r), m->dt_proj->weight.t()) + m->dt_proj->bias);
    const auto B = dbc.narrow(-1, r, n), C = dbc.narrow(-1, r + n, n);
    const auto A = -torch::exp(m->A_log);
    h = torch::exp(delta.unsqueeze(-1) * A) * h + (delta * u).unsqueeze(-1) * B.unsqueeze(1);
    const auto y = (h * C.unsqueeze(1)).sum(-1) + m->D * u;
    outputs.push_back(torch::matmul(y * torch::silu(z.select(1, t)), m->out_proj->weight.t()));
  }
  const auto expected = torch::stack(outputs, 1);
  CHECK(max_diff(m->forward(x, context(true)), expected) <= 1e-12);
  CHECK(max_diff(m->forward(x, context(false)), expected) <= 1e-12);  // causal only
}

TEST_CASE("ssm/mamba: the fused scan equals the reference scan, outputs and gradients", "[ssm]") {
  const auto build = [](const std::string& scan) {
    torch::manual_seed(3);
    Mamba m(16, MambaOptions().d_state(6).scan(scan));
    m->to(torch::kFloat64);
    return m;
  };
  auto fused = build("fused"), reference = build("reference");
  for (std::int64_t l : {1, 7, 37}) {
    INFO("tokens " << l);
    torch::manual_seed(4);
    const auto x = torch::randn({2, l, 16}, torch::kFloat64).requires_grad_(true);
    const auto w = torch::randn({2, l, 16}, torch::kFloat64);
    const auto a = grads(*fused, x, fused->forward(x, context(true)), w);
    const auto b = grads(*reference, x, reference->forward(x, context(true)), w);
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(max_diff(a[i], b[i]) <= 1e-9);
  }
}

TEST_CASE("ssm/mamba: stepping token by token equals the forward; the state is [B, E, k - 1] and [B, E, N]", "[ssm]") {
  torch::manual_seed(5);
  Mamba m(16, MambaOptions().d_state(5).d_conv(3));
  m->to(torch::kFloat64);
  m->eval();
  torch::NoGradGuard no_grad;
  const auto state = m->init_state(2, torch::kFloat64);
  REQUIRE(state.tensors.size() == 2);
  CHECK(state.tensors[0].sizes() == torch::IntArrayRef({2, 32, 2}));
  CHECK(state.tensors[1].sizes() == torch::IntArrayRef({2, 32, 5}));
  for (std::int64_t l : {1, 2, 16, 37}) {
    INFO("tokens " << l);
    const auto x = torch::randn({2, l, 16}, torch::kFloat64);
    CHECK(max_diff(run_steps(*m, x), m->forward(x, context(true))) <= 1e-9);
  }
}

TEST_CASE("ssm/mamba: initialisation: A = -(1..N) per channel, softplus(b_dt) in [dt_min, dt_max], W_dt bounded",
          "[ssm]") {
  torch::manual_seed(6);
  const double dt_min = 0.01, dt_max = 0.05;
  Mamba m(64, MambaOptions().d_state(7).dt_min(dt_min).dt_max(dt_max).dt_scale(0.5));
  const auto expected = -torch::arange(1, 8, torch::kFloat32).repeat({128, 1});
  CHECK(max_diff(m->A(), expected) <= 1e-5);
  const auto dt = torch::softplus(m->dt_proj->bias.detach());
  CHECK(dt.min().item<double>() >= dt_min * (1 - 1e-5));
  CHECK(dt.max().item<double>() <= dt_max * (1 + 1e-5));
  CHECK(dt.max().item<double>() - dt.min().item<double>() > 0.5 * (dt_max - dt_min));  // spread, not constant
  CHECK(m->dt_proj->weight.size(1) == 4);                                              // ceil(64 / 16)
  CHECK(m->dt_proj->weight.abs().max().item<double>() <= 0.5 / 2.0);                   // dt_scale / sqrt(R)
  CHECK(torch::all(m->D == 1).item<bool>());
  const std::vector<std::string> no_decay{"A_log"};
  CHECK(m->no_weight_decay() == no_decay);
}

TEST_CASE("ssm/mamba2: chunked == parallel == recurrent across chunk boundaries, outputs and gradients", "[ssm]") {
  const auto build = [](const std::string& form) {
    torch::manual_seed(7);
    Mamba2 m(16, Mamba2Options().d_state(6).headdim(8).chunk(16).form(form));
    m->to(torch::kFloat64);
    return m;
  };
  auto chunked = build("chunked"), parallel = build("parallel");
  for (std::int64_t l : {1, 5, 16, 37}) {
    INFO("tokens " << l);
    torch::manual_seed(8);
    const auto x = torch::randn({2, l, 16}, torch::kFloat64).requires_grad_(true);
    const auto w = torch::randn({2, l, 16}, torch::kFloat64);
    const auto a = grads(*chunked, x, chunked->forward(x, context(true)), w);
    const auto b = grads(*parallel, x, parallel->forward(x, context(false)), w);
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(max_diff(a[i], b[i]) <= 1e-9);
    torch::NoGradGuard no_grad;
    CHECK(max_diff(run_steps(*chunked, x.detach()), a.back()) <= 1e-9);
  }
}

TEST_CASE("ssm/mamba2: the block equals its recurrence written out, with the gated RMSNorm after the gate", "[ssm]") {
  torch::manual_seed(11);
  const std::int64_t c = 8, n = 3, p = 4, l = 7, e = 16, heads = 4;
  Mamba2 m(c, Mamba2Options().d_state(n).headdim(p).chunk(4));
  m->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    m->D.uniform_(-1.0, 1.0);
    m->norm->weight.uniform_(0.5, 1.5);
  }
  const auto x = torch::randn({2, l, c}, torch::kFloat64);
  const auto proj = torch::matmul(x, m->in_proj->weight.t());  // [z | x B C | dt]
  const auto z = proj.narrow(-1, 0, e), dt_raw = proj.narrow(-1, 2 * e + 2 * n, heads);
  const auto xbc = torch::silu(causal_conv_by_hand(proj.narrow(-1, e, e + 2 * n), m->conv->weight, m->conv->bias));
  auto h = torch::zeros({2, heads, n, p}, torch::kFloat64);
  std::vector<torch::Tensor> outputs;
  for (std::int64_t t = 0; t < l; ++t) {
    const auto xt = xbc.select(1, t).narrow(-1, 0, e).view({2, heads, p});
    const auto B = xbc.select(1, t).narrow(-1, e, n), C = xbc.select(1, t).narrow(-1, e + n, n);
    const auto dt = torch::softplus(dt_raw.select(1, t) + m->dt_bias);  // [2, H]
    const auto decay = torch::exp(dt * -torch::exp(m->A_log)).view({2, heads, 1, 1});
    h = decay * h + dt.view({2, heads, 1, 1}) * B.view({2, 1, n, 1}) * xt.unsqueeze(2);
    const auto y = ((C.view({2, 1, n, 1}) * h).sum(2) + m->D.view({heads, 1}) * xt).reshape({2, e});
    const auto gated = y * torch::silu(z.select(1, t));
    const auto normed = gated / torch::sqrt(gated.pow(2).mean(-1, true) + 1e-5) * m->norm->weight;
    outputs.push_back(torch::matmul(normed, m->out_proj->weight.t()));
  }
  const auto expected = torch::stack(outputs, 1);
  CHECK(max_diff(m->forward(x, context(true)), expected) <= 1e-12);
  CHECK(max_diff(m->forward(x, context(false)), expected) <= 1e-12);  // causal only
}

TEST_CASE("ssm/mamba2: the core equals its semiseparable matrix (plus D) applied to the heads' inputs", "[ssm]") {
  torch::manual_seed(9);
  Mamba2 m(16, Mamba2Options().d_state(4).headdim(8).chunk(4));
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  m->D.uniform_(-1.0, 1.0);
  const auto x = torch::randn({2, 11, 16}, torch::kFloat64);
  const auto in = m->inner(x);
  const auto M = m->mixing_matrix(x);  // [B, H, L, L]
  REQUIRE(M.sizes() == torch::IntArrayRef({2, 4, 11, 11}));
  const auto by_matrix = torch::matmul(M, in.x.permute({0, 2, 1, 3})).permute({0, 2, 1, 3});  // [B, L, H, P]
  CHECK(max_diff(m->core(in), by_matrix) <= 1e-10);
  CHECK(max_diff(M.triu(1), torch::zeros_like(M)) == 0.0);  // causal: lower triangular
  // One entry by the definition: M_ij = C_i . B_j dt_j exp(A_h sum_{j < l <= i} dt_l), i > j.
  const std::int64_t b = 1, h = 2, i = 9, j = 3;
  const double decay =
      std::exp(m->A()[h].item<double>() * in.dt[b].narrow(0, j + 1, i - j).select(1, h).sum().item<double>());
  const double expected = (in.C[b][i] * in.B[b][j]).sum().item<double>() * in.dt[b][j][h].item<double>() * decay;
  CHECK(std::abs(M[b][h][i][j].item<double>() - expected) <= 1e-12);
  CHECK(std::abs(M[b][h][i][i].item<double>() -
                 ((in.C[b][i] * in.B[b][i]).sum() * in.dt[b][i][h] + m->D[h]).item<double>()) <= 1e-12);
}

TEST_CASE("ssm/mamba2: with B zero after t0 the state decays by exp(A sum dt) and y_t = decay C_t . h_t0 + D x_t",
          "[ssm]") {
  torch::manual_seed(10);
  Mamba2 m(16, Mamba2Options().d_state(4).headdim(8).chunk(8));
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  const std::int64_t l = 21, t0 = 6;
  auto in = m->inner(torch::randn({2, l, 16}, torch::kFloat64));
  in.B = in.B.clone();
  in.B.narrow(1, t0 + 1, l - t0 - 1).zero_();
  const auto A = m->A();
  // The state by steps: h [B, H, N, P].
  auto h = torch::zeros({2, m->heads(), 4, 8}, torch::kFloat64), h_t0 = h;
  for (std::int64_t t = 0; t < l; ++t) {
    h = ssd_step(in.x.select(1, t), in.dt.select(1, t), A, in.B.select(1, t), in.C.select(1, t), h).second;
    if (t == t0) h_t0 = h;
  }
  const auto decay = torch::exp(in.dt.narrow(1, t0 + 1, l - t0 - 1).sum(1) * A);  // [B, H]
  CHECK(max_diff(h, h_t0 * decay.unsqueeze(-1).unsqueeze(-1)) <= 1e-12);
  CHECK(h.abs().max().item<double>() < h_t0.abs().max().item<double>());
  // The chunked core after t0 (crossing chunk boundaries at 8 and 16).
  const auto y = m->core(in);
  for (std::int64_t t = t0 + 1; t < l; ++t) {
    const auto d = torch::exp(in.dt.narrow(1, t0 + 1, t - t0).sum(1) * A);  // [B, H]
    const auto expected = torch::einsum("bn,bhnp->bhp", {in.C.select(1, t), h_t0}) * d.unsqueeze(-1) +
                          in.x.select(1, t) * m->D.unsqueeze(-1);
    CHECK(max_diff(y.select(1, t), expected) <= 1e-10);
  }
}

TEST_CASE("ssm/mamba2: the state is [B, E + 2N, k - 1] and [B, H, N, P]; the defaults; bad options", "[ssm]") {
  Mamba2 m(16, Mamba2Options().d_state(4).headdim(8).d_conv(3));
  const auto state = m->init_state(3, torch::kFloat32);
  REQUIRE(state.tensors.size() == 2);
  CHECK(state.tensors[0].sizes() == torch::IntArrayRef({3, 32 + 8, 2}));
  CHECK(state.tensors[1].sizes() == torch::IntArrayRef({3, 4, 4, 8}));
  CHECK(m->in_proj->weight.size(0) == 32 + 40 + 4);  // [z, xBC, dt]
  const auto a = -m->A();
  CHECK(a.min().item<double>() >= 1.0 - 1e-6);
  CHECK(a.max().item<double>() <= 16.0 + 1e-6);
  const auto dt = torch::softplus(m->dt_bias.detach());
  CHECK(dt.min().item<double>() >= 1e-3 * (1 - 1e-5));
  CHECK(dt.max().item<double>() <= 0.1 * (1 + 1e-5));
  const Mamba2Options defaults;
  CHECK(defaults.d_state() == 128);
  CHECK(defaults.headdim() == 64);
  CHECK(defaults.chunk() == 256);
  const auto make = [](const std::string& yaml) {
    return mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{32, 16});
  };
  CHECK_THROWS_WITH(make("{type: ssm/mamba2, headdim: 24}"), Catch::Contains("headdim"));
  CHECK_THROWS_AS(make("{type: ssm/mamba2, form: recurrent}"), ConfigError);
  CHECK_THROWS_WITH(make("{type: ssm/mamba2, A_init_min: 20}"), Catch::Contains("A_init_min"));
  CHECK_THROWS_AS(make("{type: ssm/mamba, scan: cuda}"), ConfigError);
  CHECK_THROWS_WITH(make("{type: ssm/mamba, dt_min: 0.5}"), Catch::Contains("dt_min"));
  CHECK(make("{type: ssm/mamba2, headdim: 16}")->capabilities().recurrent);
}

}  // namespace BLOCKLAB_TEST_FILE
