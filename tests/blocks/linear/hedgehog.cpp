// linear/hedgehog (tag [linear]): the feature maps, the output from the module's weights, and
// the attention-distillation loss (catalog_002 B-44: non-negative features, rows that sum to 1,
// the loss falls towards the teacher's entropy when the maps are trained on a fixed batch).
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/linear/hedgehog.h"
#include "tests/blocks/linear/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::linear_tests;

TEST_CASE("linear/hedgehog: each feature map is non-negative; the maps start as the identity", "[linear]") {
  torch::manual_seed(1);
  const auto x = torch::randn({2, 2, 7, 8}, torch::kFloat64) * 3;
  for (const std::string map : {"softmax_dim", "exp", "joint_softmax"}) {
    INFO("feature map " << map);
    Hedgehog m(16, HedgehogOptions().heads(2).feature_map(map));
    m->to(torch::kFloat64);
    const auto phi = m->features(x, m->q_map_weight, m->q_map_bias);
    CHECK(phi.sizes() == torch::IntArrayRef({2, 2, 7, 16}));
    CHECK(phi.min().item<double>() >= 0.0);
    if (map == "exp") CHECK(max_diff(phi, torch::cat({x.exp(), (-x).exp()}, -1)) <= 1e-12);
    if (map == "softmax_dim")
      CHECK(max_diff(phi, torch::cat({torch::softmax(x, -1), torch::softmax(-x, -1)}, -1)) <= 1e-12);
    if (map == "joint_softmax") CHECK(max_diff(phi.sum(-1), torch::ones({2, 2, 7}, torch::kFloat64)) <= 1e-12);
  }
}

TEST_CASE("linear/hedgehog: the output is normalised linear attention on the learned features", "[linear]") {
  torch::manual_seed(2);
  Hedgehog m(16, HedgehogOptions().heads(2).feature_dim(5).chunk(4));
  m->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    for (auto* p : {&m->q_map_weight, &m->k_map_weight, &m->q_map_bias, &m->k_map_bias}) p->normal_();
  }
  const auto x = torch::randn({2, 9, 16}, torch::kFloat64);
  const auto params = m->named_parameters();
  const auto y = torch::linear(x, params["qkv.weight"], params["qkv.bias"]);
  const auto map = [](const torch::Tensor& t, const torch::Tensor& w, const torch::Tensor& b) {
    const auto z = torch::matmul(t, w) + b.unsqueeze(1);  // [B, h, N, d] @ [h, d, d']
    return torch::cat({torch::softmax(z, -1), torch::softmax(-z, -1)}, -1);
  };
  const auto q = map(split_heads(y.narrow(-1, 0, 16), 2), m->q_map_weight, m->q_map_bias);
  const auto k = map(split_heads(y.narrow(-1, 16, 16), 2), m->k_map_weight, m->k_map_bias);
  const auto v = split_heads(y.narrow(-1, 32, 16), 2);
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    auto a = q.matmul(k.transpose(-1, -2));
    if (causal) a = a.tril();
    const auto o = (a.matmul(v) / (a.sum(-1, true) + 1e-6)).transpose(1, 2).reshape({2, 9, 16});
    CHECK(max_diff(m->forward(x, context(causal)), torch::linear(o, params["proj.weight"], params["proj.bias"])) <=
          1e-12);
  }
}

TEST_CASE(
    "linear/hedgehog: distillation adds a loss in training only, once, that falls towards the teacher's "
    "entropy",
    "[linear]") {
  torch::manual_seed(3);
  Hedgehog m(16, HedgehogOptions().heads(2).distill_weight(1.0));
  m->to(torch::kFloat64);
  const auto x = torch::randn({4, 12, 16}, torch::kFloat64);
  m->eval();
  m->forward(x, context(true));
  CHECK_FALSE(m->take_auxiliary_loss().defined());
  m->train();
  m->forward(x, context(true));
  const auto first = m->take_auxiliary_loss();
  REQUIRE(first.defined());
  CHECK_FALSE(m->take_auxiliary_loss().defined());  // taken once
  // The cross-entropy is at least the teacher's entropy; training only the feature maps on
  // this batch (the paper's stage 1) brings it closer.
  const auto params = m->named_parameters();
  const auto qkv = torch::linear(x, params["qkv.weight"], params["qkv.bias"]).detach();
  const auto q = split_heads(qkv.narrow(-1, 0, 16), 2), k = split_heads(qkv.narrow(-1, 16, 16), 2);
  auto logits = q.matmul(k.transpose(-1, -2)) / std::sqrt(8.0);
  logits = logits.masked_fill(torch::ones({12, 12}, torch::kBool).triu(1), -INFINITY);
  const auto teacher = torch::softmax(logits, -1);
  const double entropy = -(teacher * teacher.clamp_min(1e-300).log()).sum(-1).mean().item<double>();
  const double start = m->distillation_loss(q, k, true).item<double>();
  CHECK(start >= entropy);
  CHECK(first.item<double>() == Approx(start).epsilon(1e-12));
  torch::optim::Adam opt({m->q_map_weight, m->k_map_weight, m->q_map_bias, m->k_map_bias},
                         torch::optim::AdamOptions(0.05));
  for (int i = 0; i < 150; ++i) {
    opt.zero_grad();
    const auto loss = m->distillation_loss(q, k, true);
    loss.backward();
    opt.step();
  }
  const double end = m->distillation_loss(q, k, true).item<double>();
  INFO("entropy " << entropy << ", cross-entropy " << start << " -> " << end);
  CHECK(end >= entropy - 1e-9);
  CHECK(end - entropy < 0.5 * (start - entropy));
}

}  // namespace BLOCKLAB_TEST_FILE
