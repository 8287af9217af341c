// The generic conformance checks, for any module kind: a Subject says how to build a fresh
// float64 module, run it and make an input; each check builds its own module at a fixed seed.
//   shape        output shape, float64, finite
//   grad         every parameter (and the input) gets a finite gradient
//   grad values  autograd's gradient of a random projection of the output, along a random
//                direction in the input and in each parameter alone, equals the central finite
//                difference (float64): a wrong backward (a fused kernel's, a custom Function's)
//                shows here even when the forward is right
//   determinism  the same seed builds the same module and gives the same output (train mode,
//                so dropout / drop_path draws are covered too)
//   batch        in eval mode, changing sample j changes no other sample's output
//   causal       perturbing token t changes no output before t (and does change some after)
#pragma once

#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "registry/registry.h"
#include "registry/yaml_io.h"

namespace blocklab::conformance {

inline ConfigNode example_config(const EntryInfo& e) {
  ConfigNode node = parse_yaml(e.example.empty() ? "{}" : e.example, e.key + " example (" + e.defined_at + ")");
  if (!node.is_map()) node = ConfigNode::map();
  node.set("type", ConfigNode::string(e.key));
  return node;
}

inline double as_double(const torch::Tensor& t) { return t.item<double>(); }

inline bool all_finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

inline bool close(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, rtol, atol);
}

template <class M>
struct Subject {
  std::function<M()> build;                                        // a fresh float64 module
  std::function<torch::Tensor(M&, const torch::Tensor&)> forward;  // input -> output
  std::function<torch::Tensor()> input;                            // a fresh float64 input
};

template <class M>
void check_shape(const Subject<M>& s, std::vector<std::int64_t> expected) {
  torch::manual_seed(1);
  M m = s.build();
  m->eval();
  const auto y = s.forward(m, s.input());
  CHECK(y.sizes() == torch::IntArrayRef(expected));
  CHECK(y.scalar_type() == torch::kFloat64);
  CHECK(all_finite(y));
}

template <class M>
void check_grads(const Subject<M>& s) {
  torch::manual_seed(2);
  M m = s.build();
  m->train();
  const torch::Tensor x = s.input().requires_grad_(true);
  const auto y = s.forward(m, x);
  // A random projection of the output: a plain sum is blind after a LayerNorm.
  (y * torch::randn_like(y)).sum().backward();
  for (const auto& p : m->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    INFO("parameter " << p.key());
    REQUIRE(p.value().grad().defined());
    CHECK(all_finite(p.value().grad()));
  }
  REQUIRE(x.grad().defined());
  CHECK(all_finite(x.grad()));
  CHECK(x.grad().abs().sum().item<double>() > 0.0);
}

// d/de L(theta + e v) at e = 0, for L = <output, r>: by autograd (<grad L, v>) and by central
// differences (L(theta + h v) - L(theta - h v)) / 2h, along v in the input and in each
// parameter alone. Train mode, every forward from the same seed (dropout draws alike).
// `input_too` false: parameters only, for whole models whose input is data (NLinear detaches
// the last value it subtracts, as its official code does: no gradient flows there by design).
template <class M>
void check_grad_values(const Subject<M>& s, bool input_too = true) {
  torch::manual_seed(5);
  M m = s.build();
  m->train();
  const torch::Tensor x = s.input().requires_grad_(true);
  const auto loss = [&](const torch::Tensor& input) -> torch::Tensor {
    torch::manual_seed(6);
    const torch::Tensor y = s.forward(m, input);
    torch::manual_seed(7);
    return (y * torch::randn_like(y)).sum();
  };
  loss(x).backward();
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  if (input_too) targets.emplace_back("the input", x);
  for (const auto& p : m->named_parameters())
    if (p.value().requires_grad()) targets.emplace_back("parameter " + p.key(), p.value());
  constexpr double h = 1e-6;
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : targets) {
    INFO("direction in " << name);
    torch::manual_seed(8);
    const auto v = torch::randn_like(t);
    const double analytic = as_double((t.grad() * v).sum());
    const auto original = t.clone();
    t.add_(v, h);
    const double up = as_double(loss(x));
    t.copy_(original).add_(v, -h);
    const double down = as_double(loss(x));
    t.copy_(original);
    const double numeric = (up - down) / (2 * h);
    INFO("autograd " << analytic << ", central difference " << numeric);
    CHECK(std::abs(analytic - numeric) <= 1e-5 * std::max(1.0, std::abs(numeric)));
  }
}

template <class M>
void check_determinism(const Subject<M>& s) {
  const auto run = [&] {
    torch::manual_seed(3);
    M m = s.build();
    m->train();
    const auto x = s.input();
    torch::manual_seed(4);
    return s.forward(m, x);
  };
  const auto a = run(), b = run();
  CHECK(torch::equal(a, b));
}

// The outputs of one eval-mode module on an input and on a perturbed copy of it.
template <class M>
std::pair<torch::Tensor, torch::Tensor> outputs_with_perturbation(const Subject<M>& s, std::uint64_t seed,
                                                                 const std::function<void(torch::Tensor&)>& perturb) {
  torch::manual_seed(seed);
  M m = s.build();
  m->eval();
  torch::NoGradGuard no_grad;
  const auto x = s.input();
  auto x2 = x.clone();
  perturb(x2);
  return {s.forward(m, x), s.forward(m, x2)};
}

// Changing sample `changed` must leave every other sample's output as it was (eval mode).
template <class M>
void check_batch_independence(const Subject<M>& s, std::int64_t changed = 1) {
  const auto [y, y2] =
      outputs_with_perturbation(s, 5, [&](torch::Tensor& x) { x[changed].copy_(torch::randn_like(x[changed])); });
  for (std::int64_t i = 0; i < y.size(0); ++i) {
    INFO("sample " << i << " (sample " << changed << " changed)");
    if (i == changed)
      CHECK_FALSE(close(y[i], y2[i], 1e-6, 1e-9));
    else
      CHECK(close(y[i], y2[i], 1e-10, 1e-12));
  }
}

// Perturbing token t changes no output before t, and some output from t on (x [B, N, C]).
template <class M>
void check_causal(const Subject<M>& s, std::int64_t t) {
  const auto [y, y2] =
      outputs_with_perturbation(s, 6, [&](torch::Tensor& x) { x.select(1, t).add_(torch::randn_like(x.select(1, t))); });
  using torch::indexing::Slice;
  INFO("token " << t << " of " << y.size(1) << " perturbed");
  CHECK(close(y.index({Slice(), Slice(0, t)}), y2.index({Slice(), Slice(0, t)}), 1e-10, 1e-12));
  CHECK_FALSE(close(y.index({Slice(), Slice(t)}), y2.index({Slice(), Slice(t)}), 1e-6, 1e-9));
}

}  // namespace blocklab::conformance
