// The forecast head's horizon defaults to the data's (HeadArgs.horizon, from ModelInputs.horizon):
// the Transformer forecaster (model/composed + head forecast) follows dataset.horizon.
#include <catch2/catch.hpp>

#include "blocks/heads/forecast.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

TEST_CASE("forecast head: the horizon is the data's unless set; without either it is refused", "[forecast]") {
  const std::string model =
      "{type: model/composed, dim: 8, pool: none, stem: {type: stem/series, patch: 4}, "
      "stack: {type: stack/plain, depth: 1}, mixer: {type: attention/softmax, heads: 2}}";
  ModelArgs args;
  args.inputs.channels = 2;
  args.inputs.length = 16;
  args.inputs.horizon = 7;
  args.outputs = 2;
  args.head = parse_yaml("{type: forecast}", "t.yaml");
  const Network from_data = model_registry().create(parse_yaml(model, "t.yaml"), args);
  CHECK(from_data->forward(torch::randn({3, 16, 2})).sizes() == torch::IntArrayRef({3, 7, 2}));
  args.head = parse_yaml("{type: forecast, horizon: 5}", "t.yaml");
  CHECK(model_registry().create(parse_yaml(model, "t.yaml"), args)->forward(torch::randn({3, 16, 2})).sizes() ==
        torch::IntArrayRef({3, 5, 2}));
  args.head = parse_yaml("{type: forecast}", "t.yaml");
  args.inputs.horizon = 0;
  CHECK_THROWS_WITH(model_registry().create(parse_yaml(model, "t.yaml"), args),
                    Catch::Contains("the forecast head needs a horizon"));
}

}  // namespace BLOCKLAB_TEST_FILE
