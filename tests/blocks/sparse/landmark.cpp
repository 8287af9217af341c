// Property tests of sparse/landmark, Landmark Attention's grouped softmax (tag [sparse]): the
// block equals the paper's rule written densely here (float64), its implied map is causal with
// rows summing to 1 and empty landmark columns, the within-block ratio is exp(s_ij - s_ij'), and
// without landmarks it is causal softmax attention; a causal LM learns with it (the ViT check of
// every sparse mixer is in mixers.cpp).
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/family_trains.h"
#include "blocks/probe.h"
#include "blocks/sparse/landmark.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kDim = 16;

TokenMixer make_landmark(std::int64_t block) {
  torch::manual_seed(2);
  auto m = mixer_registry().create(
      parse_yaml("{type: sparse/landmark, heads: 2, block: " + std::to_string(block) + "}", "t.yaml"),
      MixerArgs{kDim, 128});
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

LandmarkAttentionImpl& landmark_of(TokenMixer& m) { return dynamic_cast<LandmarkAttentionImpl&>(*m); }

// The paper's p [B, h, N, N] row by row: blk(j) = landmarks strictly before j; the main group of
// query i is its block's regular keys j <= i and the landmarks of the earlier blocks; a regular
// key of an earlier block b gets p^main(L_b) times its softmax inside block b; landmarks get 0.
torch::Tensor landmark_oracle(const torch::Tensor& q, const torch::Tensor& k, std::int64_t block, double scale) {
  const auto n = q.size(2);
  const auto s = torch::matmul(q * scale, k.transpose(-2, -1));  // [B, h, N, N]
  std::vector<bool> landmark(n);
  std::vector<std::int64_t> blk(n);
  std::int64_t seen = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    blk[j] = seen;
    landmark[j] = j % (block + 1) == block;
    seen += landmark[j];
  }
  auto p = torch::zeros_like(s);
  for (std::int64_t i = 0; i < n; ++i) {
    std::vector<std::int64_t> group;
    for (std::int64_t j = 0; j <= i; ++j)
      if ((!landmark[j] && blk[j] == blk[i]) || (landmark[j] && blk[j] < blk[i])) group.push_back(j);
    const auto g = torch::tensor(group, torch::kLong);
    const auto main = torch::softmax(s.select(2, i).index_select(-1, g), -1);  // [B, h, |G|]
    for (std::size_t a = 0; a < group.size(); ++a) {
      const auto j = group[a];
      if (!landmark[j]) {
        p.select(2, i).select(-1, j).copy_(main.select(-1, a));
        continue;
      }
      std::vector<std::int64_t> members;  // the regular tokens of the block L_j closes
      for (std::int64_t t = 0; t < j; ++t)
        if (!landmark[t] && blk[t] == blk[j]) members.push_back(t);
      const auto m = torch::tensor(members, torch::kLong);
      const auto inside = torch::softmax(s.select(2, i).index_select(-1, m), -1);
      p.select(2, i).index_copy_(-1, m, inside * main.select(-1, a).unsqueeze(-1));
    }
  }
  return p;
}

}  // namespace

TEST_CASE("sparse/landmark: equals the paper's grouped softmax written densely, partial last blocks too", "[sparse]") {
  for (const std::int64_t block : {1, 3})
    for (const std::int64_t tokens : {1, 5, 9, 23}) {
      INFO("block " << block << ", " << tokens << " tokens");
      auto m = make_landmark(block);
      auto& landmark = landmark_of(m);
      const auto x = torch::randn({2, tokens, kDim}, torch::kFloat64);
      const auto [q, k, v] = landmark.project(x);
      const auto p = landmark_oracle(q, k, block, landmark.scale());
      AttentionProbe probe;
      probe.enable();
      auto ctx = attention_tests::context(0, 0, 0, true);
      ctx.probe = &probe;
      CHECK(max_diff(landmark.attend(q, k, v, ctx), torch::matmul(p, v)) <= 1e-9);
      REQUIRE(probe.records().size() == 1);
      CHECK(max_diff(probe.records()[0].probs, p) <= 1e-9);
    }
}

TEST_CASE("sparse/landmark: the implied map is causal, rows sum to 1, landmark columns are 0", "[sparse]") {
  auto m = make_landmark(3);
  const auto x = torch::randn({2, 23, kDim}, torch::kFloat64);
  AttentionProbe probe;
  probe.enable();
  for (const bool causal : {true, false}) {  // always causal
    auto ctx = attention_tests::context(0, 0, 0, causal);
    ctx.probe = &probe;
    m->forward(x, ctx);
  }
  REQUIRE(probe.records().size() == 2);
  CHECK(torch::equal(probe.records()[0].probs, probe.records()[1].probs));
  const auto map = probe.records()[0].probs;
  CHECK(map.min().item<double>() >= 0.0);
  CHECK(map.triu(1).abs().max().item<double>() == 0.0);
  CHECK(max_diff(map.sum(-1), torch::ones({2, 2, 23}, torch::kFloat64)) <= 1e-12);
  const auto landmarks = torch::tensor({3, 7, 11, 15, 19}, torch::kLong);  // p % 4 == 3
  CHECK(map.index_select(-1, landmarks).abs().max().item<double>() == 0.0);
  CHECK(map.narrow(2, 4, 19).index_select(-1, torch::tensor({0, 1, 2}, torch::kLong)).min().item<double>() > 0.0);
}

TEST_CASE("sparse/landmark: inside an earlier block, p_ij / p_ij' = exp(s_ij - s_ij')", "[sparse]") {
  auto m = make_landmark(3);
  auto& landmark = landmark_of(m);
  const auto x = torch::randn({1, 17, kDim}, torch::kFloat64);
  const auto [q, k, v] = landmark.project(x);
  AttentionProbe probe;
  probe.enable();
  auto ctx = attention_tests::context(0, 0, 0, true);
  ctx.probe = &probe;
  landmark.attend(q, k, v, ctx);
  const auto p = probe.records().at(0).probs;
  const auto s = torch::matmul(q * landmark.scale(), k.transpose(-2, -1));
  for (const std::int64_t i : {4, 9, 16})                                                // queries in blocks 1, 2, 4
    for (const auto& [j, j2] : {std::pair<std::int64_t, std::int64_t>{0, 2}, {1, 2}}) {  // regular keys of block 0
      INFO("query " << i << ", keys " << j << " and " << j2);
      const auto ratio = p.select(2, i).select(-1, j) / p.select(2, i).select(-1, j2);
      const auto expected = (s.select(2, i).select(-1, j) - s.select(2, i).select(-1, j2)).exp();
      CHECK(max_diff(ratio, expected) <= 1e-10);
    }
}

TEST_CASE("sparse/landmark: without landmarks (block >= N) it is causal softmax attention", "[sparse]") {
  auto m = make_landmark(23);
  auto dense = attention_tests::softmax_twin(landmark_of(m));
  const auto x = torch::randn({2, 23, kDim}, torch::kFloat64);
  const auto causal = attention_tests::context(0, 0, 0, true);
  CHECK(max_diff(m->forward(x, causal), dense->forward(x, causal)) <= 1e-12);
  CHECK(max_diff(m->forward(x, attention_tests::context()), dense->forward(x, causal)) <= 1e-12);
  auto blocked = make_landmark(3);
  CHECK(max_diff(blocked->forward(x, causal), dense->forward(x, causal)) > 1e-6);  // landmarks change it
}

TEST_CASE("sparse/landmark: a causal token LM learns with it (the sequence reaches across blocks)", "[sparse]") {
  // The token to predict sits 8 back, two blocks of the example (block 3) earlier: reachable only
  // through its landmark's gate, so learning is slower than full attention's (as recurrent/aaren, 0.75).
  family_trains::check_learns_lm("sparse/landmark", 0.75);
}

}  // namespace BLOCKLAB_TEST_FILE
