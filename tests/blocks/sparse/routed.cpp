// Tests of the routed attention core (tag [sparse]): blocks/attention/parts/routed_core.h. Random
// per-sample, per-head groups (overlapping, with queries in no group, rows with no allowed key,
// biases) equal the dense oracle under both merges, in values and gradients (float64); the union
// merge of a split key set is the softmax over the union; groups that partition the grid into
// windows are the local core's windows; the probe's dense weights reproduce the output.
#include <catch2/catch.hpp>

#include <vector>

#include "blocks/attention/parts/local_core.h"
#include "blocks/attention/parts/local_patterns.h"
#include "blocks/attention/parts/routed_core.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kBatch = 2, kHeads = 3, kTokens = 11, kDim = 4, kValueDim = 5;
constexpr double kTolerance = 1e-10;

torch::Tensor randn(torch::IntArrayRef shape) { return torch::randn(shape, torch::kFloat64); }

// G groups of b queries and m distinct keys per sample and head, drawn at random (a query may be
// in several groups or none).
RoutedGroups random_groups(std::int64_t groups, std::int64_t per_group, std::int64_t keys, bool masked, bool biased) {
  RoutedGroups g;
  std::vector<torch::Tensor> queries, chosen;
  for (std::int64_t i = 0; i < kBatch * kHeads * groups; ++i) {
    queries.push_back(torch::randperm(kTokens, torch::kLong).narrow(0, 0, per_group));
    chosen.push_back(torch::randperm(kTokens, torch::kLong).narrow(0, 0, keys));
  }
  g.query_index = torch::stack(queries).view({kBatch, kHeads, groups, per_group});
  g.key_index = torch::stack(chosen).view({kBatch, kHeads, groups, keys});
  if (masked) {
    g.allowed = torch::rand({kBatch, kHeads, groups, per_group, keys}) < 0.6;
    g.allowed.select(3, 0).fill_(false);  // the first query of every group sees no key
  }
  if (biased) g.bias = randn({kBatch, kHeads, groups, per_group, keys});
  return g;
}

}  // namespace

TEST_CASE("routed core: equals the dense oracle, values and gradients, under both merges", "[sparse]") {
  torch::manual_seed(11);
  for (const auto merge : {RoutedMerge::union_softmax, RoutedMerge::mean})
    for (const bool masked : {false, true})
      for (const bool biased : {false, true}) {
        INFO("merge " << (merge == RoutedMerge::mean ? "mean" : "union") << ", masked " << masked << ", biased "
                      << biased);
        const auto g = random_groups(4, 3, 5, masked, biased);
        const auto q = randn({kBatch, kHeads, kTokens, kDim}).requires_grad_();
        const auto k = randn({kBatch, kHeads, kTokens, kDim}).requires_grad_();
        const auto v = randn({kBatch, kHeads, kTokens, kValueDim}).requires_grad_();
        const auto out = routed_attend(q, k, v, g, 0.7, merge);
        const auto oracle = routed_attend_dense(q, k, v, g, 0.7, merge);
        CHECK(max_diff(out, oracle) <= kTolerance);
        const auto cotangent = randn(out.sizes());
        const auto grads = torch::autograd::grad({out}, {q, k, v}, {cotangent});
        const auto oracle_grads = torch::autograd::grad({oracle}, {q, k, v}, {cotangent});
        for (std::size_t i = 0; i < grads.size(); ++i) CHECK(max_diff(grads[i], oracle_grads[i]) <= kTolerance);
        // Queries in no group (and, masked, in no group with a key) get 0.
        const auto hit = torch::zeros({kBatch, kHeads, kTokens}, torch::kLong)
                             .scatter_add(2, g.query_index.flatten(2), torch::ones({kBatch, kHeads, 12}, torch::kLong));
        CHECK(out.detach().masked_select((hit == 0).unsqueeze(-1)).abs().sum().item<double>() == 0.0);
      }
}

TEST_CASE("routed core: the union merge of a split key set is one softmax over the union", "[sparse]") {
  torch::manual_seed(12);
  const auto q = randn({kBatch, kHeads, kTokens, kDim}), k = randn({kBatch, kHeads, kTokens, kDim});
  const auto v = randn({kBatch, kHeads, kTokens, kValueDim});
  // Every query once with all keys, against every query twice: keys [0, 6) and keys [6, 11).
  const auto all = torch::arange(kTokens, torch::kLong);
  const RoutedGroups whole{all.view({1, 1, 1, -1}), all.view({1, 1, 1, -1}), {}, {}};
  // The halves: the same queries in two groups, one allowed keys [0, 6), the other [6, 11).
  RoutedGroups halves{
      torch::stack({all, all}).view({1, 1, 2, -1}), torch::stack({all, all}).view({1, 1, 2, -1}), {}, {}};
  halves.allowed = torch::stack({(all < 6).expand({kTokens, kTokens}), (all >= 6).expand({kTokens, kTokens})})
                       .view({1, 1, 2, kTokens, kTokens});
  const auto reference = routed_attend(q, k, v, whole, 0.5, RoutedMerge::union_softmax);
  CHECK(max_diff(routed_attend(q, k, v, halves, 0.5, RoutedMerge::union_softmax), reference) <= kTolerance);
  CHECK(max_diff(reference, torch::matmul(torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * 0.5, -1), v)) <=
        kTolerance);
}

TEST_CASE("routed core: window groups are the local core's windows; the probe map reproduces the output", "[sparse]") {
  torch::manual_seed(13);
  const auto pattern = window_pattern(4, 6, 2, 3);
  const auto& part = pattern.parts.at(0);
  const RoutedGroups windows{
      part.query_index.view({1, 1, part.groups(), -1}), part.key_index.view({1, 1, part.groups(), -1}), {}, {}};
  const auto q = randn({kBatch, kHeads, 24, kDim}), k = randn({kBatch, kHeads, 24, kDim});
  const auto v = randn({kBatch, kHeads, 24, kValueDim});
  const auto local = local_attend(q, k, v, pattern, {}, 0.5);
  for (const auto merge : {RoutedMerge::union_softmax, RoutedMerge::mean}) {
    torch::Tensor w, lse;
    const auto out = routed_attend(q, k, v, windows, 0.5, merge, &w, &lse);
    CHECK(max_diff(out, local) <= kTolerance);
    const auto dense = routed_weights_dense(w, lse, windows, 24, 24, merge);
    CHECK(max_diff(dense.sum(-1), torch::ones({kBatch, kHeads, 24}, torch::kFloat64)) <= kTolerance);
    CHECK(max_diff(torch::matmul(dense, v), out) <= kTolerance);
  }
  // Overlapping random groups: the merged dense weights still reproduce the output.
  const auto g = random_groups(5, 4, 6, true, true);
  const auto q2 = randn({kBatch, kHeads, kTokens, kDim}), k2 = randn({kBatch, kHeads, kTokens, kDim});
  const auto v2 = randn({kBatch, kHeads, kTokens, kValueDim});
  for (const auto merge : {RoutedMerge::union_softmax, RoutedMerge::mean}) {
    torch::Tensor w, lse;
    const auto out = routed_attend(q2, k2, v2, g, 0.5, merge, &w, &lse);
    CHECK(max_diff(torch::matmul(routed_weights_dense(w, lse, g, kTokens, kTokens, merge), v2), out) <= kTolerance);
  }
}

}  // namespace BLOCKLAB_TEST_FILE
