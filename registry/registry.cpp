#include "registry/registry.h"

#include <regex>

#include "registry/suggest.h"

namespace blocklab {

bool is_valid_key(const std::string& key) {
  static const std::regex re("[a-z0-9]+(-[a-z0-9]+)*(/[a-z0-9]+(-[a-z0-9]+)*)*");
  return std::regex_match(key, re);
}

RegistryBase::RegistryBase(std::string kind, std::string description)
    : kind_(std::move(kind)), description_(std::move(description)) {}

bool RegistryBase::add_info(EntryInfo info) {
  const Source where = Source::in_file(info.defined_at, 0);
  if (!is_valid_key(info.key)) {
    RegistryIndex::instance().record_problem(
        Diagnostic{where, "", "malformed " + kind_ + " key '" + info.key + "'",
                   {"keys are lowercase words joined by dashes, in '/'-separated segments, e.g. attention/softmax"}});
    return false;
  }
  auto it = entries_.find(info.key);
  if (it != entries_.end()) {
    RegistryIndex::instance().record_problem(
        Diagnostic{where, "", "duplicate " + kind_ + " registration '" + info.key + "'",
                   {"first registered in " + it->second.defined_at, "rename one of the two entries"}});
    return false;
  }
  entries_.emplace(info.key, std::move(info));
  return true;
}

std::vector<const EntryInfo*> RegistryBase::list(const std::string& glob) const {
  std::vector<const EntryInfo*> out;
  for (const auto& [key, e] : entries_)
    if (glob_match(glob, key)) out.push_back(&e);
  return out;
}

std::vector<std::string> RegistryBase::keys() const {
  std::vector<std::string> out;
  for (const auto& kv : entries_) out.push_back(kv.first);
  return out;
}

const EntryInfo& RegistryBase::info(const std::string& key, const Source& where, const std::string& path) const {
  auto it = entries_.find(key);
  if (it != entries_.end()) return it->second;
  std::vector<std::string> hints;
  const std::string dym = did_you_mean(key, keys());
  if (!dym.empty()) hints.push_back(dym);
  hints.push_back(entries_.empty() ? "no " + kind_ + " is registered yet" : "see: blocklab list " + kind_);
  throw ConfigError("unknown " + kind_ + " '" + key + "'", where, path, hints);
}

RegistryIndex& RegistryIndex::instance() {
  static RegistryIndex index;
  return index;
}

void RegistryIndex::add(RegistryBase* registry) {
  if (registries_.count(registry->kind())) {
    record_problem(Diagnostic{{}, "", "two registries declare the kind '" + registry->kind() + "'", {}});
    return;
  }
  registries_[registry->kind()] = registry;
}

const RegistryBase* RegistryIndex::find(const std::string& kind) const {
  auto it = registries_.find(kind);
  return it == registries_.end() ? nullptr : it->second;
}

std::vector<const RegistryBase*> RegistryIndex::all() const {
  std::vector<const RegistryBase*> out;
  for (const auto& kv : registries_) out.push_back(kv.second);
  return out;
}

std::vector<std::string> RegistryIndex::kinds() const {
  std::vector<std::string> out;
  for (const auto& kv : registries_) out.push_back(kv.first);
  return out;
}

void RegistryIndex::check() const {
  if (!problems_.empty()) throw ConfigError(problems_);
}

ComponentLookup RegistryIndex::lookup() const {
  return [this](const std::string& kind, const std::string& key, std::vector<std::string>& hints,
                std::string& message) -> const Schema* {
    const RegistryBase* reg = find(kind);
    if (!reg) {
      message = "unknown registry kind '" + kind + "'";
      return nullptr;
    }
    if (reg->contains(key)) return &reg->info(key).schema;
    message = "unknown " + kind + " '" + key + "'";
    const std::string dym = did_you_mean(key, reg->keys());
    if (!dym.empty()) hints.push_back(dym);
    hints.push_back(reg->size() == 0 ? "no " + kind + " is registered yet" : "see: blocklab list " + kind);
    return nullptr;
  };
}

}  // namespace blocklab
