// Mamba's fused selective scan (blocks/common/selective_scan.h), tag [ssm]: equal to the
// official naive scan (its LibTorch reference) in float64 (<= 1e-9), outputs, the last state and
// every gradient, across its chunks of 64 steps and blocks of 8 channels; with and without an
// initial state, the skip D, the gate z and delta = softplus(input + bias); stepping token by token continues it;
// float32; second derivatives refused.
#include <catch2/catch.hpp>

#include "blocks/common/selective_scan.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

struct ScanInputs {
  torch::Tensor u, delta, A, B, C, h0, D, z, delta_bias;  // gated: delta is softplus's input
  std::vector<torch::Tensor> leaves() const {
    std::vector<torch::Tensor> all{u, delta, A, B, C};
    for (const auto* t : {&h0, &D, &z, &delta_bias})
      if (t->defined()) all.push_back(*t);
    return all;
  }
};

// Mamba's ranges: delta = softplus(.) > 0, A = -exp(A_log) < 0.
ScanInputs inputs(std::int64_t batch, std::int64_t length, std::int64_t channels, std::int64_t states, bool initial,
                  torch::Dtype dtype = torch::kFloat64, bool gated = false) {
  const auto o = torch::TensorOptions(dtype);
  ScanInputs in{torch::randn({batch, length, channels}, o),
                torch::softplus(torch::randn({batch, length, channels}, o) - 1),
                -torch::exp(torch::randn({channels, states}, o)),
                torch::randn({batch, length, states}, o),
                torch::randn({batch, length, states}, o),
                initial ? torch::randn({batch, channels, states}, o) : torch::Tensor(),
                gated ? torch::randn({channels}, o) : torch::Tensor(),
                gated ? torch::randn({batch, length, channels}, o) : torch::Tensor(),
                gated ? torch::randn({channels}, o) - 1 : torch::Tensor()};
  if (gated) in.delta = torch::randn({batch, length, channels}, o) * 2;  // softplus's input: either sign
  for (auto* t : {&in.u, &in.delta, &in.A, &in.B, &in.C, &in.h0, &in.D, &in.z, &in.delta_bias})
    if (t->defined()) t->requires_grad_(true);
  return in;
}

// The gradients of sum(y * weights) over the inputs' leaves, then y and the last state, by the
// fused scan or by the naive one.
std::vector<torch::Tensor> scan_results(const ScanInputs& in, const torch::Tensor& weights, bool fused, bool softplus) {
  const auto scan = fused ? selective_scan : selective_scan_reference;
  const auto r = scan(in.u, in.delta, in.A, in.B, in.C, in.h0, in.D, in.z, in.delta_bias, softplus);
  auto g = torch::autograd::grad({(r.y * weights).sum()}, in.leaves());
  g.push_back(r.y.detach());
  g.push_back(r.last.detach());
  return g;
}

}  // namespace

TEST_CASE("selective scan: the fused form equals the naive scan, outputs, last state and gradients", "[ssm]") {
  torch::manual_seed(0);
  struct Case {
    std::int64_t length, channels, states;
    bool initial, gated;
  };
  // Lengths 1, 64 (one chunk), 65 and 150 (partial chunks); channels 3 (one partial block), 16
  // (two full blocks) and 19 (three blocks, the last partial).
  for (const Case& c : {Case{1, 3, 4, false, false}, Case{64, 19, 5, true, true}, Case{65, 3, 16, true, false},
                        Case{150, 19, 3, false, true}, Case{70, 16, 4, false, true}}) {
    INFO("length " << c.length << ", channels " << c.channels << ", states " << c.states << ", h0 " << c.initial
                   << ", D and z " << c.gated);
    const auto in = inputs(2, c.length, c.channels, c.states, c.initial, torch::kFloat64, c.gated);
    const auto weights = torch::randn({2, c.length, c.channels}, torch::kFloat64);
    const auto fused = scan_results(in, weights, true, c.gated), reference = scan_results(in, weights, false, c.gated);
    for (std::size_t i = 0; i < fused.size(); ++i) {
      INFO("output " << i << " (gradients of u, delta, A, B, C[, h0][, D, z, delta_bias]; then y, last)");
      CHECK(max_diff(fused[i], reference[i]) <= 1e-9);
    }
  }
}

TEST_CASE("selective scan: written out for one channel; stepping continues the scan", "[ssm]") {
  torch::manual_seed(1);
  torch::NoGradGuard no_grad;
  const auto in = inputs(1, 70, 2, 3, false);
  const auto y = selective_scan(in.u, in.delta, in.A, in.B, in.C).y;
  // h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, y_t = C_t . h_t, channel 1 by hand.
  auto h = torch::zeros({3}, torch::kFloat64);
  double worst = 0;
  for (std::int64_t t = 0; t < 70; ++t) {
    const auto dt = in.delta[0][t][1];
    h = torch::exp(dt * in.A[1]) * h + dt * in.u[0][t][1] * in.B[0][t];
    worst = std::max(worst, std::abs((in.C[0][t] * h).sum().item<double>() - y[0][t][1].item<double>()));
  }
  CHECK(worst <= 1e-12);
  // The first 40 tokens scanned, then 30 steps from its last state = the whole scan.
  const auto first = selective_scan(in.u.narrow(1, 0, 40), in.delta.narrow(1, 0, 40), in.A, in.B.narrow(1, 0, 40),
                                    in.C.narrow(1, 0, 40));
  auto state = first.last;
  for (std::int64_t t = 40; t < 70; ++t) {
    const auto s = selective_step(in.u.select(1, t), in.delta.select(1, t), in.A, in.B.select(1, t),
                                  in.C.select(1, t), state);
    CHECK(max_diff(s.y, y.select(1, t)) <= 1e-12);
    state = s.last;
  }
  // ... and scanning the rest from that state equals it too.
  const auto rest = selective_scan(in.u.narrow(1, 40, 30), in.delta.narrow(1, 40, 30), in.A, in.B.narrow(1, 40, 30),
                                   in.C.narrow(1, 40, 30), first.last);
  CHECK(max_diff(rest.y, y.narrow(1, 40, 30)) <= 1e-12);
}

// Training runs in float32, on the float lanes (their own exp and softplus): outputs and every
// gradient equal the naive scan's in float32 up to float rounding (relative to each tensor's size).
TEST_CASE("selective scan: float32, outputs and every gradient", "[ssm]") {
  torch::manual_seed(3);
  const auto f32 = inputs(2, 100, 12, 16, true, torch::kFloat32, /*gated=*/true);
  const auto weights = torch::randn({2, 100, 12});
  const auto fused = scan_results(f32, weights, true, true), reference = scan_results(f32, weights, false, true);
  for (std::size_t i = 0; i < fused.size(); ++i) {
    INFO("output " << i << " (gradients of u, delta, A, B, C, h0, D, z, delta_bias; then y, last)");
    CHECK(max_diff(fused[i], reference[i]) <= 1e-5 * std::max(1.0, reference[i].abs().max().item<double>()));
  }
}

TEST_CASE("selective scan: bad shapes are named; the fused backward refuses a second derivative", "[ssm]") {
  const auto in = inputs(1, 5, 2, 3, false);
  CHECK_THROWS_WITH(selective_scan(in.u, in.delta, in.A, in.B.narrow(1, 0, 4), in.C),
                    Catch::Contains("B and C must be [B, L, N]"));
  CHECK_THROWS_WITH(selective_scan(in.u, in.delta.narrow(2, 0, 1), in.A, in.B, in.C),
                    Catch::Contains("u and delta must be [B, L >= 1, D]"));
  const auto y = selective_scan(in.u, in.delta, in.A, in.B, in.C).y;
  CHECK_THROWS_WITH(torch::autograd::grad({y.pow(2).sum()}, {in.u}, {}, true, /*create_graph=*/true),
                    Catch::Contains("not differentiable again"));
}

}  // namespace BLOCKLAB_TEST_FILE
