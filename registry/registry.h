// Typed registries of named factories, one per kind (mixer, mask, channel, block, backbone,
// head, dataset, task, optimizer, scheduler, ...). No LibTorch here: the product types are
// template parameters supplied by the layers that define them.
//
// Keys are "family/name" (lowercase letters, digits and dashes; one or more '/'-separated
// segments). Every entry carries a one-line summary, the paper it implements, an equation
// line, its parameter schema and a tiny example config used by the conformance tests.
// Registration happens from static initialisers in OBJECT libraries (link-safe); problems
// (duplicate or malformed keys) are collected and reported by RegistryIndex::check() at
// start-up rather than thrown during static initialisation.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "registry/config_error.h"
#include "registry/schema.h"

namespace blocklab {

struct EntryInfo {
  std::string key;
  std::string summary;    // one line
  std::string paper;      // "Title (Authors, Year), arXiv:XXXX.XXXXX"
  std::string equation;   // the block's computation in one line, for describe
  Schema schema;
  std::string example;    // YAML mapping of parameters for a tiny instance ("{}" if defaults do)
  std::string defined_at; // source file of the registration
};

// EntryInfo filled by field name, for registrations:
//   BLOCKLAB_REGISTER(mixer_registry(), BLOCKLAB_ENTRY("attention/softmax")
//                         .summary("...").paper("...").equation("...")
//                         .schema(schema).example("{heads: 2}"),
//                     make_softmax);
class Entry {
 public:
  Entry(std::string key, std::string defined_at) {
    info_.key = std::move(key);
    info_.defined_at = std::move(defined_at);
  }
  Entry& summary(std::string v) { return set(info_.summary, std::move(v)); }
  Entry& paper(std::string v) { return set(info_.paper, std::move(v)); }
  Entry& equation(std::string v) { return set(info_.equation, std::move(v)); }
  Entry& schema(Schema v) {
    info_.schema = std::move(v);
    return *this;
  }
  Entry& example(std::string v) { return set(info_.example, std::move(v)); }
  operator EntryInfo() const { return info_; }  // NOLINT: converts where an EntryInfo is expected

 private:
  Entry& set(std::string& field, std::string v) {
    field = std::move(v);
    return *this;
  }
  EntryInfo info_;
};
#define BLOCKLAB_ENTRY(key) ::blocklab::Entry((key), __FILE__)

bool is_valid_key(const std::string& key);

class RegistryBase {
 public:
  explicit RegistryBase(std::string kind, std::string description);
  virtual ~RegistryBase() = default;
  RegistryBase(const RegistryBase&) = delete;
  RegistryBase& operator=(const RegistryBase&) = delete;

  const std::string& kind() const { return kind_; }
  const std::string& description() const { return description_; }
  bool contains(const std::string& key) const { return entries_.count(key) > 0; }
  // Entries whose key matches the glob, sorted by key.
  std::vector<const EntryInfo*> list(const std::string& glob = "*") const;
  std::vector<std::string> keys() const;
  // Throws ConfigError "unknown <kind> 'key'" with the nearest names.
  const EntryInfo& info(const std::string& key, const Source& where = {}, const std::string& path = {}) const;
  std::size_t size() const { return entries_.size(); }

  // Extra lines `describe` prints for an entry, e.g. a token mixer's capabilities (found by
  // building its example); set by the kind's owner.
  using Describer = std::function<std::vector<std::string>(const EntryInfo&)>;
  void set_describer(Describer describer) { describer_ = std::move(describer); }
  std::vector<std::string> described_facts(const EntryInfo& e) const {
    return describer_ ? describer_(e) : std::vector<std::string>{};
  }

 protected:
  // Returns false (and records the problem) for duplicates and malformed keys.
  bool add_info(EntryInfo info);

 private:
  std::string kind_;
  std::string description_;
  std::map<std::string, EntryInfo> entries_;
  Describer describer_;
};

// All registries by kind, constructed on first use.
class RegistryIndex {
 public:
  static RegistryIndex& instance();
  void add(RegistryBase* registry);
  const RegistryBase* find(const std::string& kind) const;
  std::vector<const RegistryBase*> all() const;  // sorted by kind
  std::vector<std::string> kinds() const;
  // A registration problem found during static initialisation.
  void record_problem(Diagnostic d) { problems_.push_back(std::move(d)); }
  // Throws ConfigError listing every duplicate or malformed registration.
  void check() const;
  // Finds an entry's schema for validation (see ComponentLookup).
  ComponentLookup lookup() const;

 private:
  std::map<std::string, RegistryBase*> registries_;
  std::vector<Diagnostic> problems_;
};

template <class Product, class... Args>
class Registry : public RegistryBase {
 public:
  // The factory receives the component's validated mapping ({type: key, params...}).
  using Factory = std::function<Product(const ConfigNode& params, Args...)>;

  Registry(std::string kind, std::string description) : RegistryBase(std::move(kind), std::move(description)) {
    RegistryIndex::instance().add(this);
  }

  // Registers an entry; returns true so it can initialise a static (see BLOCKLAB_REGISTER).
  bool add(EntryInfo info, Factory factory) {
    const std::string key = info.key;
    if (add_info(std::move(info))) factories_[key] = std::move(factory);
    return true;
  }

  // Builds from "key" or {type: key, ...}.
  Product create(const ConfigNode& node, Args... args) const {
    const std::string key = component_key(node);
    const Source where = node.is_map() && node.has("type") ? node.at("type").source() : node.source();
    if (key.empty())
      throw ConfigError("missing 'type': which " + kind() + " to build", node.source(), "",
                        {"see: blocklab list " + kind()});
    info(key, where);  // throws with suggestions when unknown
    ConfigNode params = node.is_map() ? node : ConfigNode::map(node.source());
    if (!params.has("type")) params.set("type", ConfigNode::string(key, where));
    return factories_.at(key)(params, std::forward<Args>(args)...);
  }

 private:
  std::map<std::string, Factory> factories_;
};

// Registers at static-initialisation time: BLOCKLAB_REGISTER(mixer_registry(), info, factory);
#define BLOCKLAB_CONCAT_INNER(a, b) a##b
#define BLOCKLAB_CONCAT(a, b) BLOCKLAB_CONCAT_INNER(a, b)
// A name unique in the translation unit, for registration variables (a unity build compiles
// several sources as one): const bool BLOCKLAB_UNIQUE(registered_) = ...;
#define BLOCKLAB_UNIQUE(name) BLOCKLAB_CONCAT(name, __COUNTER__)
#define BLOCKLAB_REGISTER(registry, ...) \
  static const bool BLOCKLAB_UNIQUE(blocklab_registered_) = (registry).add(__VA_ARGS__)

}  // namespace blocklab
