// attention/davit-channel (DaViT's channel group attention), tag [variants]: the formula by hand
// from the mixer's own weights, group by group, both roles and both scales; the paper's roles are
// the official ones with the qkv rows permuted; permuting the tokens permutes the output (the
// layout, grid or prefix, changes nothing); the maps are d x d whatever N (no N x N); errors at
// build time. And it learns to classify images in a ViT.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/attention/davit_channel.h"
#include "blocks/family_trains.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kDim = 12;

std::shared_ptr<DavitChannelAttentionImpl> make_channel(const std::string& yaml) {
  auto m = std::dynamic_pointer_cast<DavitChannelAttentionImpl>(
      mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{kDim, 64}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.normal_(0.0, 0.4);  // biases too, so every term shows
  return m;
}

// The channel attention of one group written out: rows of A over d channels, sums over tokens.
torch::Tensor davit_group_by_hand(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool official,
                                  double s) {
  const auto left = official ? k : q, right = official ? v : k, applied = official ? q : v;  // [B, N, d]
  const auto d = q.size(2);
  auto out = torch::zeros_like(applied);
  for (std::int64_t i = 0; i < d; ++i) {
    // logits[b, j] = s sum_n left[b, n, i] right[b, n, j]
    const auto logits = (left.select(2, i).unsqueeze(2) * right).sum(1) * s;
    const auto row = torch::softmax(logits, -1);                  // A[i, :]
    out.select(2, i).copy_((applied * row.unsqueeze(1)).sum(2));  // o[n, i] = sum_j A[i, j] applied[n, j]
  }
  return out;
}

torch::Tensor davit_by_hand(const DavitChannelAttentionImpl& m, const torch::Tensor& x, bool official, bool tokens) {
  const auto h = m.options().heads(), d = kDim / h;
  const auto projected = torch::linear(x, m.qkv->weight, m.qkv->bias);
  const double s = 1.0 / std::sqrt(double(tokens ? x.size(1) : d));
  std::vector<torch::Tensor> groups;
  for (std::int64_t g = 0; g < h; ++g) {
    const auto part = [&](std::int64_t p) { return projected.narrow(2, p * kDim + g * d, d); };
    groups.push_back(davit_group_by_hand(part(0), part(1), part(2), official, s));
  }
  return torch::linear(torch::cat(groups, 2), m.proj->weight, m.proj->bias);
}

}  // namespace

TEST_CASE("davit-channel: the channel group attention by hand, both roles and both scales", "[variants]") {
  torch::manual_seed(61);
  const auto x = attention_tests::randn({2, 9, kDim});
  for (const std::string roles : {"official", "paper"})
    for (const std::string scale : {"head", "tokens"}) {
      CAPTURE(roles, scale);
      auto m = make_channel("{type: attention/davit-channel, heads: 3, roles: " + roles + ", scale: " + scale + "}");
      const auto want = davit_by_hand(*m, x, roles == "official", scale == "tokens");
      CHECK(max_diff(m->forward(x, attention_tests::context()), want) <= 1e-12);
      const auto maps = m->channel_maps(x);
      CHECK(maps.sizes() == torch::IntArrayRef{2, 3, 4, 4});
      CHECK(max_diff(maps.sum(-1), torch::ones({2, 3, 4}, torch::kFloat64)) <= 1e-12);
    }
  // Without bias, as timm's ChannelAttention default: the same formula.
  auto m = make_channel("{type: attention/davit-channel, heads: 2, qkv_bias: false}");
  CHECK(!m->qkv->bias.defined());
  CHECK(max_diff(m->forward(x, attention_tests::context()), davit_by_hand(*m, x, true, false)) <= 1e-12);
}

TEST_CASE("davit-channel: the paper's roles are the official ones with the q, k, v rows permuted", "[variants]") {
  torch::manual_seed(62);
  auto official = make_channel("{type: attention/davit-channel, heads: 2}");
  auto paper = make_channel("{type: attention/davit-channel, heads: 2, roles: paper}");
  {
    // paper (q', k', v') = official (k, v, q): softmax(k^T v) applied to q either way.
    torch::NoGradGuard no_grad;
    const auto rows = [&](const torch::Tensor& t, std::int64_t p) { return t.narrow(0, p * kDim, kDim); };
    for (auto* name : {"weight", "bias"}) {
      const auto from = official->qkv->named_parameters()[name];
      paper->qkv->named_parameters()[name].copy_(torch::cat({rows(from, 1), rows(from, 2), rows(from, 0)}));
    }
    paper->proj->weight.copy_(official->proj->weight);
    paper->proj->bias.copy_(official->proj->bias);
  }
  const auto x = attention_tests::randn({2, 7, kDim});
  const auto ctx = attention_tests::context();
  CHECK(max_diff(paper->forward(x, ctx), official->forward(x, ctx)) <= 1e-12);
  // ... and not the same map on the same weights (the roles matter).
  auto swapped = make_channel("{type: attention/davit-channel, heads: 2, roles: paper}");
  {
    torch::NoGradGuard no_grad;
    for (auto& p : swapped->named_parameters()) p.value().copy_(official->named_parameters()[p.key()]);
  }
  CHECK(max_diff(swapped->forward(x, ctx), official->forward(x, ctx)) > 1e-3);
}

TEST_CASE("davit-channel: permuting the tokens permutes the output; grid and prefix tokens change nothing",
          "[variants]") {
  torch::manual_seed(63);
  auto m = make_channel("{type: attention/davit-channel, heads: 4}");
  const auto x = attention_tests::randn({2, 17, kDim});
  const auto y = m->forward(x, attention_tests::context(4, 4, 1));
  const auto perm = torch::randperm(17, torch::kLong);
  CHECK(max_diff(m->forward(x.index_select(1, perm), attention_tests::context(4, 4, 1)), y.index_select(1, perm)) <=
        1e-12);
  // No spatial structure: as a plain sequence, or with every token a prefix token, the same output.
  CHECK(max_diff(m->forward(x, attention_tests::context()), y) <= 1e-12);
  CHECK(max_diff(m->forward(x, attention_tests::context(0, 0, 17)), y) <= 1e-12);
  // Global: changing one token moves every output (through the maps).
  auto z = x.clone();
  z.select(1, 5).add_(1.0);
  const auto moved = (m->forward(z, attention_tests::context()) - y).abs().amax({0, 2});
  CHECK(moved.min().item<double>() > 1e-6);
}

TEST_CASE("davit-channel: the maps are d x d at any length (no N x N): cost linear in N", "[variants]") {
  torch::manual_seed(64);
  auto m = make_channel("{type: attention/davit-channel, heads: 3}");
  torch::NoGradGuard no_grad;
  for (const std::int64_t n : {1, 17, 4096})
    CHECK(m->channel_maps(attention_tests::randn({1, n, kDim})).sizes() == torch::IntArrayRef{1, 3, 4, 4});
  // 2^16 tokens in float32: an N x N map per group would be 3 x 16 GiB; this runs in milliseconds.
  m->to(torch::kFloat32);
  const auto y = m->forward(torch::randn({1, 1 << 16, kDim}), attention_tests::context());
  CHECK(y.sizes() == torch::IntArrayRef{1, 1 << 16, kDim});
  CHECK(torch::isfinite(y).all().item<bool>());
}

TEST_CASE("davit-channel: options that cannot work fail at build time; no causal form; it learns in a ViT",
          "[variants]") {
  try {
    mixer_registry().create(parse_yaml("{type: attention/davit-channel, heads: 5}", "t.yaml"), MixerArgs{kDim, 64});
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Contains("heads must divide the width 12"));
  }
  auto m = make_channel("{type: attention/davit-channel, heads: 3}");
  CHECK_THROWS_WITH(m->forward(attention_tests::randn({1, 4, kDim}), attention_tests::context(0, 0, 0, true)),
                    Catch::Contains("no causal form"));
  CHECK(!m->capabilities().causal);
  CHECK(!m->capabilities().records_weights());
  family_trains::check_learns_vit(DavitChannelAttentionImpl::kKey);
}

}  // namespace BLOCKLAB_TEST_FILE
