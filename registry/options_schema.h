// OptionsSchema<O>: a block's parameters declared once, on its Options struct.
//
// Blocks keep the LibTorch idiom (Options with TORCH_ARG accessors) so they are usable from
// C++ without the registry. Each option is declared once with BLOCKLAB_OPTION; that single
// declaration gives the registry schema (types, defaults read from a default-constructed
// Options, ranges, docs), validation, `describe`, and binding a config mapping onto Options.
//
//   OptionsSchema<MlpOptions> s;
//   BLOCKLAB_OPTION(s, ratio, "hidden width / dim").min = 0.25;
//   MlpOptions o = s.bind(config_mapping);
#pragma once

#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "registry/schema.h"

namespace blocklab {

template <class O>
class OptionsSchema {
 public:
  using options_type = O;

  template <class T>
  ParamSpec& field(const std::string& name, const std::string& doc, std::function<void(O&, const T&)> set,
                   std::function<T(const O&)> get) {
    const O defaults{};
    ParamSpec& spec = add_spec<T>(name, get(defaults), doc);
    binders_.push_back([name, set](O& o, const ParamReader& r) { set(o, read<T>(r, name)); });
    return spec;
  }

  // A string option restricted to `choices`.
  ParamSpec& choice(const std::string& name, std::vector<std::string> choices, const std::string& doc,
                    std::function<void(O&, const std::string&)> set, std::function<std::string(const O&)> get) {
    const O defaults{};
    ParamSpec& spec = schema_.add_choice(name, get(defaults), std::move(choices), doc);
    binders_.push_back([name, set](O& o, const ParamReader& r) { set(o, r.get_string(name)); });
    return spec;
  }

  // A nested registry component (e.g. an attention's mask); bound by the block itself.
  ParamSpec& component(const std::string& name, const std::string& kind, const std::string& default_key,
                       const std::string& doc) {
    ParamSpec& spec = schema_.add_component(name, kind, default_key, doc);
    spec.required = false;
    spec.nullable = default_key.empty();
    return spec;
  }

  const Schema& schema() const { return schema_; }

  // Options from a validated mapping; absent keys keep their defaults.
  O bind(const ConfigNode& node, const std::string& path = "") const {
    O o{};
    const ParamReader reader(node, schema_, path);
    for (const auto& b : binders_) b(o, reader);
    return o;
  }

 private:
  template <class T>
  ParamSpec& add_spec(const std::string& name, const T& def, const std::string& doc) {
    if constexpr (std::is_same_v<T, bool>) {
      return schema_.add_bool(name, def, doc);
    } else if constexpr (std::is_integral_v<T>) {
      return schema_.add_int(name, static_cast<std::int64_t>(def), doc);
    } else if constexpr (std::is_floating_point_v<T>) {
      return schema_.add_float(name, static_cast<double>(def), doc);
    } else if constexpr (std::is_same_v<T, std::string>) {
      return schema_.add_string(name, def, doc);
    } else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>) {
      ConfigNode list = ConfigNode::sequence();
      for (auto v : def) list.push_back(ConfigNode::integer(v));
      return schema_.add(ParamSpec{name, ParamType::IntList, list, false, false, {}, {}, {}, {}, {}, doc});
    } else if constexpr (std::is_same_v<T, std::vector<double>>) {
      ConfigNode list = ConfigNode::sequence();
      for (auto v : def) list.push_back(ConfigNode::floating(v));
      return schema_.add(ParamSpec{name, ParamType::FloatList, list, false, false, {}, {}, {}, {}, {}, doc});
    } else {
      static_assert(sizeof(T) == 0, "unsupported option type");
    }
  }

  template <class T>
  static T read(const ParamReader& r, const std::string& name) {
    if constexpr (std::is_same_v<T, bool>) return r.get_bool(name);
    else if constexpr (std::is_integral_v<T>) return static_cast<T>(r.get_int(name));
    else if constexpr (std::is_floating_point_v<T>) return static_cast<T>(r.get_float(name));
    else if constexpr (std::is_same_v<T, std::string>) return r.get_string(name);
    else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>) return r.get_int_list(name);
    else if constexpr (std::is_same_v<T, std::vector<double>>) return r.get_float_list(name);
  }

  Schema schema_;
  std::vector<std::function<void(O&, const ParamReader&)>> binders_;
};

// Declares the TORCH_ARG option `name` of the schema's Options type: its type and default
// come from the Options struct itself. Returns the ParamSpec (set .min/.max there).
#define BLOCKLAB_OPTION(schema, name, doc)                                                      \
  (schema).template field<std::decay_t<decltype(std::declval<const typename std::decay_t<    \
                                                    decltype(schema)>::options_type&>().name())>>( \
      #name, doc,                                                                              \
      [](typename std::decay_t<decltype(schema)>::options_type& o,                           \
         const std::decay_t<decltype(std::declval<const typename std::decay_t<                \
                                         decltype(schema)>::options_type&>().name())>& v) { o.name(v); }, \
      [](const typename std::decay_t<decltype(schema)>::options_type& o) { return o.name(); })

}  // namespace blocklab
