// attention/cascaded-group (EfficientViT's CGA), tag [variants]: with one head it is softmax
// attention with depth-wise-convolved queries and LeViT's offset biases, by hand (eval, running
// statistics); the cascade (head 1 sees only its channels, head 2 sees head 1's output); zero
// at init; on grids larger than the window it equals window-by-window attention computed by hand
// (zero padding to whole windows, prefix tokens global); options that cannot work fail at build
// time. And it learns to classify images in a ViT.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/attention/cascaded_group.h"
#include "blocks/family_trains.h"
#include "blocks/probe.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::max_diff;
using torch::indexing::Slice;

namespace {

std::shared_ptr<CascadedGroupAttentionImpl> make_cga_for_test(const std::string& yaml, std::int64_t dim) {
  auto m = std::dynamic_pointer_cast<CascadedGroupAttentionImpl>(
      mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{dim, 64}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  attention_tests::randomise_for_by_hand(*m);
  return m;
}

// Head j's depth-wise ConvBN on window tokens [B, M_h M_w, d] (row-major in the window).
torch::Tensor cga_dw_by_hand(const CascadedGroupAttentionImpl& m, std::int64_t j, const torch::Tensor& tokens,
                             std::int64_t window_h, std::int64_t window_w) {
  const auto& c = m.dws->at<DepthwiseConvBNImpl>(j);
  const auto d = tokens.size(2), k = m.options().kernel();
  const auto image = tokens.view({tokens.size(0), window_h, window_w, d}).permute({0, 3, 1, 2});
  const auto y = torch::conv2d(image, c.conv->weight, {}, 1, k / 2, 1, d);
  const auto channel = [](const torch::Tensor& t) { return t.view({1, -1, 1, 1}); };
  const auto& bn = *c.bn;
  const auto normed =
      (y - channel(bn.running_mean)) / torch::sqrt(channel(bn.running_var) + bn.options.eps()) * channel(bn.weight) +
      channel(bn.bias);
  return normed.permute({0, 2, 3, 1}).reshape({tokens.size(0), -1, d});
}

// LeViT's bias of head j inside a window_h x window_w window: [M, M], pair (a, b) reads the
// table at |dy| M_cfg + |dx| (M_cfg the configured window).
torch::Tensor cga_window_bias(const CascadedGroupAttentionImpl& m, std::int64_t j, std::int64_t window_h,
                              std::int64_t window_w) {
  const auto size = window_h * window_w, side = m.options().window();
  auto bias = torch::zeros({size, size}, torch::kFloat64);
  for (std::int64_t a = 0; a < size; ++a)
    for (std::int64_t b = 0; b < size; ++b) {
      const auto dy = std::abs(a / window_w - b / window_w), dx = std::abs(a % window_w - b % window_w);
      bias[a][b] = m.attention_biases[j][dy * side + dx];
    }
  return bias;
}

// The oracle: the mixer by hand on x [B, P + H W, C] whose grid H x W is a multiple of the
// windows, window by window; prefix queries see every token, grid queries their window and the
// prefix (no bias there).
torch::Tensor cga_by_hand(const CascadedGroupAttentionImpl& m, const torch::Tensor& x, std::int64_t prefix,
                          std::int64_t height, std::int64_t width, std::int64_t window_h, std::int64_t window_w) {
  const auto heads = m.options().heads(), dk = m.options().key_dim(), c = x.size(2) / heads;
  const double scale = 1.0 / std::sqrt(double(dk));
  const auto front = torch::arange(prefix);
  std::vector<torch::Tensor> outs;
  for (std::int64_t j = 0; j < heads; ++j) {
    auto f = x.narrow(2, j * c, c);
    if (j > 0) f = f + outs.back();
    const auto qkv = attention_tests::conv_bn_by_hand(m.qkvs->at<PointwiseConvBNImpl>(j), f);
    const auto q = qkv.narrow(2, 0, dk), k = qkv.narrow(2, dk, dk), v = qkv.narrow(2, 2 * dk, c);
    auto out = torch::zeros({x.size(0), x.size(1), c}, torch::kFloat64);
    if (prefix > 0)
      out.narrow(1, 0, prefix)
          .copy_(
              torch::matmul(torch::softmax(torch::matmul(q.narrow(1, 0, prefix), k.transpose(1, 2)) * scale, -1), v));
    const auto bias = torch::constant_pad_nd(cga_window_bias(m, j, window_h, window_w), {prefix, 0}, 0.0);
    for (std::int64_t wy = 0; wy < height / window_h; ++wy)
      for (std::int64_t wx = 0; wx < width / window_w; ++wx) {
        const auto rows = torch::arange(window_h).view({-1, 1}) + wy * window_h;
        const auto cols = torch::arange(window_w).view({1, -1}) + wx * window_w;
        const auto index = (rows * width + cols).flatten() + prefix;
        const auto keys = torch::cat({front, index});
        const auto qw = cga_dw_by_hand(m, j, q.index_select(1, index), window_h, window_w);
        const auto logits = torch::matmul(qw, k.index_select(1, keys).transpose(1, 2)) * scale + bias;
        out.index_copy_(1, index, torch::matmul(torch::softmax(logits, -1), v.index_select(1, keys)));
      }
    outs.push_back(out);
  }
  return attention_tests::conv_bn_by_hand(*m.proj, torch::relu(torch::cat(outs, 2)));
}

// x [B, P + H W, C] with its grid zero-padded to pad_h x pad_w more rows and columns, and back.
torch::Tensor cga_pad_grid(const torch::Tensor& x, std::int64_t prefix, std::int64_t h, std::int64_t w,
                           std::int64_t pad_h, std::int64_t pad_w) {
  const auto grid = x.narrow(1, prefix, h * w).view({x.size(0), h, w, x.size(2)});
  const auto padded = torch::constant_pad_nd(grid, {0, 0, 0, pad_w, 0, pad_h}, 0.0).flatten(1, 2);
  return torch::cat({x.narrow(1, 0, prefix), padded}, 1);
}
torch::Tensor cga_crop_grid(const torch::Tensor& y, std::int64_t prefix, std::int64_t h, std::int64_t w,
                            std::int64_t padded_h, std::int64_t padded_w) {
  const auto grid = y.narrow(1, prefix, padded_h * padded_w).view({y.size(0), padded_h, padded_w, y.size(2)});
  return torch::cat({y.narrow(1, 0, prefix), grid.narrow(1, 0, h).narrow(2, 0, w).flatten(1, 2)}, 1);
}

}  // namespace

TEST_CASE("cascaded-group: one head is softmax attention with DW-convolved queries and offset biases", "[variants]") {
  torch::manual_seed(61);
  // A 3 x 4 grid under a window of 4: one window of 3 x 4, and a class token.
  auto m = make_cga_for_test("{type: attention/cascaded-group, heads: 1, key_dim: 5, kernel: 3, window: 4}", 6);
  const auto x = torch::randn({2, 13, 6}, torch::kFloat64);
  const auto qkv = attention_tests::conv_bn_by_hand(m->qkvs->at<PointwiseConvBNImpl>(0), x);
  const auto queries = qkv.narrow(2, 0, 5);  // the class token's skips the convolution
  const auto q = torch::cat({queries.narrow(1, 0, 1), cga_dw_by_hand(*m, 0, queries.narrow(1, 1, 12), 3, 4)}, 1);
  const auto k = qkv.narrow(2, 5, 5), v = qkv.narrow(2, 10, 6);
  // The bias on grid pairs only; the class token's row and column take none.
  const auto bias = torch::constant_pad_nd(cga_window_bias(*m, 0, 3, 4), {1, 0, 1, 0}, 0.0);
  const auto weights = torch::softmax(torch::matmul(q, k.transpose(1, 2)) / std::sqrt(5.0) + bias, -1);
  const auto want = attention_tests::conv_bn_by_hand(*m->proj, torch::relu(torch::matmul(weights, v)));
  auto ctx = attention_tests::context(3, 4, 1);
  CHECK(max_diff(m->forward(x, ctx), want) <= 1e-10);
  AttentionProbe probe;
  probe.enable();
  ctx.probe = &probe;
  CHECK(max_diff(m->forward(x, ctx), want) <= 1e-10);
  REQUIRE(probe.records().size() == 1);
  CHECK(max_diff(probe.records()[0].probs, weights.unsqueeze(1)) <= 1e-12);
}

TEST_CASE("cascaded-group: the cascade: head 1 sees only its channels, head 2 sees head 1", "[variants]") {
  torch::manual_seed(62);
  auto m = make_cga_for_test("{type: attention/cascaded-group, heads: 3, key_dim: 4, kernel: 3, window: 3}", 12);
  const auto ctx = attention_tests::context(5, 4);  // padded to 6 x 6: four windows
  const auto x = torch::randn({2, 20, 12}, torch::kFloat64).requires_grad_(true);
  const auto outs = m->head_outputs(x, ctx);
  // d <r, out_j> / dx, per input split x_1 (channels 0..3), x_2, x_3.
  const auto split_grads = [&](std::int64_t j) {
    const auto g =
        torch::autograd::grad({(outs.narrow(2, 4 * j, 4) * torch::randn({2, 20, 4}, torch::kFloat64)).sum()}, {x},
                              /*grad_outputs=*/{}, /*retain_graph=*/true)[0];
    return std::vector<double>{g.narrow(2, 0, 4).abs().max().item<double>(),
                               g.narrow(2, 4, 4).abs().max().item<double>(),
                               g.narrow(2, 8, 4).abs().max().item<double>()};
  };
  const auto out1 = split_grads(0), out2 = split_grads(1), out3 = split_grads(2);
  CHECK(out1[0] > 1e-3);
  CHECK(out1[1] == 0.0);
  CHECK(out1[2] == 0.0);
  CHECK(out2[0] > 1e-3);  // through f_2 = x_2 + out_1
  CHECK(out2[1] > 1e-3);
  CHECK(out2[2] == 0.0);
  CHECK(out3[0] > 1e-3);
  // Perturbation: changing x_2 and x_3 leaves out_1 exactly as it was and moves out_2.
  torch::NoGradGuard no_grad;
  auto y = x.detach().clone();
  y.narrow(2, 4, 8).add_(torch::randn({2, 20, 8}, torch::kFloat64));
  const auto moved = m->head_outputs(y, ctx);
  CHECK(max_diff(moved.narrow(2, 0, 4), outs.detach().narrow(2, 0, 4)) == 0.0);
  CHECK(max_diff(moved.narrow(2, 4, 4), outs.detach().narrow(2, 4, 4)) > 1e-3);
}

TEST_CASE("cascaded-group: zero at init; the parameter count", "[variants]") {
  torch::manual_seed(63);
  auto fresh = mixer_registry().create(
      parse_yaml("{type: attention/cascaded-group, heads: 2, key_dim: 4, window: 3}", "t.yaml"), MixerArgs{8, 64});
  const auto x = torch::randn({2, 26, 8});
  for (bool train : {true, false}) {
    fresh->train(train);
    CHECK(fresh->forward(x, attention_tests::context(5, 5, 1)).abs().max().item<double>() == 0.0);
  }
  // h [(C/h)(2 d_k + C/h) + k^2 d_k + M^2] + C^2, and BN's scale and shift per channel.
  const std::int64_t c = 8, h = 2, dk = 4, k = 5, window = 3;
  const auto bn = 2 * (h * (2 * dk + c / h) + h * dk + c);
  CHECK(attention_tests::parameter_count(*fresh) ==
        h * ((c / h) * (2 * dk + c / h) + k * k * dk + window * window) + c * c + bn);
}

TEST_CASE("cascaded-group: windows by hand, with padding and a class token", "[variants]") {
  torch::manual_seed(64);
  auto m = make_cga_for_test("{type: attention/cascaded-group, heads: 2, key_dim: 4, kernel: 3, window: 3}", 8);
  // (prefix, H, W): whole windows; padding in both sides; a side under the window (2-row and
  // 2-column windows: the table keeps its stride M = 3); class and register tokens, global.
  for (const auto& [prefix, h, w] : std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>>{
           {0, 6, 6}, {0, 5, 7}, {0, 2, 7}, {0, 7, 2}, {1, 5, 7}, {2, 3, 3}}) {
    INFO(prefix << " prefix, " << h << " x " << w);
    const auto window_h = std::min<std::int64_t>(3, h), window_w = std::min<std::int64_t>(3, w);
    const auto padded_h = (h + window_h - 1) / window_h * window_h, padded_w = (w + window_w - 1) / window_w * window_w;
    const auto x = torch::randn({2, prefix + h * w, 8}, torch::kFloat64);
    const auto padded = cga_pad_grid(x, prefix, h, w, padded_h - h, padded_w - w);
    const auto want = cga_crop_grid(cga_by_hand(*m, padded, prefix, padded_h, padded_w, window_h, window_w), prefix, h,
                                    w, padded_h, padded_w);
    CHECK(max_diff(m->forward(x, attention_tests::context(h, w, prefix)), want) <= 1e-10);
  }
}

TEST_CASE("cascaded-group: what cannot work fails with the fix; it learns in a ViT", "[variants]") {
  const auto fails = [](const std::string& yaml, const std::string& message) {
    try {
      mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{12, 64});
      FAIL("no error");
    } catch (const ConfigError& e) {
      CHECK_THAT(e.what(), Catch::Contains(message));
    }
  };
  fails("{type: attention/cascaded-group, heads: 5}", "heads must divide the width 12");
  fails("{type: attention/cascaded-group, heads: 2, kernel: 4}", "kernel must be odd");
  auto m =
      mixer_registry().create(parse_yaml("{type: attention/cascaded-group, heads: 2}", "t.yaml"), MixerArgs{12, 64});
  CHECK_THROWS_WITH(m->forward(torch::randn({1, 9, 12}), MixerContext{}), Catch::Contains("needs a token grid"));
  family_trains::check_learns_vit(CascadedGroupAttentionImpl::kKey);
}

}  // namespace BLOCKLAB_TEST_FILE
