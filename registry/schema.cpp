#include "registry/schema.h"

#include <cmath>

#include "registry/suggest.h"
#include "registry/yaml_io.h"

namespace blocklab {

const char* param_type_name(ParamType t) {
  switch (t) {
    case ParamType::Int: return "int";
    case ParamType::Float: return "float";
    case ParamType::Bool: return "bool";
    case ParamType::String: return "string";
    case ParamType::Choice: return "choice";
    case ParamType::IntList: return "list of int";
    case ParamType::FloatList: return "list of float";
    case ParamType::StringList: return "list of string";
    case ParamType::Component: return "component";
    case ParamType::Section: return "section";
    case ParamType::Any: return "any";
  }
  return "?";
}

static std::string number_text(double v, bool integer) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return integer ? std::to_string(static_cast<long long>(v)) : format_double(v);
}

static std::string range_text(const ParamSpec& s) {
  if (!s.min && !s.max) return "";
  const bool integer = s.type == ParamType::Int || s.type == ParamType::IntList;
  return "[" + (s.min ? number_text(*s.min, integer) : "-inf") + ", " + (s.max ? number_text(*s.max, integer) : "inf") +
         "]";
}

std::string ParamSpec::type_text() const {
  std::string t = param_type_name(type);
  if (type == ParamType::Choice) t = "one of " + join_names(choices, "|");
  if (type == ParamType::Component) t = component_kind + " key";
  const std::string r = range_text(*this);
  if (!r.empty()) t += " in " + r;
  if (nullable) t += " or null";
  if (required) t += ", required";
  else if (type != ParamType::Section) t += ", default " + yaml_scalar_text(default_value);
  return t;
}

ParamSpec& Schema::add(ParamSpec spec) {
  for (auto& p : params_)
    if (p.name == spec.name) return p = std::move(spec);
  params_.push_back(std::move(spec));
  return params_.back();
}

ParamSpec& Schema::add_int(const std::string& name, std::int64_t def, const std::string& doc) {
  return add(ParamSpec{name, ParamType::Int, ConfigNode::integer(def), false, false, {}, {}, {}, {}, {}, doc});
}
ParamSpec& Schema::add_float(const std::string& name, double def, const std::string& doc) {
  return add(ParamSpec{name, ParamType::Float, ConfigNode::floating(def), false, false, {}, {}, {}, {}, {}, doc});
}
ParamSpec& Schema::add_bool(const std::string& name, bool def, const std::string& doc) {
  return add(ParamSpec{name, ParamType::Bool, ConfigNode::boolean(def), false, false, {}, {}, {}, {}, {}, doc});
}
ParamSpec& Schema::add_string(const std::string& name, const std::string& def, const std::string& doc) {
  return add(ParamSpec{name, ParamType::String, ConfigNode::string(def), false, false, {}, {}, {}, {}, {}, doc});
}
ParamSpec& Schema::add_choice(const std::string& name, const std::string& def, std::vector<std::string> choices,
                              const std::string& doc) {
  return add(ParamSpec{name, ParamType::Choice, ConfigNode::string(def), false, false, {}, {}, std::move(choices), {},
                       {}, doc});
}
ParamSpec& Schema::add_component(const std::string& name, const std::string& kind, const std::string& default_key,
                                 const std::string& doc) {
  ParamSpec s{name, ParamType::Component, default_key.empty() ? ConfigNode::null() : ConfigNode::string(default_key),
              default_key.empty(), false, {}, {}, {}, kind, {}, doc};
  return add(std::move(s));
}
ParamSpec& Schema::add_section(const std::string& name, Schema section, const std::string& doc) {
  ParamSpec s{name, ParamType::Section, ConfigNode::map(), false, false, {}, {}, {}, {},
              std::make_shared<const Schema>(std::move(section)), doc};
  return add(std::move(s));
}

const ParamSpec* Schema::find(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

std::vector<std::string> Schema::names() const {
  std::vector<std::string> out;
  for (const auto& p : params_) out.push_back(p.name);
  return out;
}

ConfigNode Schema::defaults() const {
  ConfigNode out = ConfigNode::map();
  for (const auto& p : params_) out.set(p.name, p.type == ParamType::Section ? p.section->defaults() : p.default_value);
  return out;
}

std::string component_key(const ConfigNode& node) {
  if (node.is_scalar()) return node.text();
  if (node.is_map())
    if (const ConfigNode* t = node.find("type"))
      if (t->is_scalar()) return t->text();
  return {};
}

namespace {

std::string child_path(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

std::string shown(const ConfigNode& v) {
  if (v.is_scalar()) return std::string(v.kind_name()) + " '" + v.text() + "'";
  return v.kind_name();
}

Diagnostic diag(const ConfigNode& at, const std::string& path, std::string msg, std::vector<std::string> hints = {}) {
  return Diagnostic{at.source(), path, std::move(msg), std::move(hints)};
}

std::string param_hint(const ParamSpec& spec) {
  return spec.name + ": " + spec.type_text() + (spec.doc.empty() ? "" : " - " + spec.doc);
}

void check_range(const ConfigNode& v, const ParamSpec& spec, const std::string& path, DiagnosticSink& sink) {
  const double x = v.as_double();
  if ((spec.min && !(x >= *spec.min)) || (spec.max && !(x <= *spec.max)))
    sink.add(diag(v, path, v.text() + " is out of range: " + spec.name + " must be in " + range_text(spec),
                  {param_hint(spec)}));
}

void check_scalar(const ConfigNode& v, ParamType type, const ParamSpec& spec, const std::string& path,
                  DiagnosticSink& sink) {
  switch (type) {
    case ParamType::Int:
      if (!v.is_int()) {
        sink.add(diag(v, path, "expected an int, got " + shown(v), {param_hint(spec)}));
        return;
      }
      check_range(v, spec, path, sink);
      return;
    case ParamType::Float:
      if (!v.is_number()) {
        sink.add(diag(v, path, "expected a float, got " + shown(v), {param_hint(spec)}));
        return;
      }
      check_range(v, spec, path, sink);
      return;
    case ParamType::Bool:
      if (!v.is_bool()) sink.add(diag(v, path, "expected a bool (true or false), got " + shown(v), {param_hint(spec)}));
      return;
    case ParamType::String:
      if (!v.is_scalar()) sink.add(diag(v, path, "expected a string, got " + shown(v), {param_hint(spec)}));
      return;
    case ParamType::Choice: {
      if (!v.is_scalar()) {
        sink.add(diag(v, path, "expected one of " + join_names(spec.choices) + ", got " + shown(v)));
        return;
      }
      for (const auto& c : spec.choices)
        if (c == v.text()) return;
      std::vector<std::string> hints;
      const std::string dym = did_you_mean(v.text(), spec.choices);
      if (!dym.empty()) hints.push_back(dym);
      hints.push_back("valid values: " + join_names(spec.choices));
      sink.add(diag(v, path, "'" + v.text() + "' is not a valid value for " + spec.name, hints));
      return;
    }
    default: return;
  }
}

}  // namespace

void validate_value(const ConfigNode& v, const ParamSpec& spec, const std::string& path, const ComponentLookup& lookup,
                    DiagnosticSink& sink) {
  if (v.is_missing()) {
    sink.add(diag(v, path, "mandatory value '?\?\?' was not given", {"set it on the command line: " + path + "=..."}));
    return;
  }
  if (v.is_null()) {
    if (!spec.nullable && !(spec.type == ParamType::Any))
      sink.add(diag(v, path, "null is not allowed here", {param_hint(spec)}));
    return;
  }
  switch (spec.type) {
    case ParamType::Int:
    case ParamType::Float:
    case ParamType::Bool:
    case ParamType::String:
    case ParamType::Choice:
      check_scalar(v, spec.type, spec, path, sink);
      return;
    case ParamType::IntList:
    case ParamType::FloatList:
    case ParamType::StringList: {
      if (!v.is_sequence()) {
        sink.add(diag(v, path, std::string("expected a ") + param_type_name(spec.type) + ", got " + shown(v),
                      {param_hint(spec)}));
        return;
      }
      const ParamType item = spec.type == ParamType::IntList     ? ParamType::Int
                             : spec.type == ParamType::FloatList ? ParamType::Float
                                                                 : ParamType::String;
      for (std::size_t i = 0; i < v.items().size(); ++i)
        check_scalar(v.items()[i], item, spec, path + "." + std::to_string(i), sink);
      return;
    }
    case ParamType::Section:
      if (!v.is_map()) {
        sink.add(diag(v, path, "expected a mapping, got " + shown(v), {param_hint(spec)}));
        return;
      }
      validate(v, *spec.section, path, lookup, sink);
      return;
    case ParamType::Component: {
      if (!v.is_scalar() && !v.is_map()) {
        sink.add(diag(v, path, "expected a " + spec.component_kind + " key or {type: key, ...}, got " + shown(v)));
        return;
      }
      const std::string key = component_key(v);
      if (key.empty()) {
        sink.add(diag(v, path, "missing 'type': which " + spec.component_kind + " to build",
                      {"see: blocklab list " + spec.component_kind}));
        return;
      }
      std::vector<std::string> hints;
      std::string message;
      const Schema* sub = lookup ? lookup(spec.component_kind, key, hints, message) : nullptr;
      if (!sub) {
        const ConfigNode& at = v.is_map() ? v.at("type") : v;
        sink.add(diag(at, v.is_map() ? path + ".type" : path, message, hints));
        return;
      }
      if (v.is_map()) {
        ConfigNode params = v;
        params.erase("type");
        validate(params, *sub, path, lookup, sink);
      }
      return;
    }
    case ParamType::Any: return;
  }
}

void validate(const ConfigNode& node, const Schema& schema, const std::string& path, const ComponentLookup& lookup,
              DiagnosticSink& sink) {
  if (!node.is_map()) {
    sink.add(diag(node, path, "expected a mapping, got " + shown(node)));
    return;
  }
  std::vector<std::string> valid = schema.names();
  for (const auto& [key, value] : node.entries()) {
    const std::string p = child_path(path, key);
    if (const ParamSpec* spec = schema.find(key)) {
      validate_value(value, *spec, p, lookup, sink);
      continue;
    }
    bool extra = false;
    for (const auto& k : schema.extra_keys()) extra = extra || k == key;
    if (extra) continue;
    std::vector<std::string> hints;
    const std::string dym = did_you_mean(key, valid);
    if (!dym.empty()) hints.push_back(dym);
    hints.push_back(valid.empty() ? "this takes no keys" : "valid keys: " + join_names(valid));
    sink.add(diag(value, p, "unknown key '" + key + "'", hints));
  }
  for (const auto& spec : schema.params())
    if (spec.required && !node.has(spec.name))
      sink.add(diag(node, path, "missing required key '" + spec.name + "'", {param_hint(spec)}));
}

ParamReader::ParamReader(const ConfigNode& node, const Schema& schema, std::string path)
    : node_(node.is_map() ? node : ConfigNode::map(node.source())), schema_(schema), path_(std::move(path)) {}

const ConfigNode& ParamReader::value(const std::string& name) const {
  if (const ConfigNode* v = node_.find(name)) return *v;
  const ParamSpec* spec = schema_.find(name);
  if (!spec) throw ConfigError("internal: parameter '" + name + "' is not in the schema", node_.source(), path_);
  if (spec->required)
    throw ConfigError("missing required key '" + name + "'", node_.source(), path_, {param_hint(*spec)});
  return spec->default_value;
}

std::int64_t ParamReader::get_int(const std::string& name) const { return value(name).as_int(); }
double ParamReader::get_float(const std::string& name) const { return value(name).as_double(); }
bool ParamReader::get_bool(const std::string& name) const { return value(name).as_bool(); }
std::string ParamReader::get_string(const std::string& name) const { return value(name).as_string(); }
bool ParamReader::is_null(const std::string& name) const { return value(name).is_null(); }
ConfigNode ParamReader::get_node(const std::string& name) const { return value(name); }

std::vector<std::int64_t> ParamReader::get_int_list(const std::string& name) const {
  std::vector<std::int64_t> out;
  for (const auto& i : value(name).items()) out.push_back(i.as_int());
  return out;
}
std::vector<double> ParamReader::get_float_list(const std::string& name) const {
  std::vector<double> out;
  for (const auto& i : value(name).items()) out.push_back(i.as_double());
  return out;
}
std::vector<std::string> ParamReader::get_string_list(const std::string& name) const {
  std::vector<std::string> out;
  for (const auto& i : value(name).items()) out.push_back(i.as_string());
  return out;
}

}  // namespace blocklab
