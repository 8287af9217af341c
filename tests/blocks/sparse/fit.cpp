// Property tests of sparse/fit, FIT's local + latent attention (tag [sparse]): the mixer equals a
// dense oracle written here from its parameters (masked attention with the group structure,
// float64, on an odd grid that needs padding and on a sequence with a shorter last group, causal
// and not); one group without latents is softmax attention; without latents the groups are
// independent, with latents information crosses them; causal: block-causal (a run's outputs do
// not depend on later runs, but do on earlier ones through the latents); too many groups and a
// missing longest sequence are refused. The ViT check of
// every sparse mixer is in mixers.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>

#include "blocks/sparse/fit.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::context;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kDim = 12, kHeads = 2;

TokenMixer make_fit(std::int64_t group, std::int64_t latents, std::int64_t max_tokens = 64) {
  torch::manual_seed(5);
  auto m = mixer_registry().create(parse_yaml("{type: sparse/fit, heads: 2, group: " + std::to_string(group) +
                                                  ", latents: " + std::to_string(latents) + "}",
                                              "t.yaml"),
                                   MixerArgs{kDim, max_tokens});
  m->to(torch::kFloat64);
  attention_tests::randomise_for_by_hand(*m);  // LayerNorm affines and biases away from 1 / 0
  return m;
}

// The oracle, from the parameters by name only.
struct FitOracle {
  std::map<std::string, torch::Tensor> p;
  std::int64_t m = 0;
  bool causal = false;

  const torch::Tensor& at(const std::string& name) const { return p.at(name); }
  torch::Tensor linear(const std::string& name, const torch::Tensor& x) const {
    auto y = torch::matmul(x, at(name + ".weight").t());
    return p.count(name + ".bias") ? y + at(name + ".bias") : y;
  }
  torch::Tensor norm(const std::string& name, const torch::Tensor& x) const {
    return torch::layer_norm(x, {kDim}, at(name + ".weight"), at(name + ".bias"), 1e-6);
  }
  static torch::Tensor split(const torch::Tensor& y) {  // [B, N, h d] -> [B, h, N, d]
    return y.view({y.size(0), y.size(1), kHeads, -1}).transpose(1, 2);
  }
  // Softmax attention of q over k, v where allowed [N_q, N_k], heads merged: [B, N_q, h d].
  static torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const torch::Tensor& allowed) {
    const auto s = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
    const auto o = torch::matmul(torch::softmax(s.masked_fill(allowed.logical_not(), -INFINITY), -1), v);
    return o.transpose(1, 2).flatten(2);
  }
  // FIT's cross-attention `name` of queries a over context c.
  torch::Tensor cross(const std::string& name, const torch::Tensor& a, const torch::Tensor& c,
                      const torch::Tensor& allowed) const {
    const auto q = split(linear(name + ".q", norm(name + ".query_norm", a)));
    const auto kv = linear(name + ".kv", norm(name + ".context_norm", c));
    const auto k = split(kv.narrow(-1, 0, kDim)), v = split(kv.narrow(-1, kDim, kDim));
    return linear(name + ".proj", attention(q, k, v, allowed));
  }
  // The update for the padded tokens xp [B, P + n, C], `group` [n]: each body token's group.
  torch::Tensor update(const torch::Tensor& xp, std::int64_t prefix, const torch::Tensor& group) const {
    const auto n = group.numel();
    // (1) local: same group, or a prefix token on either side.
    const auto ids = torch::cat({torch::full({prefix}, -1, torch::kLong), group});
    const auto is_prefix = ids.lt(0);
    auto local_allowed = ids.unsqueeze(1).eq(ids.unsqueeze(0)) | is_prefix.unsqueeze(1) | is_prefix.unsqueeze(0);
    if (causal) local_allowed = local_allowed & torch::ones({n + prefix, n + prefix}, torch::kBool).tril();
    const auto qkv = linear("qkv", xp);
    const auto local = linear("proj", attention(split(qkv.narrow(-1, 0, kDim)), split(qkv.narrow(-1, kDim, kDim)),
                                                split(qkv.narrow(-1, 2 * kDim, kDim)), local_allowed));
    if (m == 0) return local;
    // (2)-(4): group k owns latents [k m, (k + 1) m).
    const auto groups = group.max().item<std::int64_t>() + 1;
    const auto body = xp.narrow(1, prefix, n);
    const auto owner = torch::arange(groups * m, torch::kLong).div(m, "floor");
    const auto start = at("latents").narrow(0, 0, groups).flatten(0, 1).unsqueeze(0).expand({xp.size(0), -1, -1});
    auto latents = start + cross("read", start, body, owner.unsqueeze(1).eq(group.unsqueeze(0)));
    const auto g = linear("global.qkv", norm("global_norm", latents));
    // Global: all latents; causal: latents of groups <= the query's (block-causal).
    const auto all =
        causal ? owner.unsqueeze(1).ge(owner.unsqueeze(0)) : torch::ones({groups * m, groups * m}, torch::kBool);
    latents = latents + linear("global.proj", attention(split(g.narrow(-1, 0, kDim)), split(g.narrow(-1, kDim, kDim)),
                                                        split(g.narrow(-1, 2 * kDim, kDim)), all));
    // Write: the group's latents; causal: the previous group's, m zero latents (group -1) for group 0.
    if (causal) latents = torch::cat({latents, torch::zeros({xp.size(0), m, kDim}, xp.options())}, 1);
    const auto source = causal ? torch::cat({owner, torch::full({m}, -1, torch::kLong)}) + 1 : owner;
    const auto written = cross("write", body, latents, group.unsqueeze(1).eq(source.unsqueeze(0)));
    return local + torch::cat({torch::zeros({xp.size(0), prefix, kDim}, xp.options()), written}, 1);
  }
};

FitOracle oracle_of(TokenMixer& mixer, bool causal = false) {
  FitOracle o;
  o.causal = causal;
  for (const auto& item : mixer->named_parameters()) o.p[item.key()] = item.value();
  o.m = dynamic_cast<FitAttentionImpl&>(*mixer).options().latents();
  return o;
}

// A grid height x width behind `prefix` tokens: zero-padded to whole side x side windows
// (side = min(g, extent) per axis), windows numbered row-major; the oracle's update, cropped.
torch::Tensor fit_grid_by_hand(TokenMixer& mixer, const torch::Tensor& x, std::int64_t height, std::int64_t width,
                               std::int64_t prefix, std::int64_t g) {
  const auto side_h = std::min(g, height), side_w = std::min(g, width);
  const auto rows = (height + side_h - 1) / side_h * side_h, cols = (width + side_w - 1) / side_w * side_w;
  const auto grid = x.narrow(1, prefix, height * width).unflatten(1, {height, width});
  const auto padded = torch::constant_pad_nd(grid, {0, 0, 0, cols - width, 0, rows - height}).flatten(1, 2);
  const auto r = torch::arange(rows, torch::kLong).view({-1, 1}), c = torch::arange(cols, torch::kLong).view({1, -1});
  const auto group = (r.div(side_h, "floor") * (cols / side_w) + c.div(side_w, "floor")).flatten();
  const auto y = oracle_of(mixer).update(torch::cat({x.narrow(1, 0, prefix), padded}, 1), prefix, group);
  const auto body =
      y.narrow(1, prefix, rows * cols).unflatten(1, {rows, cols}).narrow(1, 0, height).narrow(2, 0, width);
  return torch::cat({y.narrow(1, 0, prefix), body.flatten(1, 2)}, 1);
}

// A sequence: runs of min(g, N) tokens, the last one shorter.
torch::Tensor fit_sequence_by_hand(TokenMixer& mixer, const torch::Tensor& x, std::int64_t g, bool causal = false) {
  const auto run = std::min(g, x.size(1));
  return oracle_of(mixer, causal).update(x, 0, torch::arange(x.size(1), torch::kLong).div(run, "floor"));
}

// Which of the outputs y2 differ from y ([B, N, C] -> [N] bool).
torch::Tensor changed(const torch::Tensor& y, const torch::Tensor& y2) { return (y - y2).abs().amax({0, 2}).gt(0.0); }

}  // namespace

TEST_CASE("sparse/fit: equals the dense oracle with the group structure (float64)", "[sparse]") {
  SECTION("odd 5x5 grid with a class token, groups 3x3 (padded to 6x6), 2 latents per group") {
    auto m = make_fit(3, 2);
    const auto x = torch::randn({2, 26, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, context(5, 5, 1)), fit_grid_by_hand(m, x, 5, 5, 1, 3)) <= 1e-9);
  }
  SECTION("4x7 grid, no prefix, groups 3x3 (padded to 6x9), 3 latents") {
    auto m = make_fit(3, 3);
    const auto x = torch::randn({2, 28, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, context(4, 7)), fit_grid_by_hand(m, x, 4, 7, 0, 3)) <= 1e-9);
  }
  SECTION("plain sequence of 11 tokens, runs of 4 (the last of 3), 3 latents") {
    auto m = make_fit(4, 3);
    const auto x = torch::randn({2, 11, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, context()), fit_sequence_by_hand(m, x, 4)) <= 1e-9);
  }
  SECTION("causal sequence of 11 tokens, runs of 4, 3 latents (shifted, block-causal)") {
    auto m = make_fit(4, 3);
    const auto x = torch::randn({2, 11, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, context(0, 0, 0, true)), fit_sequence_by_hand(m, x, 4, true)) <= 1e-9);
  }
  SECTION("causal on a 3x4 grid with a class token: the 13 tokens as one sequence, runs of 3") {
    auto m = make_fit(3, 2);
    const auto x = torch::randn({2, 13, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, context(3, 4, 1, true)), fit_sequence_by_hand(m, x, 3, true)) <= 1e-9);
  }
  SECTION("latents 0: the windowed attention alone") {
    auto m = make_fit(3, 0);
    const auto x = torch::randn({2, 26, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, context(5, 5, 1)), fit_grid_by_hand(m, x, 5, 5, 1, 3)) <= 1e-9);
  }
}

TEST_CASE("sparse/fit: one group without latents is softmax attention over the sequence", "[sparse]") {
  auto m = make_fit(16, 0);
  auto ref = attention_tests::softmax_twin(dynamic_cast<MultiHeadAttentionImpl&>(*m));
  SECTION("plain sequence of 9 tokens (group 16 >= N)") {
    const auto x = torch::randn({2, 9, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, context()), ref->forward(x, context())) <= 1e-12);
  }
  SECTION("3x3 grid with a class token (the window is the grid)") {
    const auto x = torch::randn({2, 10, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, context(3, 3, 1)), ref->forward(x, context(3, 3, 1))) <= 1e-12);
  }
}

TEST_CASE("sparse/fit: groups are independent without latents; latents carry information across groups", "[sparse]") {
  torch::NoGradGuard no_grad;
  SECTION("sequence, runs of 3, latents 0: perturbing run 1 changes exactly its tokens") {
    auto m = make_fit(3, 0);
    const auto x = torch::randn({2, 10, kDim}, torch::kFloat64);
    auto x2 = x.clone();
    x2.narrow(1, 3, 3).add_(torch::randn({2, 3, kDim}, torch::kFloat64));
    const auto expected = torch::arange(10).ge(3) & torch::arange(10).lt(6);
    CHECK(torch::equal(changed(m->forward(x, context()), m->forward(x2, context())), expected));
  }
  SECTION("6x6 grid, 3x3 windows, latents 0: perturbing a token changes exactly its window") {
    auto m = make_fit(3, 0);
    const auto x = torch::randn({2, 36, kDim}, torch::kFloat64);
    auto x2 = x.clone();
    x2.select(1, 4 * 6 + 1).add_(torch::randn({2, kDim}, torch::kFloat64));  // row 4, column 1: window (1, 0)
    const auto r = torch::arange(36).div(6, "floor"), c = torch::arange(36).remainder(6);
    const auto expected = r.ge(3) & c.lt(3);
    CHECK(torch::equal(changed(m->forward(x, context(6, 6)), m->forward(x2, context(6, 6))), expected));
  }
  SECTION("sequence, runs of 3, 2 latents: perturbing run 0 changes run 1 (through the latents)") {
    auto m = make_fit(3, 2);
    const auto x = torch::randn({2, 9, kDim}, torch::kFloat64);
    auto x2 = x.clone();
    x2.narrow(1, 0, 3).add_(torch::randn({2, 3, kDim}, torch::kFloat64));  // not a constant: LN would remove it
    const auto y = m->forward(x, context()), y2 = m->forward(x2, context());
    CHECK(max_diff(y.narrow(1, 3, 3), y2.narrow(1, 3, 3)) > 1e-6);
    CHECK(max_diff(y.narrow(1, 6, 3), y2.narrow(1, 6, 3)) > 1e-6);
  }
}

TEST_CASE("sparse/fit: causal is block-causal over runs, and the latents still carry the past", "[sparse]") {
  torch::NoGradGuard no_grad;
  auto m = make_fit(3, 2);
  REQUIRE(m->capabilities().causal);
  const auto x = torch::randn({2, 12, kDim}, torch::kFloat64);
  auto x2 = x.clone();
  x2.narrow(1, 6, 3).add_(torch::randn({2, 3, kDim}, torch::kFloat64));  // run 2
  const auto y = m->forward(x, context(0, 0, 0, true)), y2 = m->forward(x2, context(0, 0, 0, true));
  CHECK(max_diff(y.narrow(1, 0, 6), y2.narrow(1, 0, 6)) == 0.0);  // runs 0 and 1
  // Token 9 opens run 3: its local attention sees itself only, so the change comes from run 2's latents.
  CHECK(max_diff(y.select(1, 9), y2.select(1, 9)) > 1e-6);
}

TEST_CASE("sparse/fit: refuses a missing longest sequence and too many groups", "[sparse]") {
  auto m = make_fit(3, 2, 12);  // a table for ceil(12 / 3) = 4 groups
  CHECK(m->capabilities().weights == MixerCapabilities::Weights::none);
  CHECK_NOTHROW(m->forward(torch::randn({1, 12, kDim}, torch::kFloat64), context()));
  CHECK_THROWS_WITH(m->forward(torch::randn({1, 13, kDim}, torch::kFloat64), context()),
                    Catch::Contains("exceed the latent table"));
  CHECK_THROWS_AS(mixer_registry().create(parse_yaml("{type: sparse/fit, heads: 2}", "t.yaml"), MixerArgs{kDim, 0}),
                  ConfigError);
  CHECK_NOTHROW(
      mixer_registry().create(parse_yaml("{type: sparse/fit, heads: 2, latents: 0}", "t.yaml"), MixerArgs{kDim, 0}));
}

}  // namespace BLOCKLAB_TEST_FILE
