// Parameter schemas: what a registry entry accepts, declared once per Options type.
//
// A Schema lists parameters (name, type, default, range or choices, one-line doc). It drives
// validation of configs before anything is built, `blocklab describe`, dumping defaults back
// to YAML, and binding config values onto an Options struct (see OptionsSchema<O>).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "registry/config_error.h"
#include "registry/config_node.h"

namespace blocklab {

enum class ParamType {
  Int,
  Float,
  Bool,
  String,
  Choice,      // one of `choices`
  IntList,
  FloatList,
  StringList,
  Component,   // a registry entry of `kind`: "key" or {type: key, ...its params}
  Section,     // a nested mapping with its own schema
  Any,         // free-form, not checked
};
const char* param_type_name(ParamType t);

class Schema;

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::Any;
  ConfigNode default_value;          // null when there is no default (see required)
  bool required = false;             // must be given (no default)
  bool nullable = false;             // null is accepted
  std::optional<double> min, max;    // inclusive numeric bounds (Int, Float, and list items)
  std::vector<std::string> choices;  // Choice
  std::string component_kind;        // Component: registry kind, e.g. "mixer"
  std::shared_ptr<const Schema> section;  // Section
  std::string doc;                   // one line

  // "int in [1, 64], default 4" style summary used by describe.
  std::string type_text() const;
};

class Schema {
 public:
  Schema() = default;

  // Fluent declaration; each returns the spec for further refinement.
  ParamSpec& add(ParamSpec spec);
  ParamSpec& add_int(const std::string& name, std::int64_t def, const std::string& doc);
  ParamSpec& add_float(const std::string& name, double def, const std::string& doc);
  ParamSpec& add_bool(const std::string& name, bool def, const std::string& doc);
  ParamSpec& add_string(const std::string& name, const std::string& def, const std::string& doc);
  ParamSpec& add_choice(const std::string& name, const std::string& def, std::vector<std::string> choices,
                        const std::string& doc);
  ParamSpec& add_component(const std::string& name, const std::string& kind, const std::string& default_key,
                           const std::string& doc);
  ParamSpec& add_section(const std::string& name, Schema section, const std::string& doc);

  const std::vector<ParamSpec>& params() const { return params_; }
  const ParamSpec* find(const std::string& name) const;
  std::vector<std::string> names() const;
  bool empty() const { return params_.empty(); }
  // Keys that are accepted but not parameters (e.g. "type" in a component mapping).
  void allow_key(const std::string& key) { extra_keys_.push_back(key); }
  const std::vector<std::string>& extra_keys() const { return extra_keys_; }

  // Every parameter with its default, as a YAML mapping (for describe and examples).
  ConfigNode defaults() const;

 private:
  std::vector<ParamSpec> params_;
  std::vector<std::string> extra_keys_;
};

// Looks up the schema of a component (registry kind + key) during validation. Returns
// nullptr and fills `hints` (nearest names) when the key is unknown.
using ComponentLookup = std::function<const Schema*(const std::string& kind, const std::string& key,
                                                    std::vector<std::string>& hints, std::string& message)>;

// Checks `node` (a mapping) against `schema`; every problem goes into `sink` with the value's
// file:line and YAML path. `path` is the mapping's own path ("" at the root).
void validate(const ConfigNode& node, const Schema& schema, const std::string& path, const ComponentLookup& lookup,
              DiagnosticSink& sink);
// Checks one value against one parameter.
void validate_value(const ConfigNode& value, const ParamSpec& spec, const std::string& path,
                    const ComponentLookup& lookup, DiagnosticSink& sink);

// The component key of a node: "key" scalar or the `type` field of a mapping; empty if none.
std::string component_key(const ConfigNode& node);

// Typed access to a validated mapping, falling back to the schema's defaults.
class ParamReader {
 public:
  ParamReader(const ConfigNode& node, const Schema& schema, std::string path);
  std::int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  std::string get_string(const std::string& name) const;
  std::vector<std::int64_t> get_int_list(const std::string& name) const;
  std::vector<double> get_float_list(const std::string& name) const;
  std::vector<std::string> get_string_list(const std::string& name) const;
  // The value as configured, or the default: for Component/Section/Any parameters.
  ConfigNode get_node(const std::string& name) const;
  bool is_null(const std::string& name) const;

 private:
  const ConfigNode& value(const std::string& name) const;
  ConfigNode node_;
  const Schema& schema_;
  std::string path_;
};

}  // namespace blocklab
