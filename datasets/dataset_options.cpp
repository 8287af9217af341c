#include "datasets/dataset_options.h"

#include <vector>

#include "registry/config_error.h"
#include "registry/suggest.h"

namespace blocklab {

void throw_unknown_split(const std::string& dataset, const std::string& name) {
  const std::vector<std::string> names{"train", "val", "test"};
  std::vector<std::string> hints;
  if (std::string dym = did_you_mean(name, names); !dym.empty()) hints.push_back(dym);
  hints.push_back("splits: " + join_names(names));
  throw ConfigError(dataset + " has no split '" + name + "'", {}, "", hints);
}

ConfigNode validated_dataset_options(const Schema& schema, const ConfigNode& params) {
  ConfigNode values = params.is_map() ? params : ConfigNode::map();
  values.erase("type");
  DiagnosticSink sink;
  validate(values, schema, "dataset", {}, sink);
  sink.throw_if_any();
  return values;
}

void check_dataset_option_range(const Schema& schema, const std::string& name, std::int64_t value) {
  const ParamSpec& spec = *schema.find(name);
  const auto v = static_cast<double>(value);
  if ((spec.min && v < *spec.min) || (spec.max && v > *spec.max))
    throw ConfigError(std::to_string(value) + " is out of range", {}, "dataset." + name, {spec.type_text()});
}

}  // namespace blocklab
