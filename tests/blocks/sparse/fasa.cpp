// sparse/fasa (FaViT's factorization self-attention), tag [sparse]: the output rebuilt from the
// block's own weights by loops over windows and positions (reflection by hand, both pool modes,
// sr = 1 and 2, prefix tokens); the catalog's tests (one window without dilation is plain
// attention over it; permuting windows leaves the pooled keys unchanged; non-multiple grids);
// the key counts N / sr^2 and ws^2; prefix tokens as queries only; build-time errors. The ViT
// training check is the sparse family's ("wave 4: every sparse mixer learns ...", mixers.cpp).
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/sparse/fasa.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::context;
using attention_tests::max_diff;
using torch::indexing::Slice;

namespace {

constexpr std::int64_t kDim = 32;  // sr > 1: C_0 = 4, C_1 = C_2 = 14; sr = 1: C_0 = 4, C_1 = 28

std::shared_ptr<FasaAttentionImpl> make_fasa(const std::string& yaml, std::int64_t dim = kDim) {
  auto m = std::dynamic_pointer_cast<FasaAttentionImpl>(
      mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{dim, 256}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (auto& p : m->named_parameters()) {
    const bool norm_weight = p.key() == "norm.weight";
    p.value().normal_(norm_weight ? 1.0 : 0.0, 0.4);  // biases and LN off their init, so every term shows
  }
  return m;
}

// Depthwise 3x3 convolution, zero padding 1, by shifted sums: g [B, C, H, W].
torch::Tensor depthwise_by_hand(const torch::Tensor& g, const torch::nn::Conv2dImpl& conv) {
  const auto height = g.size(2), width = g.size(3);
  const auto padded = torch::constant_pad_nd(g, {1, 1, 1, 1});
  auto out = conv.bias.view({1, -1, 1, 1}).expand_as(g).clone();
  for (int u = 0; u < 3; ++u)
    for (int v = 0; v < 3; ++v)
      out +=
          padded.narrow(2, u, height).narrow(3, v, width) * conv.weight.select(3, v).select(2, u).view({1, -1, 1, 1});
  return out;
}

torch::Tensor linear_by_hand(const torch::Tensor& x, const torch::nn::LinearImpl& l) {
  return l.bias.defined() ? torch::matmul(x, l.weight.t()) + l.bias : torch::matmul(x, l.weight.t());
}

// Softmax over the last axis of the scores by exp / sum.
torch::Tensor attend_by_hand(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
  const auto s = torch::matmul(q, k.transpose(-2, -1)) * scale;
  const auto e = torch::exp(s - std::get<0>(s.max(-1, true)));
  return torch::matmul(e / e.sum(-1, true), v);
}

// Group 0: the strided conv as sums over each sr x sr patch (extents below sr zero-padded), LN,
// kv_g, v + DWConv on the reduced grid, one head over the reduced tokens.
torch::Tensor coarse_by_hand(FasaAttentionImpl& m, const torch::Tensor& q0, const torch::Tensor& g0) {
  const auto s = m.options().sr(), c0 = g0.size(1);
  const auto g = torch::constant_pad_nd(
      g0, {0, std::max<std::int64_t>(0, s - g0.size(3)), 0, std::max<std::int64_t>(0, s - g0.size(2))});
  const auto hr = g.size(2) / s, wr = g.size(3) / s;
  auto reduced = torch::zeros({g.size(0), c0, hr, wr}, g.options());
  for (std::int64_t a = 0; a < hr; ++a)
    for (std::int64_t c = 0; c < wr; ++c) {
      const auto patch = g.index({Slice(), Slice(), Slice(a * s, a * s + s), Slice(c * s, c * s + s)});
      reduced.index_put_({Slice(), Slice(), a, c}, torch::einsum("bium,oium->bo", {patch, m.sr->weight}) + m.sr->bias);
    }
  const auto tokens = reduced.flatten(2).transpose(1, 2);  // [B, N_g, C_0]
  const auto mean = tokens.mean(-1, true), var = tokens.var(-1, false, true);
  const auto normed = (tokens - mean) / torch::sqrt(var + 1e-5) * m.norm->weight + m.norm->bias;
  const auto kv = linear_by_hand(normed, *m.kv_g);
  const auto k = kv.narrow(2, 0, c0), v = kv.narrow(2, c0, c0);
  const auto v_conv =
      depthwise_by_hand(v.transpose(1, 2).reshape({g.size(0), c0, hr, wr}), *m.local_conv_g).flatten(2).transpose(1, 2);
  return attend_by_hand(q0, k, v + v_conv, 1.0 / std::sqrt(double(c0)));
}

// Reflection (no edge repeat) of an index past the end of an extent.
std::int64_t reflect_index(std::int64_t i, std::int64_t extent) { return i < extent ? i : 2 * (extent - 1) - i; }

// The pooled keys of a group [B, h, ws^2, d], gathered window by window from kv [B, C_i, H, W].
torch::Tensor pooled_by_hand(const FasaAttentionImpl& m, const torch::Tensor& kv, std::int64_t group) {
  const auto height = kv.size(2), width = kv.size(3), h = m.options().heads(), d = kv.size(1) / h;
  const auto delta = group == 1 ? 1 : m.options().sr();
  auto ws = m.options().window();
  while (delta * (ws - 1) + 1 > std::min(height, width)) --ws;  // the clamp, as a search
  const auto s = delta * (ws - 1) + 1, rows = (height + s - 1) / s, cols = (width + s - 1) / s;
  std::vector<torch::Tensor> per_position;  // ws^2 of [B, C_i, nW]
  for (std::int64_t ky = 0; ky < ws; ++ky)
    for (std::int64_t kx = 0; kx < ws; ++kx) {
      std::vector<torch::Tensor> windows;
      for (std::int64_t wy = 0; wy < rows; ++wy)
        for (std::int64_t wx = 0; wx < cols; ++wx)
          windows.push_back(kv.index({Slice(), Slice(), reflect_index(wy * s + ky * delta, height),
                                      reflect_index(wx * s + kx * delta, width)}));
      per_position.push_back(torch::stack(windows, -1));
    }
  const auto all = torch::stack(per_position, 1).view({kv.size(0), ws * ws, h, d, rows * cols});  // [B, P, h, d, nW]
  if (m.options().pool_mode() == "mean_over_windows") return all.mean(-1).transpose(1, 2);
  // The official code: (window, channel) flattened window-major, AdaptiveAvgPool to d.
  const auto flat = all.permute({0, 2, 1, 4, 3}).reshape({kv.size(0) * h * ws * ws, 1, rows * cols * d});
  return torch::adaptive_avg_pool1d(flat, d).view({kv.size(0), h, ws * ws, d});
}

torch::Tensor dilated_by_hand(FasaAttentionImpl& m, const torch::Tensor& qi, const torch::Tensor& kv,
                              std::int64_t group) {
  const auto h = m.options().heads(), d = kv.size(1) / h;
  const auto pooled = pooled_by_hand(m, kv, group);
  const auto ws = std::int64_t(std::lround(std::sqrt(double(pooled.size(2)))));
  const auto kv2 = linear_by_hand(linear_by_hand(pooled, *m.fcs[group - 1]->as<torch::nn::Linear>()),
                                  *m.single_heads[group - 1]->as<torch::nn::Linear>());
  const auto k = kv2.narrow(-1, 0, d), v = kv2.narrow(-1, d, d);
  const auto v_grid = v.permute({0, 1, 3, 2}).reshape({kv.size(0), h * d, ws, ws});
  const auto conv = depthwise_by_hand(v_grid, *m.local_convs[group - 1]->as<torch::nn::Conv2d>());
  return attend_by_hand(qi, k, v + conv.view({kv.size(0), h, d, ws * ws}).transpose(2, 3), 1.0 / std::sqrt(double(d)));
}

// The whole mixer from its weights: q, group 0, kv_l = PW(DW(x)), the dilated groups, proj.
torch::Tensor fasa_by_hand(FasaAttentionImpl& m, const torch::Tensor& x, std::int64_t height, std::int64_t width,
                           std::int64_t prefix) {
  const auto b = x.size(0), n = x.size(1), c = x.size(2), h = m.options().heads();
  const auto& widths = m.group_widths();
  const auto grid = x.narrow(1, prefix, n - prefix).transpose(1, 2).reshape({b, c, height, width});
  const auto q = linear_by_hand(x, *m.q);
  std::vector<torch::Tensor> outs{coarse_by_hand(m, q.narrow(2, 0, widths[0]), grid.narrow(1, 0, widths[0]))};
  const auto local = grid.narrow(1, widths[0], c - widths[0]);
  const auto& pw = *m.kv_l->point_conv;
  const auto kv =
      torch::einsum("bchw,oc->bohw", {depthwise_by_hand(local, *m.kv_l->depth_conv), pw.weight.flatten(1)}) +
      pw.bias.view({1, -1, 1, 1});
  std::int64_t offset = widths[0];
  for (std::size_t i = 1; i < widths.size(); ++i) {
    const auto d = widths[i] / h;
    const auto qi = q.narrow(2, offset, widths[i]).view({b, n, h, d}).transpose(1, 2);
    const auto o = dilated_by_hand(m, qi, kv.narrow(1, offset - widths[0], widths[i]), std::int64_t(i));
    outs.push_back(o.transpose(1, 2).reshape({b, n, widths[i]}));
    offset += widths[i];
  }
  return linear_by_hand(torch::cat(outs, 2), *m.proj);
}

}  // namespace

TEST_CASE("sparse/fasa: equals the mixer rebuilt window by window from its weights (float64)", "[sparse]") {
  torch::manual_seed(71);
  struct Case {
    std::string yaml;
    std::int64_t height, width, prefix;
  };
  const std::vector<Case> cases{
      {"{type: sparse/fasa, heads: 2, sr: 2, window: 3}", 6, 6, 0},  // whole windows
      {"{type: sparse/fasa, heads: 2, sr: 2, window: 3}", 7, 8, 1},  // reflection padding, prefix
      {"{type: sparse/fasa, heads: 7, sr: 3, window: 2}", 8, 5, 2},  // sr 3: dilation 3, floored reduction
      {"{type: sparse/fasa, heads: 2, sr: 2, window: 3, pool_mode: official_flat}", 7, 8, 1},
      {"{type: sparse/fasa, heads: 4, sr: 1, window: 3}", 5, 7, 1},  // groups [1, 7]
      {"{type: sparse/fasa, heads: 2, sr: 2, window: 7}", 4, 3, 1},  // windows clamped to the grid
      {"{type: sparse/fasa, heads: 2, sr: 4, window: 7}", 3, 2, 0},  // extents below sr: zero-padded up to it
  };
  for (const auto& c : cases) {
    CAPTURE(c.yaml, c.height, c.width, c.prefix);
    auto m = make_fasa(c.yaml);
    const auto x = attention_tests::randn({2, c.prefix + c.height * c.width, kDim});
    const auto y = m->forward(x, context(c.height, c.width, c.prefix));
    CHECK(max_diff(y, fasa_by_hand(*m, x, c.height, c.width, c.prefix)) <= 1e-9);
  }
}

TEST_CASE("sparse/fasa: one window without dilation is plain attention over its tokens", "[sparse]") {
  // Catalog test (1): a ws x ws grid at sr = 1 is one window (nW = 1, delta = 1): the pooled keys
  // are the window's kv tokens in raster order, and group 1 attends to every token.
  torch::manual_seed(72);
  auto m = make_fasa("{type: sparse/fasa, heads: 4, sr: 1, window: 3}");
  const auto kv = attention_tests::randn({2, 28, 3, 3});
  CHECK(max_diff(m->pool_windows(kv, 1), kv.view({2, 4, 7, 9}).transpose(2, 3)) <= 1e-15);
  // The whole group 1 output: softmax over the 9 tokens' keys, written as plain attention.
  const auto x = attention_tests::randn({2, 9, kDim});
  const auto grid = x.transpose(1, 2).reshape({2, kDim, 3, 3});
  torch::Tensor k, v;
  std::tie(k, v) = m->dilated_keys_values(m->kv_l->forward(grid.narrow(1, 4, 28)), 1);
  const auto tokens = m->kv_l->forward(grid.narrow(1, 4, 28)).flatten(2).transpose(1, 2);  // [B, 9, 28]
  const auto per_token = m->single_heads[0]->as<torch::nn::Linear>()->forward(
      m->fcs[0]->as<torch::nn::Linear>()->forward(tokens.view({2, 9, 4, 7}).transpose(1, 2)));
  CHECK(max_diff(k, per_token.narrow(-1, 0, 7)) <= 1e-12);
  const auto q1 = m->q->forward(x).narrow(2, 4, 28).view({2, 9, 4, 7}).transpose(1, 2);
  const auto plain = torch::softmax(torch::matmul(q1, k.transpose(-2, -1)) / std::sqrt(7.0), -1);
  CHECK(plain.sizes() == torch::IntArrayRef{2, 4, 9, 9});  // every query over every token of the window
  CHECK(max_diff(torch::matmul(plain, v), attend_by_hand(q1, k, v, 1.0 / std::sqrt(7.0))) <= 1e-12);
}

TEST_CASE("sparse/fasa: permuting whole windows leaves the pooled keys unchanged (mean over windows)", "[sparse]") {
  // Catalog test (2): a 6 x 9 grid of 3 x 3 windows (2 x 3 of them); windows swapped as blocks.
  torch::manual_seed(73);
  const auto kv = attention_tests::randn({2, 14, 6, 9});
  const auto blocks = kv.view({2, 14, 2, 3, 3, 3});  // [B, C, window row, in-row, window col, in-col]
  const auto perm = torch::tensor({2, 0, 1}, torch::kLong);
  const auto permuted = blocks.flip(2).index_select(4, perm).reshape({2, 14, 6, 9});
  REQUIRE(max_diff(permuted, kv) > 0.1);
  auto mean = make_fasa("{type: sparse/fasa, heads: 2, sr: 2, window: 3}");
  CHECK(max_diff(mean->pool_windows(permuted, 1), mean->pool_windows(kv, 1)) <= 1e-12);
  // The official flatten + pool mixes windows into channels: its keys move.
  auto flat = make_fasa("{type: sparse/fasa, heads: 2, sr: 2, window: 3, pool_mode: official_flat}");
  CHECK(max_diff(flat->pool_windows(permuted, 1), flat->pool_windows(kv, 1)) > 1e-3);
  // With one window both pools agree.
  const auto one = attention_tests::randn({2, 14, 3, 3});
  CHECK(max_diff(flat->pool_windows(one, 1), mean->pool_windows(one, 1)) <= 1e-15);
}

TEST_CASE("sparse/fasa: any grid size; keys N / sr^2 and ws^2, never N; windows clamped on small grids", "[sparse]") {
  // Catalog test (3): grids that are not multiples of the stride S_i are reflection-padded.
  torch::manual_seed(74);
  auto m = make_fasa("{type: sparse/fasa, heads: 2, sr: 2, window: 7}");
  for (const auto& [height, width] : std::vector<std::pair<std::int64_t, std::int64_t>>{
           {1, 1}, {2, 3}, {4, 4}, {9, 11}, {14, 14}, {15, 17}, {28, 28}}) {
    CAPTURE(height, width);
    const auto x = attention_tests::randn({1, 1 + height * width, kDim});
    const auto y = m->forward(x, context(height, width, 1));
    CHECK(y.sizes() == x.sizes());
    CHECK(torch::isfinite(y).all().item<bool>());
    const auto grid = x.narrow(1, 1, height * width).transpose(1, 2).reshape({1, kDim, height, width});
    const auto coarse = m->coarse_keys_values(grid.narrow(1, 0, 4)).first;
    CHECK(coarse.size(1) == std::max<std::int64_t>(1, height / 2) * std::max<std::int64_t>(1, width / 2));
    for (std::int64_t group = 1; group <= 2; ++group) {
      const auto ws = m->window_on(group, height, width);
      CHECK(m->dilated_keys_values(attention_tests::randn({1, 14, height, width}), group).first.size(2) == ws * ws);
    }
  }
  CHECK(m->window_on(1, 14, 14) == 7);  // the paper's 14 x 14 stage: nothing clamped
  CHECK(m->window_on(2, 14, 14) == 7);  // S_2 = 13 <= 14
  CHECK(m->window_on(2, 9, 11) == 5);   // S_2 = 9
  CHECK(m->window_on(1, 1, 5) == 1);
}

TEST_CASE("sparse/fasa: prefix tokens are queries only, attending like grid tokens", "[sparse]") {
  torch::manual_seed(75);
  auto m = make_fasa("{type: sparse/fasa, heads: 2, sr: 2, window: 3}");
  auto x = attention_tests::randn({2, 2 + 20, kDim});
  x.select(1, 1).copy_(x.select(1, 2 + 7));  // prefix token 1 = grid token 7
  const auto y = m->forward(x, context(4, 5, 2));
  CHECK(max_diff(y.select(1, 1), y.select(1, 2 + 7)) <= 1e-12);
  // They give no keys: changing them changes only their own outputs.
  auto z = x.clone();
  z.narrow(1, 0, 2).normal_();
  const auto moved = (m->forward(z, context(4, 5, 2)) - y).abs().amax({0, 2});
  CHECK(moved.narrow(0, 2, 20).max().item<double>() <= 1e-12);
  CHECK(moved.narrow(0, 0, 2).min().item<double>() > 1e-6);
  CHECK(m->capabilities().needs_grid);
  CHECK(!m->capabilities().causal);
}

TEST_CASE("sparse/fasa: widths and heads that cannot work fail at build time, at the option", "[sparse]") {
  const auto fails = [](const std::string& yaml, std::int64_t dim, const std::string& message) {
    try {
      mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{dim, 64});
      FAIL("no error");
    } catch (const ConfigError& e) {
      CHECK_THAT(e.what(), Catch::Contains(message));
    }
  };
  fails("{type: sparse/fasa, heads: 2}", 24, "must be a multiple of 16");
  fails("{type: sparse/fasa, heads: 3}", 32, "heads must divide the dilated groups' width 14");
  CHECK(make_fasa("{type: sparse/fasa, heads: 3, sr: 1}", 24)->group_widths() == std::vector<std::int64_t>{3, 21});
}

}  // namespace BLOCKLAB_TEST_FILE
