// linear/slab and SLAB's re-parameterisable BatchNorm (tag [linear]; catalog_003_004 D26): the
// mixer from its weights (quadratic order = linear order), the all-zero-ReLU row edge case,
// RepBN's formula and its fold into a per-channel affine map at eval, PRepBN's schedule.
#include <catch2/catch.hpp>

#include "blocks/backbones/prenorm_block.h"
#include "blocks/common/rep_batch_norm.h"
#include "blocks/linear/slab.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/linear/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::linear_tests;

namespace {

MixerContext grid(std::int64_t h, std::int64_t w, std::int64_t prefix) {
  MixerContext ctx;
  ctx.grid_height = h, ctx.grid_width = w, ctx.prefix_tokens = prefix;
  return ctx;
}

}  // namespace

TEST_CASE("linear/slab: ReLU linear attention with key positions plus a shared depthwise conv, from its weights",
          "[linear]") {
  torch::manual_seed(1);
  const std::int64_t c = 16, h = 2, d = 8, gh = 3, gw = 4, n = 1 + gh * gw;
  Slab m(c, n, SlabOptions().heads(h).kernel(3));
  m->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    m->key_positions.normal_();
  }
  const auto x = torch::randn({2, n, c}, torch::kFloat64);
  const auto p = m->named_parameters();
  const auto y = torch::linear(x, p["qkv.weight"], p["qkv.bias"]);
  const auto q = torch::relu(split_heads(y.narrow(-1, 0, c), h));
  const auto k = torch::relu(split_heads(y.narrow(-1, c, c) + m->key_positions, h));
  const auto v = split_heads(y.narrow(-1, 2 * c, c), h);
  // The quadratic order: z_i sum_j (q_i . k_j) v_j.
  const auto a = q.matmul(k.transpose(-1, -2));
  auto o = a.matmul(v) / (a.sum(-1, true) + 1e-6);
  // The depthwise conv on each head's grid values, the same filter for every head.
  const auto grid_v = v.narrow(2, 1, gh * gw).reshape({2 * h, gh, gw, d}).permute({0, 3, 1, 2});
  const auto conv = torch::conv2d(grid_v, m->dwc->weight, m->dwc->bias, 1, 1, 1, d);
  o.narrow(2, 1, gh * gw).add_(conv.permute({0, 2, 3, 1}).reshape({2, h, gh * gw, d}));
  const auto expected = torch::linear(o.transpose(1, 2).reshape({2, n, c}), p["proj.weight"], p["proj.bias"]);
  CHECK(max_diff(m->forward(x, grid(gh, gw, 1)), expected) <= 1e-12);
  CHECK_FALSE(m->capabilities().causal);
  CHECK(m->capabilities().needs_grid);
}

TEST_CASE("linear/slab: a query whose ReLU is all zero gets exactly 0 from the attention", "[linear]") {
  torch::manual_seed(2);
  Slab m(8, 4, SlabOptions().heads(1).kernel(0).qkv_bias(false));
  m->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    m->named_parameters()["proj.bias"].zero_();
  }
  auto x = torch::randn({1, 4, 8}, torch::kFloat64);
  // W_q = I and x_0 <= 0: token 0's query has no positive channel.
  {
    torch::NoGradGuard no_grad;
    auto& w = m->named_parameters()["qkv.weight"];
    w.narrow(0, 0, 8).copy_(torch::eye(8, torch::kFloat64));
    x[0][0] = -x[0][0].abs();
  }
  const auto out = m->forward(x, grid(2, 2, 0));
  CHECK(out[0][0].abs().max().item<double>() == 0.0);
  CHECK(out[0][1].abs().max().item<double>() > 0.0);
}

TEST_CASE("RepBN: BN over batch x tokens plus alpha x; at eval a per-channel affine map", "[linear]") {
  torch::manual_seed(3);
  RepBatchNorm rep(6);
  rep->to(torch::kFloat64);
  const auto x = torch::randn({4, 5, 6}, torch::kFloat64) * 2 + 1;
  const auto flat = x.reshape({-1, 6});
  const auto mean = flat.mean(0), var = flat.var(0, false);
  const auto expected = ((flat - mean) / (var + 1e-5).sqrt() + flat).view({4, 5, 6});  // alpha = 1
  CHECK(max_diff(rep->forward(x), expected) <= 1e-10);
  rep->eval();
  // Fold: y = scale * x + shift per channel.
  const auto& bn = rep->bn;
  const auto scale = bn->weight / (bn->running_var + 1e-5).sqrt() + rep->alpha;
  const auto shift = bn->bias - bn->weight * bn->running_mean / (bn->running_var + 1e-5).sqrt();
  CHECK(max_diff(rep->forward(x), x * scale + shift) <= 1e-12);
}

TEST_CASE("PRepBN: lambda falls linearly from 1 to 0 over the steps; LN then RepBN; eval is RepBN", "[linear]") {
  torch::manual_seed(4);
  ProgressiveRepBatchNorm prep(6, /*steps=*/4, /*warm=*/1);
  prep->to(torch::kFloat64);
  const auto x = torch::randn({2, 3, 6}, torch::kFloat64);
  CHECK(max_diff(prep->forward(x), prep->ln->forward(x)) <= 1e-12);  // the warm-up forward
  std::vector<double> lambdas;
  for (int i = 0; i < 6; ++i) {
    lambdas.push_back(prep->lambda());
    prep->forward(x);
  }
  CHECK(lambdas == std::vector<double>{1.0, 0.75, 0.5, 0.25, 0.0, 0.0});
  CHECK(max_diff(prep->forward(x), prep->rep->forward(x)) <= 1e-12);  // lambda 0: RepBN alone
  prep->eval();
  CHECK(max_diff(prep->forward(x), prep->rep->forward(x)) <= 1e-12);
  // As the block's norm: registered under the block's names, and the schedule is in the state dict.
  const auto block = block_registry().create(
      parse_yaml("{type: prenorm, norm: prepbn, norm_steps: 10}", "b"),
      BlockArgs{16, 5, parse_yaml("{type: linear/slab, heads: 2}", "m"), parse_yaml("mlp", "c"), 0.0});
  CHECK(block->named_buffers().contains("norm1.iter"));
  CHECK(block->named_parameters().contains("norm2.rep.alpha"));
  CHECK_THROWS_AS(mixer_registry().create(parse_yaml("{type: linear/slab, kernel: 4}", "m"), MixerArgs{16, 5}),
                  ConfigError);
}

}  // namespace BLOCKLAB_TEST_FILE
