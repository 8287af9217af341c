// Rotary position embeddings (blocks/common/rotary.h) and the projection's rotary option, tag
// [variants]: the relative property of RoFormer (arXiv:2104.09864, §3.4.2) — the logit of a
// rotated query and key depends on their positions only through the offset — in 1-D and, per
// axis, in 2-D (RoPE-Axial, arXiv:2403.13298); prefix tokens unrotated; the attention option.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/attention/softmax.h"
#include "blocks/common/rotary.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

// q rotated at position m dotted with k rotated at position n (angles [N, d/2] by position).
double rotated_dot(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& angles, std::int64_t m,
                   std::int64_t n) {
  const auto qm = apply_rotary(q.view({1, -1}), angles.narrow(0, m, 1));
  const auto kn = apply_rotary(k.view({1, -1}), angles.narrow(0, n, 1));
  return (qm * kn).sum().item<double>();
}

MixerContext grid_context(std::int64_t h, std::int64_t w, std::int64_t prefix) {
  MixerContext ctx;
  ctx.grid_height = h;
  ctx.grid_width = w;
  ctx.prefix_tokens = prefix;
  return ctx;
}

}  // namespace

TEST_CASE("rotary 1d: q_m . k_n depends only on m - n, and rotations keep norms", "[variants]") {
  torch::manual_seed(31);
  const std::int64_t d = 8;
  const auto angles = rotary_angles_1d(torch::arange(12, torch::kLong), d, 10000.0);
  REQUIRE(angles.sizes() == torch::IntArrayRef({12, d / 2}));
  const auto q = torch::randn({d}, torch::kFloat64), k = torch::randn({d}, torch::kFloat64);
  for (std::int64_t offset : {-3, 0, 2, 5}) {
    INFO("offset " << offset);
    const double first = rotated_dot(q, k, angles, 5 + offset, 5);
    for (std::int64_t n : {0, 3, 6})
      if (n + offset >= 0 && n + offset < 12)
        CHECK(rotated_dot(q, k, angles, n + offset, n) == Approx(first).epsilon(1e-12));
  }
  // The check can fail: different offsets give different logits.
  CHECK(std::abs(rotated_dot(q, k, angles, 4, 1) - rotated_dot(q, k, angles, 4, 2)) > 1e-6);
  const auto x = torch::randn({2, 3, 12, d}, torch::kFloat64);
  const auto rx = apply_rotary(x, angles);
  CHECK(torch::allclose(rx.norm(2, -1), x.norm(2, -1), 1e-12, 1e-12));
  CHECK(torch::equal(rx.select(2, 0), x.select(2, 0)));  // position 0: angle 0
  // Pair (0, 1) at position 1 turns by theta_0 = 1 radian.
  const auto e0 = torch::zeros({d}, torch::kFloat64).index_put_({0}, 1.0);
  const auto r = apply_rotary(e0.view({1, d}), angles.narrow(0, 1, 1)).flatten();
  CHECK(r[0].item<double>() == Approx(std::cos(1.0)).epsilon(1e-14));
  CHECK(r[1].item<double>() == Approx(std::sin(1.0)).epsilon(1e-14));
}

TEST_CASE("rotary 2d: q . k depends only on the per-axis offsets; prefix tokens stay unrotated", "[variants]") {
  torch::manual_seed(32);
  const std::int64_t d = 8, gh = 4, gw = 5, prefix = 1;
  const auto angles = rotary_angles_2d(prefix + gh * gw, grid_context(gh, gw, prefix), d, 100.0, torch::kCPU);
  REQUIRE(angles.sizes() == torch::IntArrayRef({prefix + gh * gw, d / 2}));
  CHECK(angles.select(0, 0).abs().max().item<double>() == 0.0);
  const auto cell = [&](std::int64_t r, std::int64_t c) { return prefix + r * gw + c; };
  const auto q = torch::randn({d}, torch::kFloat64), k = torch::randn({d}, torch::kFloat64);
  // (dy, dx) = (1, 2) from several places: one logit.
  const double first = rotated_dot(q, k, angles, cell(1, 2), cell(0, 0));
  for (auto [r, c] : {std::pair<std::int64_t, std::int64_t>{1, 0}, {2, 1}, {2, 2}})
    CHECK(rotated_dot(q, k, angles, cell(r + 1, c + 2), cell(r, c)) == Approx(first).epsilon(1e-12));
  // Axes are separate: (dy, dx) = (2, 1) has the same sum of offsets but another logit.
  CHECK(std::abs(rotated_dot(q, k, angles, cell(2, 1), cell(0, 0)) - first) > 1e-6);
  // The class token is not rotated: its logit is its plain q dotted with the rotated key.
  const auto k_rot = apply_rotary(k.view({1, d}), angles.narrow(0, cell(2, 3), 1)).flatten();
  CHECK(rotated_dot(q, k, angles, 0, cell(2, 3)) == Approx((q * k_rot).sum().item<double>()).epsilon(1e-14));
  CHECK_THROWS(rotary_angles_2d(7, MixerContext{}, d, 100.0, torch::kCPU));  // no grid
}

TEST_CASE("rotary option: attention with rotary equals the explicit formula on rotated q and k", "[variants]") {
  torch::manual_seed(33);
  for (const std::string kind : {"1d", "2d"}) {
    INFO("rotary " << kind);
    for (bool fused : {false, true}) {
      SoftmaxAttention m(16, SoftmaxAttentionOptions().heads(2).rotary(kind).fused(fused));
      m->to(torch::kFloat64);
      m->eval();
      CHECK(m->capabilities().needs_grid == (kind == "2d"));
      const auto ctx = grid_context(3, 3, 1);
      const auto x = torch::randn({2, 10, 16}, torch::kFloat64);
      const auto [q, k, v] = m->project(x);
      const auto angles = kind == "1d" ? rotary_angles_1d(torch::arange(10, torch::kLong), 8, 10000.0)
                                       : rotary_angles_2d(10, ctx, 8, 10000.0, torch::kCPU);
      const auto qr = apply_rotary(q, angles), kr = apply_rotary(k, angles);
      const auto w = torch::softmax(qr.matmul(kr.transpose(-2, -1)) / std::sqrt(8.0), -1);
      torch::NoGradGuard no_grad;
      CHECK(torch::allclose(m->forward(x, ctx), m->merge(w.matmul(v)), 1e-10, 1e-12));
    }
  }
}

}  // namespace BLOCKLAB_TEST_FILE
