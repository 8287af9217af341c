// attention/single-head (SHViT's SHSA), tag [variants]: the formula by hand from the mixer's own
// weights (eval, running statistics); its output is 0 at init; the passed-through channels are
// not mixed across tokens; with C_p = C it is one head of global attention, ReLU, projection.
// And it learns to classify images in a ViT.
#include <catch2/catch.hpp>

#include "blocks/attention/single_head.h"
#include "blocks/family_trains.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kDim = 24;

std::shared_ptr<SingleHeadAttentionImpl> make_shsa(const std::string& yaml) {
  auto m = std::dynamic_pointer_cast<SingleHeadAttentionImpl>(
      mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{kDim, 64}));
  REQUIRE(m);
  m->to(torch::kFloat64);
  attention_tests::randomise_for_by_hand(*m);
  return m;
}

}  // namespace

TEST_CASE("single-head: the SHSA formula by hand, eval statistics", "[variants]") {
  torch::manual_seed(51);
  auto m = make_shsa("{type: attention/single-head, partial: 7, qk_dim: 5}");
  const auto x = torch::randn({3, 11, kDim}, torch::kFloat64);
  const auto x1 = x.narrow(2, 0, 7), x2 = x.narrow(2, 7, kDim - 7);
  // GroupNorm with one group: each sample's 7 x 11 values standardised, then the affine per channel.
  const auto mean = x1.mean({1, 2}, true), var = x1.var({1, 2}, /*unbiased=*/false, true);
  const auto normed = (x1 - mean) / torch::sqrt(var + 1e-5) * m->pre_norm->weight + m->pre_norm->bias;
  const auto qkv = attention_tests::conv_bn_by_hand(*m->qkv, normed);
  const auto q = qkv.narrow(2, 0, 5), k = qkv.narrow(2, 5, 5), v = qkv.narrow(2, 10, 7);
  const auto mixed = torch::matmul(torch::softmax(torch::matmul(q, k.transpose(1, 2)) / std::sqrt(5.0), -1), v);
  const auto want = attention_tests::conv_bn_by_hand(*m->proj, torch::relu(torch::cat({mixed, x2}, 2)));
  CHECK(max_diff(m->forward(x, attention_tests::context()), want) <= 1e-10);
}

TEST_CASE("single-head: zero at init; passed-through channels stay at their token", "[variants]") {
  torch::manual_seed(52);
  auto fresh =
      mixer_registry().create(parse_yaml("{type: attention/single-head, partial: 6}", "t.yaml"), MixerArgs{kDim, 64});
  fresh->eval();
  const auto x = torch::randn({2, 9, kDim});
  CHECK(fresh->forward(x, attention_tests::context()).abs().max().item<double>() == 0.0);
  // Perturb x2 (channels >= C_p) at token 4: only token 4's output moves.
  auto m = make_shsa("{type: attention/single-head, partial: 6}");
  const auto y = torch::randn({2, 9, kDim}, torch::kFloat64);
  auto z = y.clone();
  z.index_put_({torch::indexing::Slice(), 4, torch::indexing::Slice(6, kDim)},
               torch::randn({2, kDim - 6}, torch::kFloat64));
  const auto change =
      (m->forward(z, attention_tests::context()) - m->forward(y, attention_tests::context())).abs().amax({0, 2});
  CHECK(change[4].item<double>() > 1e-3);
  auto others = change.clone();
  others[4] = 0.0;
  CHECK(others.max().item<double>() <= 1e-12);
  // Perturbing x1 at token 4 moves every token (it is mixed by the head).
  auto w = y.clone();
  w.index_put_({torch::indexing::Slice(), 4, torch::indexing::Slice(0, 6)}, torch::randn({2, 6}, torch::kFloat64));
  const auto spread =
      (m->forward(w, attention_tests::context()) - m->forward(y, attention_tests::context())).abs().amax({0, 2});
  CHECK(spread.min().item<double>() > 1e-6);
}

TEST_CASE("single-head: options that cannot work fail at build time; it learns in a ViT", "[variants]") {
  try {
    mixer_registry().create(parse_yaml("{type: attention/single-head, partial: 99}", "t.yaml"), MixerArgs{kDim, 64});
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Contains("partial must be at most the width 24"));
  }
  family_trains::check_learns_vit(SingleHeadAttentionImpl::kKey);
}

}  // namespace BLOCKLAB_TEST_FILE
