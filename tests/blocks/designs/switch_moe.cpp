// channel/switch-moe (the Switch Transformer's mixture-of-experts FFN), tag [designs]: E = 1 is
// a dense FFN; top-1 and top-2 outputs equal the routing and the experts written out by hand;
// the load-balancing loss equals alpha exactly with a uniform router and its by-hand f, P (and
// the z-loss) at random weights; assignments over capacity give exactly 0; permutations of the
// tokens commute with the layer while no capacity is exceeded; the loss exists only after a
// training forward and is taken once; bad options are ConfigErrors (catalog 003/004 C34).
#include <catch2/catch.hpp>

#include "blocks/family_trains.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "blocks/auxiliary_loss.h"
#include "blocks/channel/switch_moe.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

constexpr std::int64_t kDim = 8;

ChannelMixer build(const std::string& options) {
  return channel_registry().create(parse_yaml("{type: channel/switch-moe" + options + "}", "channel"), kDim);
}

// Built from the registry in float64, every parameter drawn from N(0, 0.5), eval mode.
std::shared_ptr<SwitchMoeImpl> make_moe(const std::string& options) {
  auto m = std::dynamic_pointer_cast<SwitchMoeImpl>(build(options));
  REQUIRE(m);
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.normal_(0.0, 0.5);
  m->eval();
  return m;
}

bool close(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, 1e-10, 1e-12);
}

// W2 gelu(W1 x + b1) + b2, the exact (erf) GELU.
torch::Tensor ffn_by_hand(const MlpImpl& f, const torch::Tensor& x) {
  const auto a = torch::matmul(x, f.fc1->weight.t()) + f.fc1->bias;
  const auto h = 0.5 * a * (1.0 + torch::erf(a / std::sqrt(2.0)));
  return torch::matmul(h, f.fc2->weight.t()) + f.fc2->bias;
}

// softmax(x W_r^T) over the experts, by hand; x [T, C] -> [T, E].
torch::Tensor router_probs(const SwitchMoeImpl& m, const torch::Tensor& x) {
  const auto e = torch::exp(torch::matmul(x, m.router->weight.t()));
  return e / e.sum(-1, true);
}

// The experts of token t, largest probability first (a loop over the row, no topk).
std::vector<std::int64_t> ranked(const torch::Tensor& p_row) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(p_row.size(0)));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t a, std::int64_t b) { return p_row[a].item<double>() > p_row[b].item<double>(); });
  return order;
}

// Top-1 by hand: y_t = p_{t,e} FFN_e(x_t), e = argmax_e p_{t,e}; x [T, C].
torch::Tensor top1_by_hand(const SwitchMoeImpl& m, const torch::Tensor& x) {
  const auto p = router_probs(m, x);
  std::vector<torch::Tensor> rows;
  for (std::int64_t t = 0; t < x.size(0); ++t) {
    const auto e = ranked(p[t])[0];
    rows.push_back(p[t][e] * ffn_by_hand(m.expert(e), x[t]));
  }
  return torch::stack(rows);
}

// Positive tokens: a router row of +w and one of -w make every token's choice known.
torch::Tensor positive_tokens(std::vector<std::int64_t> shape) { return torch::rand(shape, torch::kFloat64) + 0.1; }

}  // namespace

TEST_CASE("channel/switch-moe: one expert is a dense FFN with gate 1", "[designs]") {
  torch::manual_seed(1);
  const auto m = make_moe(", experts: 1, ratio: 2");
  const auto x = torch::randn({2, 5, kDim}, torch::kFloat64);
  CHECK(close(m->forward(x), ffn_by_hand(m->expert(0), x)));
  CHECK(m->expert_counts().sum().item<std::int64_t>() == 10);
}

TEST_CASE("channel/switch-moe: top-1, each token through exactly one expert, times its gate", "[designs]") {
  torch::manual_seed(2);
  const auto m = make_moe(", experts: 4, ratio: 1");
  const auto x = torch::randn({3, 7, kDim}, torch::kFloat64);
  const auto flat = x.reshape({-1, kDim});
  CHECK(close(m->forward(x), top1_by_hand(*m, flat).view(x.sizes())));
  // The counts: one assignment per token, per expert those whose argmax it is.
  const auto p = router_probs(*m, flat);
  std::vector<std::int64_t> counts(4, 0);
  for (std::int64_t t = 0; t < flat.size(0); ++t) ++counts[static_cast<std::size_t>(ranked(p[t])[0])];
  for (std::int64_t e = 0; e < 4; ++e) {
    CHECK(m->expert_counts()[e].item<std::int64_t>() == counts[static_cast<std::size_t>(e)]);
    CHECK(m->routed_counts()[e].item<std::int64_t>() == counts[static_cast<std::size_t>(e)]);
  }
  CHECK(m->expert_counts().sum().item<std::int64_t>() == 21);
  // Leading shapes are only flattened: [T, C] gives the same rows.
  CHECK(close(m->forward(flat), m->forward(x).view({-1, kDim})));
}

TEST_CASE("channel/switch-moe: top-2, the two largest gates renormalised (GShard)", "[designs]") {
  torch::manual_seed(3);
  const auto m = make_moe(", experts: 5, ratio: 1, top_k: 2");
  const auto x = torch::randn({13, kDim}, torch::kFloat64);
  const auto p = router_probs(*m, x);
  std::vector<torch::Tensor> rows;
  for (std::int64_t t = 0; t < 13; ++t) {
    const auto order = ranked(p[t]);
    const auto p1 = p[t][order[0]], p2 = p[t][order[1]];
    rows.push_back((p1 * ffn_by_hand(m->expert(order[0]), x[t]) + p2 * ffn_by_hand(m->expert(order[1]), x[t])) /
                   (p1 + p2));
  }
  CHECK(close(m->forward(x), torch::stack(rows)));
  CHECK(m->routed_counts().sum().item<std::int64_t>() == 26);
}

TEST_CASE("channel/switch-moe: the load-balancing loss, alpha with a uniform router, alpha E sum f P by hand",
          "[designs]") {
  torch::manual_seed(4);
  const auto x = torch::randn({4, 9, kDim}, torch::kFloat64);
  SECTION("uniform router (W_r = 0): P_e = 1/E, so alpha E sum_e f_e / E = alpha whatever f") {
    for (const std::string options : {", experts: 4", ", experts: 5, balance_weight: 0.3", ", experts: 3, top_k: 2"}) {
      INFO("options" << options);
      const auto m = make_moe(options);
      {
        torch::NoGradGuard no_grad;
        m->router->weight.zero_();
      }
      m->train();
      m->forward(x);
      const auto loss = m->take_auxiliary_loss();
      REQUIRE(loss.defined());
      CHECK(loss.item<double>() == Approx(m->options().balance_weight()).epsilon(1e-12));
    }
  }
  SECTION("random router: f from the argmax counts, P the mean probabilities, plus the z-loss") {
    const auto m = make_moe(", experts: 4, ratio: 1, z_loss_weight: 0.001");
    m->train();
    m->forward(x);
    const auto loss = m->take_auxiliary_loss();
    REQUIRE(loss.defined());
    const auto flat = x.reshape({-1, kDim});
    const auto p = router_probs(*m, flat);
    const auto tokens = static_cast<double>(flat.size(0));
    double balance = 0.0;
    for (std::int64_t e = 0; e < 4; ++e) {
      double f = 0.0;
      for (std::int64_t t = 0; t < flat.size(0); ++t) f += ranked(p[t])[0] == e ? 1.0 : 0.0;
      balance += (f / tokens) * p.select(1, e).mean().item<double>();
    }
    const auto r = torch::matmul(flat, m->router->weight.t());
    const double z = torch::log(torch::exp(r).sum(-1)).pow(2).mean().item<double>();
    CHECK(loss.item<double>() == Approx(0.01 * 4 * balance + 0.001 * z).epsilon(1e-12));
    // P_e carries the router's gradient.
    loss.backward();
    REQUIRE(m->router->weight.grad().defined());
    CHECK(m->router->weight.grad().abs().sum().item<double>() > 0.0);
  }
}

TEST_CASE("channel/switch-moe: assignments beyond an expert's capacity give exactly 0", "[designs]") {
  torch::manual_seed(5);
  SECTION("top-1: all 12 tokens choose expert 0, capacity ceil(0.5 * 12 / 2) = 3, over the whole batch") {
    const auto m = make_moe(", experts: 2, ratio: 1, capacity_factor: 0.5");
    {
      torch::NoGradGuard no_grad;
      m->router->weight[0].fill_(0.2);
      m->router->weight[1].fill_(-0.2);
    }
    const auto x = positive_tokens({2, 6, kDim});
    const auto y = m->forward(x).reshape({-1, kDim});
    const auto flat = x.reshape({-1, kDim});
    const auto kept = top1_by_hand(*m, flat.slice(0, 0, 3));
    CHECK(close(y.slice(0, 0, 3), kept));
    CHECK(kept.abs().min().item<double>() > 0.0);
    CHECK(torch::equal(y.slice(0, 3), torch::zeros({9, kDim}, torch::kFloat64)));
    CHECK(m->expert_counts()[0].item<std::int64_t>() == 3);
    CHECK(m->expert_counts()[1].item<std::int64_t>() == 0);
    CHECK(m->routed_counts()[0].item<std::int64_t>() == 12);
  }
  SECTION("top-2: first choices expert 0, second expert 1, capacity ceil(0.75 * 2 * 12 / 3) = 6") {
    const auto m = make_moe(", experts: 3, ratio: 1, top_k: 2, capacity_factor: 0.75");
    {
      torch::NoGradGuard no_grad;
      m->router->weight[0].fill_(0.3);
      m->router->weight[1].fill_(0.1);
      m->router->weight[2].fill_(-0.3);
    }
    const auto x = positive_tokens({12, kDim});
    const auto y = m->forward(x);
    const auto p = router_probs(*m, x);
    for (std::int64_t t = 0; t < 6; ++t) {
      const auto expected =
          (p[t][0] * ffn_by_hand(m->expert(0), x[t]) + p[t][1] * ffn_by_hand(m->expert(1), x[t])) / (p[t][0] + p[t][1]);
      CHECK(close(y[t], expected));
    }
    CHECK(torch::equal(y.slice(0, 6), torch::zeros({6, kDim}, torch::kFloat64)));
    CHECK(m->expert_counts()[0].item<std::int64_t>() == 6);
    CHECK(m->expert_counts()[1].item<std::int64_t>() == 6);
    CHECK(m->expert_counts()[2].item<std::int64_t>() == 0);
  }
}

TEST_CASE("channel/switch-moe: permuting the tokens permutes the output while no capacity is exceeded", "[designs]") {
  torch::manual_seed(6);
  // Unlimited (default); capacity ceil(4 T / 4) = T; top-2 with capacity ceil(2 * 2 T / 4) = T.
  for (const std::string options : {"", ", capacity_factor: 4.0", ", top_k: 2, capacity_factor: 2.0"}) {
    INFO("options" << options);
    const auto m = make_moe(", experts: 4, ratio: 1" + options);
    const auto x = torch::randn({10, kDim}, torch::kFloat64);
    const auto perm = torch::randperm(10, torch::kLong);
    CHECK(close(m->forward(x.index_select(0, perm)), m->forward(x).index_select(0, perm)));
  }
}

TEST_CASE("channel/switch-moe: the auxiliary loss only after a training forward, taken once", "[designs]") {
  torch::manual_seed(7);
  const auto m = make_moe(", experts: 4, ratio: 1");
  const auto x = torch::randn({2, 5, kDim}, torch::kFloat64);
  m->forward(x);  // eval
  CHECK_FALSE(m->take_auxiliary_loss().defined());
  m->train();
  m->forward(x);
  torch::nn::ModuleList root;
  root->push_back(m);
  const auto taken = take_auxiliary_losses(*root);  // the training loop's call
  REQUIRE(taken.defined());
  CHECK(taken.item<double>() > 0.0);
  CHECK_FALSE(m->take_auxiliary_loss().defined());  // taken once
  const auto off = make_moe(", experts: 4, ratio: 1, balance_weight: 0.0");
  off->train();
  off->forward(x);
  CHECK_FALSE(off->take_auxiliary_loss().defined());  // both weights 0: no term at all
}

TEST_CASE("channel/switch-moe: jitter only in training; hidden sets the experts' width", "[designs]") {
  torch::manual_seed(8);
  const auto m = make_moe(", experts: 4, ratio: 1, jitter: 0.5");
  const auto x = torch::randn({12, kDim}, torch::kFloat64);
  CHECK(close(m->forward(x), top1_by_hand(*m, x)));  // eval: no noise
  m->train();
  CHECK_FALSE(close(m->forward(x), top1_by_hand(*m, x)));  // training: the gates move with the noise

  const auto h = make_moe(", experts: 3, hidden: 5");
  CHECK(h->expert(2).fc1->weight.size(0) == 5);
  std::int64_t count = 0;
  for (const auto& p : h->parameters()) count += p.numel();
  CHECK(count == kDim * 3 + 3 * (kDim * 5 + 5 + 5 * kDim + kDim));  // router + E experts
}

TEST_CASE("channel/switch-moe: bad options are ConfigErrors", "[designs]") {
  for (const std::string options :
       {", experts: 0", ", top_k: 3", ", top_k: 0", ", experts: 1, top_k: 2", ", capacity_factor: -1.0",
        ", jitter: 1.5", ", activation: tanh", ", balance_weight: -0.1", ", z_loss_weight: -1.0", ", hidden: -2",
        ", experts: 2, capacity: 1.0"}) {
    INFO("options" << options);
    CHECK_THROWS_AS(build(options), ConfigError);
  }
}

TEST_CASE("channel/switch-moe learns images as the channel mixer of a ViT", "[designs]") {
  family_trains::check_learns_images(
      "{type: model/composed, dim: 32, pool: mean, stem: {type: stem/patch, patch: 4, pos: learned}, "
      "stack: {type: stack/plain, depth: 2, drop_path: 0.0}, mixer: {type: attention/softmax, heads: 2}, "
      "channel: {type: channel/switch-moe, experts: 4, ratio: 2}}");
}

}  // namespace BLOCKLAB_TEST_FILE
