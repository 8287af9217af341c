// ssm/lmu (blocks/ssm/lmu.h), tag [ssm]: the Legendre A and B written out entry by entry; the
// zero-order hold against an independent computation (Taylor series of the matrix exponential in
// float64, and the textbook A^-1 (A_bar - I) B); the impulse response by doubling against the
// recurrence; the memory reconstructs a delayed smooth input through the Legendre polynomials;
// the FFT (parallel) form equals the recurrent form and token-by-token stepping.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/ssm/lmu.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// exp(M) and int_0^1 exp(M s) ds by a Taylor series at h = 2^-k (|M| h < 1/2), then doubled k
// times: exp(2hM) = exp(hM)^2, int_0^2h = (I + exp(hM)) int_0^h.
std::pair<torch::Tensor, torch::Tensor> series_exp_and_integral(const torch::Tensor& M) {
  const auto d = M.size(0);
  const auto I = torch::eye(d, M.options());
  int doublings = 0;
  double h = 1.0;
  while (torch::linalg_matrix_norm(M * h, 1).item<double>() > 0.5) {
    h /= 2;
    ++doublings;
  }
  auto exp = I.clone(), integral = I * h, term = I.clone();  // sum (hM)^k/k!, h sum (hM)^k/(k+1)!
  for (int k = 1; k < 30; ++k) {
    term = torch::matmul(term, M * h) / k;
    exp = exp + term;
    integral = integral + term * h / (k + 1);
  }
  for (int i = 0; i < doublings; ++i) {
    integral = torch::matmul(I + exp, integral);
    exp = torch::matmul(exp, exp);
  }
  return {exp, integral};
}

}  // namespace

TEST_CASE("lmu: A and B are the Legendre closed forms", "[ssm]") {
  const std::int64_t d = 5;
  const double theta = 7.0;
  const auto [A, B] = legendre_state_space(d, theta);
  REQUIRE(A.sizes() == torch::IntArrayRef({d, d}));
  for (std::int64_t i = 0; i < d; ++i) {
    CHECK(B[i].item<double>() == Approx((2 * i + 1) * std::pow(-1.0, i) / theta).epsilon(1e-15));
    for (std::int64_t j = 0; j < d; ++j) {
      const double sign = i < j ? -1.0 : std::pow(-1.0, i - j + 1);
      CHECK(A[i][j].item<double>() == Approx((2 * i + 1) / theta * sign).epsilon(1e-15));
    }
  }
  // A few entries by hand (theta = 7): A_00 = -1/7, A_01 = -1/7, A_10 = 3/7, A_11 = -3/7, A_21 = 5/7.
  CHECK(A[0][0].item<double>() == Approx(-1.0 / 7));
  CHECK(A[0][1].item<double>() == Approx(-1.0 / 7));
  CHECK(A[1][0].item<double>() == Approx(3.0 / 7));
  CHECK(A[1][1].item<double>() == Approx(-3.0 / 7));
  CHECK(A[2][1].item<double>() == Approx(5.0 / 7));
  CHECK(B[1].item<double>() == Approx(-3.0 / 7));
}

TEST_CASE("lmu: the zero-order hold equals an independent series computation", "[ssm]") {
  for (std::int64_t d : {1, 4, 12})
    for (double theta : {4.0, 16.0, 128.0}) {
      INFO("order " << d << ", theta " << theta);
      const auto [A, B] = legendre_state_space(d, theta);
      const auto [A_bar, B_bar] = zero_order_hold(A, B, 1.0);
      const auto [exp, integral] = series_exp_and_integral(A);
      CHECK(max_diff(A_bar, exp) <= 1e-12);
      CHECK(max_diff(B_bar, torch::matmul(integral, B)) <= 1e-12);
      // The textbook form A^-1 (A_bar - I) B (A is invertible).
      const auto textbook = torch::linalg_solve(A, torch::matmul(A_bar - torch::eye(d, A.options()), B), true);
      CHECK(max_diff(B_bar, textbook) <= 1e-10);
    }
  // dt scales time: ZOH with dt equals the ZOH of A dt, B dt with step 1.
  const auto [A, B] = legendre_state_space(6, 10.0);
  const auto [a1, b1] = zero_order_hold(A, B, 0.5);
  const auto [a2, b2] = zero_order_hold(A * 0.5, B * 0.5, 1.0);
  CHECK(max_diff(a1, a2) <= 1e-14);
  CHECK(max_diff(b1, b2) <= 1e-14);
  // A one-dimensional system by hand: dx/dt = -x/theta + u/theta, A_bar = e^(-1/theta), B_bar = 1 - e^(-1/theta).
  const auto [a0, b0] =
      zero_order_hold(torch::full({1, 1}, -0.25, torch::kFloat64), torch::full({1}, 0.25, torch::kFloat64), 1.0);
  CHECK(a0.item<double>() == Approx(std::exp(-0.25)).epsilon(1e-15));
  CHECK(b0.item<double>() == Approx(1 - std::exp(-0.25)).epsilon(1e-14));
}

TEST_CASE("lmu: the impulse response by doubling equals the recurrence", "[ssm]") {
  const auto [A, B] = legendre_state_space(7, 20.0);
  const auto [A_bar, B_bar] = zero_order_hold(A, B, 1.0);
  for (std::int64_t n : {1, 2, 5, 64, 77}) {
    const auto H = impulse_response(A_bar, B_bar, n);
    REQUIRE(H.sizes() == torch::IntArrayRef({n, 7}));
    auto h = B_bar.clone();
    for (std::int64_t t = 0; t < n; ++t) {
      CHECK(max_diff(H[t], h) <= 1e-13);
      h = torch::matmul(A_bar, h);
    }
  }
}

TEST_CASE("lmu: the memory holds the window: a delayed smooth input decodes through the Legendre polynomials",
          "[ssm]") {
  // m_t from a slowly varying input; u(t - delay) ~ sum_i P_i(2 delay / theta - 1) m_i(t).
  const std::int64_t d = 12, n = 400;
  const double theta = 64.0;
  LmuMixer lmu(8, LmuOptions().memory(d).theta(theta));
  lmu->to(torch::kFloat64);
  const auto t = torch::arange(n, torch::kFloat64);
  // ZOH holds u_t over (t - 1, t]: the continuous input at time tau is u at ceil(tau); sample the
  // smooth signal at the interval's middle so the held value tracks it.
  const auto signal = [](const torch::Tensor& time) {
    return torch::sin(2 * M_PI * time / 150.0) + 0.5 * torch::cos(2 * M_PI * time / 97.0);
  };
  const auto u = signal(t - 0.5).unsqueeze(0);   // [1, n]
  const auto m = lmu->memory(u, "parallel")[0];  // [n, d]
  const auto later = torch::indexing::Slice(200, n);
  for (double delay : {0.0, 16.0, 32.0, 48.0, 64.0}) {
    INFO("delay " << delay);
    const auto decoded = torch::matmul(m, legendre_decoder(d, delay, theta)).index({later});
    const auto wanted = signal(t - delay - 0.5).index({later});
    CHECK(max_diff(decoded, wanted) <= 0.05);
    // The wrong delay does not decode it (the test can fail).
    const auto other = torch::matmul(m, legendre_decoder(d, std::fmod(delay + 24.0, theta), theta)).index({later});
    CHECK(max_diff(other, wanted) > 0.3);
  }
  // The decoder written out: P_2(r) = (3r^2 - 1)/2, P_3(r) = (5r^3 - 3r)/2 at r = 2 * 16/64 - 1 = -0.5.
  const auto p = legendre_decoder(4, 16.0, 64.0);
  CHECK(p[2].item<double>() == Approx((3 * 0.25 - 1) / 2));
  CHECK(p[3].item<double>() == Approx((5 * -0.125 + 1.5) / 2));
}

TEST_CASE("lmu: the FFT form equals the recurrent form and stepping, float64", "[ssm]") {
  torch::manual_seed(3);
  for (std::int64_t n : {1, 7, 64, 131}) {
    INFO(n << " tokens");
    LmuMixer lmu(16, LmuOptions().memory(10).theta(32.0));
    lmu->to(torch::kFloat64);
    const auto x = torch::randn({2, n, 16}, torch::kFloat64);
    MixerContext ctx;
    ctx.causal = true;
    const auto parallel = lmu->forward(x, ctx);
    const auto u = torch::randn({2, n}, torch::kFloat64);
    CHECK(max_diff(lmu->memory(u, "parallel"), lmu->memory(u, "recurrent")) <= 1e-12);
    MixerState state = lmu->init_state(2, x.options());
    std::vector<torch::Tensor> ys;
    for (std::int64_t t = 0; t < n; ++t) {
      auto s = lmu->step(x.select(1, t), state, ctx);
      ys.push_back(s.output);
      state = s.state;
    }
    CHECK(max_diff(torch::stack(ys, 1), parallel) <= 1e-9);
    LmuMixer recurrent(16, LmuOptions().memory(10).theta(32.0).form("recurrent"));
    recurrent->to(torch::kFloat64);
    torch::NoGradGuard no_grad;
    for (auto& p : recurrent->named_parameters()) p.value().copy_(lmu->named_parameters()[p.key()]);
    CHECK(max_diff(recurrent->forward(x, ctx), parallel) <= 1e-9);
  }
}

TEST_CASE("lmu: the mixer's parameters are LMUFormer's; memory 0 means dim; bad options are named", "[ssm]") {
  LmuMixer lmu(12);
  CHECK(lmu->order() == 12);
  std::int64_t params = 0;
  for (const auto& p : lmu->parameters()) params += p.numel();
  CHECK(params == (12 + 1) + (24 * 12 + 12) + (12 * 12 + 12));  // W_u, W_h, W_o with biases
  CHECK(lmu->named_buffers().contains("A_bar"));
  const auto make = [](const std::string& yaml) {
    return mixer_registry().create(parse_yaml(yaml, "test"), MixerArgs{8, 16});
  };
  CHECK_THROWS_WITH(make("{type: ssm/lmu, form: fft}"), Catch::Contains("form"));
  CHECK_THROWS_WITH(make("{type: ssm/lmu, theta: 0}"), Catch::Contains("theta"));
  CHECK(make("{type: ssm/lmu, memory: 4}")->capabilities().recurrent);
}

}  // namespace BLOCKLAB_TEST_FILE
