// Additive biases on the fused path, tag [variants]: small_attention with a bias (forward and
// the gradients of q, k, v and the bias, every broadcast shape, -inf entries) against the
// explicit softmax, and every additive mask inside attention/softmax taking the fused kernel
// with the reference path's outputs and gradients; multiplicative masks keep the reference path.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "blocks/attention/softmax.h"
#include "blocks/common/small_attention.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

ConfigNode yaml(const std::string& text) { return parse_yaml(text, "test"); }

// softmax(scale q k^T + bias, causal) v, explicitly.
torch::Tensor explicit_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                                 bool causal, const torch::Tensor& bias) {
  auto s = torch::matmul(q * scale, k.transpose(-2, -1)) + bias;
  const auto n = q.size(2);
  if (causal) s = s.masked_fill(torch::ones({n, n}, torch::kBool).triu(1), -std::numeric_limits<double>::infinity());
  return torch::matmul(torch::softmax(s, -1), v);
}

}  // namespace

TEST_CASE("small_attention: with a bias, forward and gradients (q, k, v, bias) equal the explicit softmax",
          "[variants]") {
  torch::manual_seed(51);
  const std::int64_t b = 2, h = 3, n = 11, d = 5;
  const std::vector<std::vector<std::int64_t>> shapes = {{n, n}, {h, n, n}, {1, n, n}, {b, h, n, n}, {b, 1, 1, n}};
  for (const auto& shape : shapes) {
    for (bool causal : {false, true}) {
      INFO("bias " << torch::IntArrayRef(shape) << ", causal " << causal);
      // q, k, v as strided views of one projection, as the attention makes them.
      const auto qkv = torch::randn({b, n, 3, h, d}, torch::kFloat64).permute({2, 0, 3, 1, 4});
      const auto bias0 = torch::randn(shape, torch::kFloat64);
      std::vector<torch::Tensor> ours, ref;
      for (auto* out : {&ours, &ref}) {
        auto q = qkv[0].detach().requires_grad_(true), k = qkv[1].detach().requires_grad_(true);
        auto v = qkv[2].detach().requires_grad_(true), bias = bias0.clone().requires_grad_(true);
        const auto y =
            out == &ours ? small_attention(q, k, v, 0.4, causal, bias) : explicit_attention(q, k, v, 0.4, causal, bias);
        const auto w = torch::sin(torch::arange(y.numel(), torch::kFloat64)).view(y.sizes());
        (y * w).sum().backward();
        *out = {y.detach(), q.grad(), k.grad(), v.grad(), bias.grad()};
      }
      for (std::size_t i = 0; i < ours.size(); ++i) {
        INFO("output " << i);
        REQUIRE(ours[i].sizes() == ref[i].sizes());
        CHECK((ours[i] - ref[i]).abs().max().item<double>() < 1e-12);
      }
    }
  }
}

TEST_CASE("small_attention: -inf bias entries get weight exactly 0, in float32 too", "[variants]") {
  torch::manual_seed(52);
  const std::int64_t n = 9;
  auto bias = torch::zeros({n, n});
  bias.narrow(1, 4, n - 4).fill_(-std::numeric_limits<float>::infinity());  // keys 4.. hidden
  const auto q = torch::randn({1, 2, n, 8}), k = torch::randn({1, 2, n, 8});
  auto v = torch::randn({1, 2, n, 8});
  const auto y = small_attention(q, k, v, 0.3, false, bias);
  v.narrow(2, 4, n - 4).fill_(1e30f);  // hidden values: any weight above 0 would show
  CHECK(torch::equal(small_attention(q, k, v, 0.3, false, bias), y));
}

TEST_CASE("masks: additive masks take the fused kernel with the reference path's outputs and gradients", "[variants]") {
  const std::vector<std::string> additive = {"{type: mask/alibi}", "{type: mask/rel-pos-2d}",
                                             "{type: mask/retnet-decay}", "{type: mask/retnet-decay, space: 1d}"};
  MixerContext ctx;
  ctx.grid_height = ctx.grid_width = 4;
  ctx.prefix_tokens = 1;
  for (const auto& mask : additive) {
    for (bool causal : {false, true}) {
      INFO(mask << ", causal " << causal);
      ctx.causal = causal;
      std::vector<std::vector<torch::Tensor>> grads;
      std::vector<torch::Tensor> outputs;
      for (bool fused : {true, false}) {
        torch::manual_seed(53);
        const TokenMixer m = mixer_registry().create(
            yaml("{type: attention/softmax, heads: 2, fused: " + std::string(fused ? "true" : "false") +
                 ", mask: " + mask + "}"),
            MixerArgs{16, 17});
        m->to(torch::kFloat64);
        torch::manual_seed(54);
        const auto x = torch::randn({2, 17, 16}, torch::kFloat64).requires_grad_(true);
        const auto y = m->forward(x, ctx);
        (y * torch::cos(torch::arange(y.numel(), torch::kFloat64)).view(y.sizes())).sum().backward();
        outputs.push_back(y.detach());
        grads.emplace_back();
        grads.back().push_back(x.grad());
        for (const auto& p : m->parameters()) grads.back().push_back(p.grad());
      }
      CHECK((outputs[0] - outputs[1]).abs().max().item<double>() < 1e-12);
      for (std::size_t i = 0; i < grads[0].size(); ++i)
        CHECK((grads[0][i] - grads[1][i]).abs().max().item<double>() < 1e-12);
    }
  }
}

TEST_CASE("masks: the fused path is the kernel with the mask as its bias; multiplicative masks are not fused",
          "[variants]") {
  MixerContext ctx;
  ctx.grid_height = ctx.grid_width = 7;
  for (const std::string mask : {"mask/alibi", "mask/rel-pos-2d", "mask/gmm", "mask/elm"}) {
    INFO(mask);
    torch::manual_seed(55);
    auto m = std::dynamic_pointer_cast<MultiHeadAttentionImpl>(mixer_registry().create(
        yaml("{type: attention/softmax, heads: 4, mask: {type: " + mask + "}}"), MixerArgs{32, 49}));
    REQUIRE(m);
    const auto x = torch::randn({3, 49, 32});
    torch::NoGradGuard no_grad;
    const auto [q, k, v] = m->project(x);
    const bool additive = m->mask->mode() == AttentionMaskImpl::Mode::AddLogits;
    const auto by_hand = additive ? small_attention(q, k, v, 1.0 / std::sqrt(8.0), false, m->mask->matrix(49, ctx))
                                  : m->attend_reference(q, k, v, ctx);
    CHECK(torch::equal(m->forward(x, ctx), m->merge(by_hand)));
  }
}

}  // namespace BLOCKLAB_TEST_FILE
