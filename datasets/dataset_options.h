// What every dataset plugin does with its options: bind a `dataset` config section onto its
// Options struct (validated against the schema, `type` dropped), refuse out-of-range values
// when a dataset is constructed from C++ without a config, and name an unknown split.
#pragma once

#include <cstdint>
#include <string>

#include "registry/options_schema.h"

namespace blocklab {

// A `dataset` config's options without `type`, validated against `schema` (throws ConfigError
// listing every problem, "dataset.<key>"); a scalar `dataset: <type>` gives an empty mapping.
ConfigNode validated_dataset_options(const Schema& schema, const ConfigNode& params);

// The options of a `dataset` config ({type: ..., ...}), validated against `schema`. Throws
// ConfigError listing every problem ("dataset.<key>").
// A plain `dataset: <type>` (a scalar) has no options: the defaults.
template <class O>
O bind_dataset_options(const OptionsSchema<O>& schema, const ConfigNode& params) {
  return schema.bind(validated_dataset_options(schema.schema(), params), "dataset");
}

// Throws ConfigError: `dataset` (its registry key) has no split `name` (with a did-you-mean
// among train, val and test).
[[noreturn]] void throw_unknown_split(const std::string& dataset, const std::string& name);

// One of a dataset's three parts by split name; throws ConfigError for any other name.
template <class Part>
const Part& part_by_name(const std::string& dataset, const std::string& name, const Part& train, const Part& val,
                         const Part& test) {
  if (name == "train") return train;
  if (name == "val") return val;
  if (name == "test") return test;
  throw_unknown_split(dataset, name);
}

// Throws ConfigError ("dataset.<name>") when an integer option is outside the range `schema`
// declares for it.
void check_dataset_option_range(const Schema& schema, const std::string& name, std::int64_t value);

}  // namespace blocklab
