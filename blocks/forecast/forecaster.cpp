#include "blocks/forecast/forecaster.h"

#include "blocks/common/options.h"

namespace blocklab {

namespace {

std::int64_t size_or_data(std::int64_t option, std::int64_t data, const ConfigNode& params, const std::string& model,
                          const std::string& name) {
  if (option > 0) return option;
  if (data > 0) return data;
  config_fail(params, name, model + " needs its " + name + ": the data do not give it",
              {"set " + name + " in the model's config, or use a series dataset"});
}

}  // namespace

ForecastShape forecast_shape(std::int64_t lookback, std::int64_t horizon, const ModelArgs& args,
                             const ConfigNode& params, const std::string& model) {
  ForecastShape s;
  s.lookback = size_or_data(lookback, args.inputs.length, params, model, "lookback");
  s.horizon = size_or_data(horizon, args.inputs.horizon, params, model, "horizon");
  s.channels = args.inputs.channels;
  if (args.outputs != s.channels)
    config_fail(params, "type",
                model + " forecasts every channel of its input (" + std::to_string(s.channels) +
                    "), but the task wants " + std::to_string(args.outputs) + " outputs",
                {"use it with task: forecast on a series dataset"});
  return s;
}

const OptionsSchema<LtsfOptions>& ltsf_schema(bool with_kernel) {
  const auto make = [](bool kernel) {
    OptionsSchema<LtsfOptions> s;
    BLOCKLAB_OPTION(s, lookback, "look-back L; 0 = from the data (default)").min = 0;
    BLOCKLAB_OPTION(s, horizon, "horizon P; 0 = from the data (default)").min = 0;
    BLOCKLAB_OPTION(s, individual, "one Linear per channel (default false: shared by all channels)");
    if (kernel) BLOCKLAB_OPTION(s, kernel, "moving-average window of the decomposition (default 25)").min = 1;
    return s;
  };
  static const OptionsSchema<LtsfOptions> linear = make(false), dlinear = make(true);
  return with_kernel ? dlinear : linear;
}

LtsfOptions bind_ltsf(const ConfigNode& params, bool with_kernel) {
  return bind_options(ltsf_schema(with_kernel), params);
}

}  // namespace blocklab
