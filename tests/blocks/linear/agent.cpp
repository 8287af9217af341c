// Property tests of linear/agent, Agent Attention (Han et al. 2023, arXiv:2312.08874; catalog_002
// B-52) (tag [linear]): the mixer equals its equations written out by hand from its weights
// (pooling, the two softmaxes with the agent biases, DWConv), its effective map is row-stochastic
// and of rank <= n, one agent makes every query's output equal, parameter counts and option errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "blocks/linear/agent.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/linear/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::linear_tests;

namespace {

MixerContext grid_context(std::int64_t height, std::int64_t width, std::int64_t prefix,
                          AttentionProbe* probe = nullptr) {
  MixerContext ctx;
  ctx.grid_height = height;
  ctx.grid_width = width;
  ctx.prefix_tokens = prefix;
  ctx.probe = probe;
  ctx.layer = 2;
  return ctx;
}

// [B, N, h d] -> [B, h, N, d] and back.

AgentAttention make(std::int64_t dim, const AgentAttentionOptions& options) {
  AgentAttention m(dim, options);
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

std::vector<torch::Tensor> biases(AgentAttentionImpl& m) {
  return {m.an_bias, m.na_bias, m.ah_bias, m.aw_bias, m.ha_bias, m.wa_bias, m.ac_bias, m.ca_bias};
}

// Biases far from their 0.02 init, so that every term shows in the output.
void widen_biases(AgentAttentionImpl& m) {
  torch::NoGradGuard no_grad;
  for (auto& b : biases(m)) b.normal_(0.0, 0.5);
}

// 1-D bilinear resizing in -> out as a matrix R [out, in], align_corners false: output i reads
// the source point (i + 1/2) in/out - 1/2 (at least 0) between its floor and the next index
// (the last index repeated past the end).
torch::Tensor bilinear_matrix(std::int64_t in, std::int64_t out) {
  auto r = torch::zeros({out, in}, torch::kFloat64);
  auto a = r.accessor<double, 2>();
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (std::int64_t i = 0; i < out; ++i) {
    const double source = std::max(scale * (static_cast<double>(i) + 0.5) - 0.5, 0.0);
    const auto lo = std::min(static_cast<std::int64_t>(source), in - 1);
    const auto hi = std::min(lo + 1, in - 1);
    const double t = source - static_cast<double>(lo);
    a[i][lo] += 1.0 - t;
    a[i][hi] += t;
  }
  return r;
}

// AdaptiveAvgPool2d to s x s: cell (r, c) averages rows [floor(r H / s), ceil((r + 1) H / s)) and
// the columns likewise. grid [B, H, W, C] -> [B, s s, C], cells row-major.
torch::Tensor pool_by_hand(const torch::Tensor& grid, std::int64_t s) {
  const auto height = grid.size(1), width = grid.size(2);
  auto out = torch::zeros({grid.size(0), s * s, grid.size(3)}, grid.options());
  for (std::int64_t r = 0; r < s; ++r)
    for (std::int64_t c = 0; c < s; ++c) {
      const auto r0 = r * height / s, r1 = ((r + 1) * height + s - 1) / s;
      const auto c0 = c * width / s, c1 = ((c + 1) * width + s - 1) / s;
      out.select(1, r * s + c).copy_(grid.slice(1, r0, r1).slice(2, c0, c1).mean({1, 2}));
    }
  return out;
}

// Depthwise 3x3 cross-correlation with zero padding and bias: image [B, C, H, W], weight [C, 1, 3, 3].
torch::Tensor depthwise_by_hand(const torch::Tensor& image, const torch::Tensor& weight, const torch::Tensor& bias) {
  const auto height = image.size(2), width = image.size(3);
  const auto padded = torch::constant_pad_nd(image, {1, 1, 1, 1}, 0.0);
  auto out = bias.view({1, -1, 1, 1}).expand_as(image).clone();
  for (std::int64_t i = 0; i < 3; ++i)
    for (std::int64_t j = 0; j < 3; ++j)
      out += weight.select(1, 0).select(1, i).select(1, j).view({1, -1, 1, 1}) *
             padded.narrow(2, i, height).narrow(3, j, width);
  return out;
}

struct ByHand {
  torch::Tensor output;  // [B, N, C]
  torch::Tensor map;     // the effective map softmax(Q A^T + B2) softmax(A K^T + B1) [B, h, N, N]
};

// Agent attention written out from the module's weights: x [B, N, C], `prefix` tokens then a
// height x width grid.
ByHand agent_attention_by_hand(AgentAttentionImpl& m, const torch::Tensor& x, std::int64_t prefix, std::int64_t height,
                               std::int64_t width) {
  const auto& o = m.options();
  const auto b = x.size(0), c = x.size(2), heads = o.heads(), n = o.agents(), g = o.bias_grid();
  const auto grid = height * width, side = static_cast<std::int64_t>(std::lround(std::sqrt(n)));
  const auto y = torch::linear(x, param(m, "qkv.weight"), param(m, "qkv.bias"));
  const auto q_all = y.narrow(-1, 0, c), v_all = y.narrow(-1, 2 * c, c);
  const auto agents_all = pool_by_hand(q_all.narrow(1, prefix, grid).reshape({b, height, width, c}), side);
  const auto q = split_heads(q_all, heads), k = split_heads(y.narrow(-1, c, c), heads);
  const auto v = split_heads(v_all, heads), a = split_heads(agents_all, heads);
  torch::Tensor b1 = torch::zeros({}, torch::kFloat64), b2 = torch::zeros({}, torch::kFloat64);
  if (o.position_bias()) {
    const auto h7 = bilinear_matrix(7, height), w7 = bilinear_matrix(7, width);
    const auto hg = bilinear_matrix(g, height), wg = bilinear_matrix(g, width);
    // B1 [h, n, N]: the class key's ac, then interp(an) + ah + aw over the grid.
    const auto to_grid = h7.matmul(m.an_bias).matmul(w7.t()) + hg.matmul(m.ah_bias) + m.aw_bias.matmul(wg.t());
    b1 = torch::cat({m.ac_bias.expand({heads, n, prefix}), to_grid.reshape({heads, n, grid})}, -1);
    // B2 [h, N, n]: the class query's ca, then interp(na)^T + ha + wa over the grid.
    const auto from_grid = h7.matmul(m.na_bias).matmul(w7.t()).permute({0, 2, 3, 1}) +
                           hg.matmul(m.ha_bias.squeeze(2)).unsqueeze(2) + wg.matmul(m.wa_bias.squeeze(1)).unsqueeze(1);
    b2 = torch::cat({m.ca_bias.expand({heads, prefix, n}), from_grid.reshape({heads, grid, n})}, 1);
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(c / heads));
  const auto aggregation = torch::softmax(a.matmul(k.transpose(-1, -2)) * scale + b1, -1);  // [B, h, n, N]
  const auto broadcast = torch::softmax(q.matmul(a.transpose(-1, -2)) * scale + b2, -1);    // [B, h, N, n]
  auto mixed = merge_heads(broadcast.matmul(aggregation.matmul(v)));                        // [B, N, C]
  const auto image = v_all.narrow(1, prefix, grid).reshape({b, height, width, c}).permute({0, 3, 1, 2});
  const auto local = depthwise_by_hand(image, m.dwc->weight, m.dwc->bias).permute({0, 2, 3, 1}).reshape({b, grid, c});
  mixed = torch::cat({mixed.narrow(1, 0, prefix), mixed.narrow(1, prefix, grid) + local}, 1);
  return {torch::linear(mixed, param(m, "proj.weight"), param(m, "proj.bias")), broadcast.matmul(aggregation)};
}

struct Case {
  std::int64_t prefix, height, width, agents;
};

}  // namespace

TEST_CASE("linear/agent: pooled agents, agent aggregation and broadcast with biases, DWConv, from its weights",
          "[linear]") {
  // Grids below, at and above bias_grid 3, non-square, smaller than the agents' grid (1 x 1).
  const std::vector<Case> cases{{1, 3, 5, 4}, {2, 4, 4, 9}, {0, 2, 9, 4}, {1, 1, 1, 4}, {1, 6, 6, 9}};
  for (const auto& [prefix, height, width, agents] : cases) {
    INFO(prefix << " prefix, " << height << "x" << width << " grid, " << agents << " agents");
    torch::manual_seed(1);
    auto m = make(16, AgentAttentionOptions().heads(2).agents(agents).bias_grid(3));
    widen_biases(*m);
    const auto x = torch::randn({2, prefix + height * width, 16}, torch::kFloat64);
    const auto expected = agent_attention_by_hand(*m, x, prefix, height, width);
    AttentionProbe probe;
    probe.enable();
    CHECK(max_diff(m->forward(x, grid_context(height, width, prefix, &probe)), expected.output) <= 1e-12);
    REQUIRE(probe.records().size() == 1);
    CHECK(max_diff(probe.records().front().probs, expected.map) <= 1e-12);
  }
}

TEST_CASE("linear/agent: without position_bias it is the same equations with zero biases", "[linear]") {
  torch::manual_seed(2);
  auto m = make(16, AgentAttentionOptions().heads(4).agents(4).position_bias(false));
  CHECK(m->named_parameters().size() == 6);  // qkv, proj, dwc: weights and biases
  const auto x = torch::randn({2, 1 + 12, 16}, torch::kFloat64);
  CHECK(max_diff(m->forward(x, grid_context(3, 4, 1)), agent_attention_by_hand(*m, x, 1, 3, 4).output) <= 1e-12);
}

TEST_CASE("linear/agent: the effective map is non-negative and row-stochastic; recording changes nothing", "[linear]") {
  torch::manual_seed(3);
  auto m = make(16, AgentAttentionOptions().heads(2).agents(9));
  widen_biases(*m);
  const auto caps = m->capabilities();
  CHECK(caps.weights == MixerCapabilities::Weights::normalised);
  CHECK(caps.needs_grid);
  CHECK_FALSE(caps.causal);
  CHECK_FALSE(caps.recurrent);
  const auto x = torch::randn({3, 2 + 15, 16}, torch::kFloat64) * 3;
  AttentionProbe probe;
  probe.enable();
  const auto y = m->forward(x, grid_context(5, 3, 2, &probe));
  CHECK(torch::equal(y, m->forward(x, grid_context(5, 3, 2))));
  REQUIRE(probe.records().size() == 1);
  const auto& record = probe.records().front();
  CHECK(record.layer == 2);
  CHECK(record.mixer == "linear/agent");
  REQUIRE(record.probs.sizes() == torch::IntArrayRef({3, 2, 17, 17}));
  CHECK(record.probs.min().item<double>() >= 0.0);
  CHECK(max_diff(record.probs.sum(-1), torch::ones({3, 2, 17}, torch::kFloat64)) <= 1e-12);
}

TEST_CASE("linear/agent: one agent, zero biases and zero DWConv give every query the same output (rank 1)",
          "[linear]") {
  torch::manual_seed(4);
  auto m = make(16, AgentAttentionOptions().heads(2).agents(1));
  widen_biases(*m);
  const auto x = torch::randn({2, 1 + 12, 16}, torch::kFloat64);
  const auto ctx = grid_context(3, 4, 1);
  const auto same_rows = [](const torch::Tensor& y) { return max_diff(y, y.narrow(1, 0, 1).expand_as(y)); };
  CHECK(same_rows(m->forward(x, ctx)) > 1e-3);  // the DWConv term differs per token
  {
    torch::NoGradGuard no_grad;
    for (auto& b : biases(*m)) b.zero_();
    m->dwc->weight.zero_();
    m->dwc->bias.zero_();
  }
  const auto y = m->forward(x, ctx);
  CHECK(same_rows(y) <= 1e-12);
  CHECK_FALSE(max_diff(y[0], y[1]) <= 1e-6);  // and the output still depends on the input
}

TEST_CASE("linear/agent: O = softmax(Q A^T) softmax(A K^T) V, a generalised linear attention of rank <= n",
          "[linear]") {
  torch::manual_seed(5);
  const std::int64_t c = 16, heads = 2, agents = 4, prefix = 1, height = 3, width = 4, tokens = 13;
  auto m = make(c, AgentAttentionOptions().heads(heads).agents(agents).position_bias(false));
  {
    torch::NoGradGuard no_grad;
    m->dwc->weight.zero_();
    m->dwc->bias.zero_();
  }
  const auto x = torch::randn({2, tokens, c}, torch::kFloat64);
  AttentionProbe probe;
  probe.enable();
  const auto y = m->forward(x, grid_context(height, width, prefix, &probe));
  REQUIRE(probe.records().size() == 1);
  const auto map = probe.records().front().probs;  // [B, h, N, N]
  // The N x N map first, then V: the quadratic form of the same attention.
  const auto qkv = torch::linear(x, param(*m, "qkv.weight"), param(*m, "qkv.bias"));
  const auto v = split_heads(qkv.narrow(-1, 2 * c, c), heads);
  const auto quadratic = torch::linear(merge_heads(map.matmul(v)), param(*m, "proj.weight"), param(*m, "proj.bias"));
  CHECK(max_diff(y, quadratic) <= 1e-12);
  // The map is Q's softmax over the agents times the agents' softmax over K: rank <= n.
  const auto q = split_heads(qkv.narrow(-1, 0, c), heads), k = split_heads(qkv.narrow(-1, c, c), heads);
  const auto a =
      split_heads(pool_by_hand(qkv.narrow(-1, 0, c).narrow(1, prefix, 12).reshape({2, height, width, c}), 2), heads);
  const double scale = 1.0 / std::sqrt(8.0);
  const auto phi_q = torch::softmax(q.matmul(a.transpose(-1, -2)) * scale, -1);  // [B, h, N, n]
  const auto phi_k = torch::softmax(a.matmul(k.transpose(-1, -2)) * scale, -1);  // [B, h, n, N]
  CHECK(max_diff(map, phi_q.matmul(phi_k)) <= 1e-12);
  const auto singular = torch::linalg_svdvals(map);  // [B, h, N], descending
  CHECK(singular.narrow(-1, agents, tokens - agents).max().item<double>() <= 1e-10);
  CHECK(singular.narrow(-1, agents - 1, 1).min().item<double>() > 1e-8);
}

TEST_CASE("linear/agent: parameter counts (catalog_002 B-52: 10C DWConv + 2hn 49 + 2hn (H + W) + 2hn biases)",
          "[linear]") {
  const std::int64_t c = 32, h = 4, n = 49;
  const std::int64_t projections = 4 * c * c + 4 * c, dwconv = 9 * c + c;
  AgentAttention m(c, AgentAttentionOptions().heads(h));
  CHECK(count(*m) == projections + dwconv + 2 * h * n * 49 + 2 * h * n * (7 + 7) + 2 * h * n);
  CHECK(m->ah_bias.sizes() == torch::IntArrayRef({h, n, 7, 1}));
  CHECK(m->wa_bias.sizes() == torch::IntArrayRef({h, 1, 7, n}));
  AgentAttention grid14(c, AgentAttentionOptions().heads(h).agents(16).bias_grid(14));
  CHECK(count(*grid14) == projections + dwconv + 2 * h * 16 * 49 + 2 * h * 16 * (14 + 14) + 2 * h * 16);
  AgentAttention plain(c, AgentAttentionOptions().heads(h).position_bias(false).qkv_bias(false));
  CHECK(count(*plain) == projections - 3 * c + dwconv);
  // The biases are position tables: no weight decay.
  const auto no_decay = no_weight_decay_names(*m);
  for (const std::string name :
       {"an_bias", "na_bias", "ah_bias", "aw_bias", "ha_bias", "wa_bias", "ac_bias", "ca_bias"})
    CHECK(no_decay.count(name) == 1);
  CHECK(no_decay.count("qkv.weight") == 0);
  CHECK_NOTHROW(no_weight_decay_names(*plain));
}

TEST_CASE("linear/agent: one mixer serves any grid; option and layout errors name what to fix", "[linear]") {
  const auto make_mixer = [](const std::string& yaml) {
    return mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{32, 17});
  };
  const auto m = make_mixer("{type: linear/agent, heads: 2, agents: 9}");
  for (const auto& [prefix, height, width] :
       std::vector<std::array<std::int64_t, 3>>{{1, 14, 14}, {0, 2, 11}, {3, 7, 7}}) {
    const auto x = torch::randn({1, prefix + height * width, 32});
    CHECK(m->forward(x, grid_context(height, width, prefix)).sizes() == x.sizes());
  }
  CHECK_THROWS_AS(make_mixer("{type: linear/agent, agents: 8}"), ConfigError);
  CHECK_THROWS_WITH(make_mixer("{type: linear/agent, agents: 8}"), Catch::Contains("agents must be a square number") &&
                                                                       Catch::Contains("agents: 4") &&
                                                                       Catch::Contains("agents: 9"));
  CHECK_THROWS_AS(make_mixer("{type: linear/agent, agents: 0}"), ConfigError);
  CHECK_THROWS_WITH(make_mixer("{type: linear/agent, heads: 3}"), Catch::Contains("heads"));
  CHECK_THROWS_AS(make_mixer("{type: linear/agent, bias_grid: 0}"), ConfigError);
  CHECK_THROWS_AS(AgentAttention(16, AgentAttentionOptions().agents(5)), c10::Error);
  const auto x = torch::randn({1, 10, 32});
  MixerContext plain;
  CHECK_THROWS_WITH(m->forward(x, plain), Catch::Contains("needs prefix tokens followed by an image grid"));
  CHECK_THROWS_WITH(m->forward(x, grid_context(3, 4, 1)),
                    Catch::Contains("needs prefix tokens followed by an image grid"));
  auto causal = grid_context(3, 3, 1);
  causal.causal = true;
  CHECK_THROWS_WITH(m->forward(x, causal), Catch::Contains("cannot be causal"));
}

}  // namespace BLOCKLAB_TEST_FILE
