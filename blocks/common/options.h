// Binding a registry entry's config mapping onto a block's Options, with validation.
//
// Registry::create hands a factory the raw mapping ({type: key, params...}). Experiments
// validate their whole config before building, but a block may also be created directly
// (tests, nested components, C++ callers), so every factory validates its own mapping again:
// unknown keys, types, ranges and nested components fail with file:line and did-you-mean
// before any tensor is allocated.
#pragma once

#include <string>
#include <vector>

#include "registry/options_schema.h"

namespace blocklab {

// Checks `params` (a component mapping; its "type" key is accepted) against `schema`,
// resolving nested components through the registries. Throws ConfigError with every problem.
void check_params(const ConfigNode& params, const Schema& schema);

// Validated Options from a component mapping; absent keys keep the Options defaults.
template <class O>
O bind_options(const OptionsSchema<O>& schema, const ConfigNode& params) {
  check_params(params, schema.schema());
  return schema.bind(params);
}

// Throws a ConfigError located at params[name] when given (else at the mapping): for rules
// that involve more than one value, e.g. "dim must be divisible by heads".
[[noreturn]] void config_fail(const ConfigNode& params, const std::string& name, const std::string& message,
                              std::vector<std::string> hints = {});

// Bounds a rate (dropout, stochastic depth) to [0, 1]; returns the spec.
ParamSpec& rate(ParamSpec& spec);

}  // namespace blocklab
