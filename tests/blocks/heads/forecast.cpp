// forecast head (PatchTST's flatten + linear head, arXiv:2211.14730 §3.1): the explicit formula,
// its place at the end of a series model, and its errors.
#include <catch2/catch.hpp>

#include "blocks/heads/forecast.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {
ConfigNode yaml(const std::string& text) { return parse_yaml(text, "test.yaml"); }
}  // namespace

TEST_CASE("forecast head: y = reshape(W flatten(z) + b, [horizon, channels])", "[model]") {
  torch::manual_seed(3);
  ForecastHead head(HeadArgs{8, 3, 5}, ForecastHeadOptions().horizon(4));
  const torch::Tensor z = torch::randn({2, 5, 8});
  const torch::Tensor y = head->forward(z);
  REQUIRE(y.sizes() == torch::IntArrayRef({2, 4, 3}));
  const torch::Tensor expected = (torch::matmul(z.reshape({2, 40}), head->fc->weight.t()) + head->fc->bias).view({2, 4, 3});
  CHECK(torch::allclose(y, expected, 1e-6, 1e-6));
  // Forecast step t of channel c reads every token: a change in the first token moves it.
  torch::Tensor z2 = z.clone();
  z2[0][0].add_(1.0);
  CHECK_FALSE(torch::allclose(head->forward(z2)[0][3], y[0][3]));
  CHECK(torch::allclose(head->forward(z2)[1], y[1]));
  CHECK_THROWS_WITH(head->forward(torch::randn({2, 6, 8})), Catch::Contains("built for tokens [B, 5, D]"));
}

TEST_CASE("forecast head ends a series model: series [B, L, channels] -> [B, horizon, channels]", "[model]") {
  // 24 steps of 3 channels in PatchTST patches of 6 every 6 steps: 4 tokens, every token read.
  const std::string model =
      "{type: model/composed, dim: 16, pool: none, stem: {type: stem/series, channels: 3, length: 24, "
      "patch: 6}, stack: {type: stack/plain, depth: 1, drop_path: 0.0}, mixer: {type: attention/softmax, heads: 2}}";
  ModelArgs args;
  args.inputs.channels = 3;
  args.inputs.length = 24;
  args.outputs = 3;
  args.head = yaml("{type: forecast, horizon: 12}");
  torch::manual_seed(4);
  const Model m = composed_model(model_registry().create(yaml(model), args));
  const torch::Tensor series = torch::randn({2, 24, 3});
  const torch::Tensor y = m->forward(series);
  CHECK(y.sizes() == torch::IntArrayRef({2, 12, 3}));
  y.pow(2).mean().backward();
  for (const auto& p : m->named_parameters()) {
    INFO(p.key());
    CHECK(p.value().grad().defined());
  }
  const auto* head = dynamic_cast<const ForecastHeadImpl*>(&m->head());
  REQUIRE(head);
  CHECK(head->fc->weight.sizes() == torch::IntArrayRef({12 * 3, 4 * 16}));
}

}  // namespace BLOCKLAB_TEST_FILE
