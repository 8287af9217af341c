#include "registry/compose.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "registry/config_error.h"
#include "registry/interpolate.h"
#include "registry/suggest.h"
#include "registry/yaml_io.h"

namespace fs = std::filesystem;

namespace blocklab {

namespace {

std::string dotted(const std::string& group) {
  std::string s = group;
  std::replace(s.begin(), s.end(), '/', '.');
  return s;
}

std::string join_pkg(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "." + b;
}

std::string parent_dir(const std::string& group) {
  const auto p = group.rfind('/');
  return p == std::string::npos ? "" : group.substr(0, p);
}

struct ConfigFile {
  std::string display;                 // display path
  std::optional<std::string> header;   // "# @package ..." value
  ConfigNode body;                     // without `defaults`
  ConfigNode defaults;                 // the defaults list (null if none)
};

struct DefaultsEntry {
  enum class Kind { Self, Include, Group };
  Kind kind = Kind::Group;
  std::string group;        // as written (may start with '/')
  std::string package;      // after '@', empty when none
  bool optional = false;
  bool is_override = false;
  ConfigNode option;        // scalar (option name) or null
  Source where;
};

// One config body to merge at an absolute package.
struct MergeItem {
  std::string package;
  ConfigNode body;
};

class Composer {
 public:
  explicit Composer(const ComposeRequest& r) : req_(r) {
    display_dir_ = r.display_dir.empty() ? r.config_dir : r.display_dir;
  }

  ComposeResult run() {
    classify_overrides();
    const fs::path primary = fs::path(req_.config_dir) / (req_.config_name + ".yaml");
    if (req_.config_name.empty() || !fs::is_regular_file(primary)) {
      const auto names = list_primary_configs(req_.config_dir);
      std::vector<std::string> hints;
      const std::string dym = did_you_mean(req_.config_name, names);
      if (!dym.empty()) hints.push_back(dym);
      hints.push_back(names.empty() ? "no experiments in " + display_dir_
                                    : "experiments: " + join_names(names));
      throw ConfigError("unknown experiment '" + req_.config_name + "' (no " + display(req_.config_name + ".yaml") + ")",
                        Source{}, "", hints);
    }
    const ConfigFile top = load(req_.config_name + ".yaml");
    collect_default_overrides(top, "");
    std::vector<std::string> stack{top.display};
    expand(top, "", "", stack);

    // Groups added from the command line (+group=opt, or ++group=opt with no match).
    for (const auto& g : group_overrides_) {
      const bool add = g.op == Override::Op::Add || (g.op == Override::Op::ForceAdd && !matched_.count(key_of(g)));
      if (!add) continue;
      if (g.op == Override::Op::Add && matched_.count(key_of(g))) {
        sink_.add(Diagnostic{g.source(), "", "cannot add config group '" + g.key + "': the defaults list already has it",
                             {"choose another option with " + g.key + "=" + g.value.text()}});
        continue;
      }
      DefaultsEntry e;
      e.group = "/" + g.key;
      e.package = g.package;
      e.option = g.value;
      e.where = g.source();
      expand_group(e, "", "", stack, /*from_cli=*/true);
    }
    check_unmatched_overrides();
    sink_.throw_if_any();

    ConfigNode root = ConfigNode::map(Source::in_file(top.display, 1));
    for (auto& item : items_) merge_at(root, item.package, std::move(item.body));
    apply_value_overrides(root);
    sink_.throw_if_any();
    if (req_.resolve) resolve_interpolations(root);
    return ComposeResult{std::move(root), choices_};
  }

 private:
  std::string display(const std::string& rel) const { return (fs::path(display_dir_) / rel).string(); }

  static std::string key_of(const Override& o) { return o.package.empty() ? o.key : o.key + "@" + o.package; }

  void classify_overrides() {
    for (const auto& o : req_.overrides) {
      if (o.is_sweep() || o.is_zip()) {
        throw ConfigError("'" + o.text + "' is a sweep: a single run takes one value per key", o.source(), "",
                          {"run every value with: blocklab sweep <experiment> " + o.text});
      }
      const bool group = is_config_group(req_.config_dir, o.key);
      if (group) {
        if (o.has_value && !o.value.is_null() && !o.value.is_scalar()) {
          sink_.add(Diagnostic{o.source(), "", "config group '" + o.key + "' takes an option name, not a " +
                                                   std::string(o.value.kind_name()),
                               {"options: " + join_names(list_group_options(req_.config_dir, o.key))}});
          continue;
        }
        group_overrides_.push_back(o);
      } else {
        if (!o.package.empty()) {
          sink_.add(Diagnostic{o.source(), "", "'" + o.key + "' is not a config group, so '@" + o.package +
                                                   "' does not apply",
                               {"config groups: " + join_names(groups_near(o.key))}});
          continue;
        }
        if (o.key.find('/') != std::string::npos) {
          const std::string g = parent_dir(o.key);
          std::vector<std::string> hints;
          const std::string dym = did_you_mean(o.key, all_groups());
          if (!dym.empty()) hints.push_back(dym);
          hints.push_back("config groups: " + join_names(all_groups()));
          sink_.add(Diagnostic{o.source(), "", "unknown config group '" + o.key + "'", hints});
          continue;
        }
        value_overrides_.push_back(o);
      }
    }
  }

  std::vector<std::string> all_groups() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(req_.config_dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_directory()) out.push_back(fs::relative(it->path(), req_.config_dir).generic_string());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<std::string> groups_near(const std::string&) const { return all_groups(); }

  ConfigFile load(const std::string& rel) {
    ConfigFile f;
    f.display = display(rel);
    const std::string text = read_text_file((fs::path(req_.config_dir) / rel).string(), f.display);
    // "# @package x" among the leading comment lines.
    std::size_t pos = 0;
    while (pos < text.size()) {
      const std::size_t end = std::min(text.find('\n', pos), text.size());
      std::string line = text.substr(pos, end - pos);
      pos = end + 1;
      const auto first = line.find_first_not_of(" \t\r");
      if (first == std::string::npos) continue;
      if (line[first] != '#') break;
      const auto at = line.find("@package");
      if (at != std::string::npos) {
        std::string v = line.substr(at + 8);
        v.erase(0, v.find_first_not_of(" \t"));
        v.erase(v.find_last_not_of(" \t\r") + 1);
        f.header = v;
      }
    }
    ConfigNode node = parse_yaml(text, f.display);
    if (node.is_null()) node = ConfigNode::map(Source::in_file(f.display, 1));
    if (!node.is_map())
      throw ConfigError("a config file must be a mapping, not a " + std::string(node.kind_name()),
                        Source::in_file(f.display, node.source().line));
    if (const ConfigNode* d = node.find("defaults")) {
      f.defaults = *d;
      node.erase("defaults");
    }
    f.body = std::move(node);
    return f;
  }

  std::vector<DefaultsEntry> parse_defaults(const ConfigFile& f) {
    std::vector<DefaultsEntry> out;
    if (f.defaults.is_null()) return out;
    if (!f.defaults.is_sequence()) {
      sink_.add(Diagnostic{f.defaults.source(), "defaults", "the defaults list must be a list, not a " +
                                                                std::string(f.defaults.kind_name()),
                           {"write it as:\ndefaults:\n    - group: option\n    - _self_"}});
      return out;
    }
    for (const auto& item : f.defaults.items()) {
      DefaultsEntry e;
      e.where = item.source();
      if (item.is_scalar()) {
        e.kind = item.text() == "_self_" ? DefaultsEntry::Kind::Self : DefaultsEntry::Kind::Include;
        e.group = item.text();
        out.push_back(e);
        continue;
      }
      if (!item.is_map() || item.entries().size() != 1) {
        sink_.add(Diagnostic{item.source(), "defaults",
                             "a defaults entry is '_self_', a config name, or one 'group: option' pair",
                             {"got a " + std::string(item.kind_name())}});
        continue;
      }
      std::string key = item.entries()[0].first;
      const ConfigNode& value = item.entries()[0].second;
      e.where = value.source();
      for (const char* kw : {"optional ", "override "}) {
        if (key.rfind(kw, 0) == 0) {
          (std::string(kw) == "optional " ? e.optional : e.is_override) = true;
          key = key.substr(std::string(kw).size());
          key.erase(0, key.find_first_not_of(' '));
        }
      }
      const auto at = key.find('@');
      if (at != std::string::npos) {
        e.package = key.substr(at + 1);
        key = key.substr(0, at);
      }
      e.group = key;
      if (!value.is_null() && !value.is_scalar()) {
        sink_.add(Diagnostic{value.source(), "defaults", "the option of group '" + key + "' must be a name or null",
                             {"got a " + std::string(value.kind_name())}});
        continue;
      }
      e.option = value;
      out.push_back(e);
    }
    return out;
  }

  static std::string absolute_group(const std::string& written, const std::string& parent_group) {
    if (!written.empty() && written[0] == '/') return written.substr(1);
    return parent_group.empty() ? written : parent_group + "/" + written;
  }

  static std::string entry_key(const std::string& group, const std::string& package) {
    return package.empty() ? group : group + "@" + package;
  }

  // `override group: opt` entries change choices before the tree is built (outer ones win).
  void collect_default_overrides(const ConfigFile& f, const std::string& group_dir) {
    for (const auto& e : parse_defaults(f)) {
      if (e.kind != DefaultsEntry::Kind::Group || !e.is_override) continue;
      const std::string key = entry_key(absolute_group(e.group, group_dir), e.package);
      if (!default_overrides_.count(key)) default_overrides_[key] = e;
    }
  }

  void expand(const ConfigFile& f, const std::string& group_dir, const std::string& package,
              std::vector<std::string>& stack) {
    auto entries = parse_defaults(f);
    const bool has_self = std::any_of(entries.begin(), entries.end(),
                                      [](const DefaultsEntry& e) { return e.kind == DefaultsEntry::Kind::Self; });
    if (!has_self) {
      DefaultsEntry self;
      self.kind = DefaultsEntry::Kind::Self;
      entries.push_back(self);
    }
    for (const auto& e : entries) {
      switch (e.kind) {
        case DefaultsEntry::Kind::Self:
          items_.push_back(MergeItem{package, f.body});
          break;
        case DefaultsEntry::Kind::Include: {
          const std::string rel = (group_dir.empty() ? "" : group_dir + "/") + e.group + ".yaml";
          if (!fs::is_regular_file(fs::path(req_.config_dir) / rel)) {
            sink_.add(Diagnostic{e.where, "defaults", "config '" + e.group + "' not found (no " + display(rel) + ")", {}});
            break;
          }
          descend(rel, group_dir, package, stack, e.where);
          break;
        }
        case DefaultsEntry::Kind::Group:
          if (!e.is_override) expand_group(e, group_dir, package, stack, false);
          break;
      }
    }
  }

  void descend(const std::string& rel, const std::string& group_dir, const std::string& package,
               std::vector<std::string>& stack, const Source& where) {
    const std::string disp = display(rel);
    if (std::find(stack.begin(), stack.end(), disp) != stack.end() || stack.size() > 32) {
      sink_.add(Diagnostic{where, "defaults", "defaults lists form a cycle: " + join_names(stack, " -> ") + " -> " + disp,
                           {"remove one of the entries that include each other"}});
      return;
    }
    ConfigFile child = load(rel);
    std::string pkg = package;
    if (child.header) pkg = header_package(*child.header, group_dir);
    collect_default_overrides(child, group_dir);
    stack.push_back(disp);
    expand(child, group_dir, pkg, stack);
    stack.pop_back();
  }

  static std::string header_package(const std::string& header, const std::string& group) {
    if (header == "_global_") return "";
    if (header == "_group_") return dotted(group);
    if (header.rfind("_global_.", 0) == 0) return header.substr(9);
    return header;
  }

  void expand_group(const DefaultsEntry& e, const std::string& group_dir, const std::string& parent_package,
                    std::vector<std::string>& stack, bool from_cli) {
    const std::string group = absolute_group(e.group, group_dir);
    const std::string key = entry_key(group, e.package);
    ConfigNode option = e.option;
    Source where = e.where;
    if (!from_cli) {
      matched_.insert(key);
      if (auto it = default_overrides_.find(key); it != default_overrides_.end()) {
        option = it->second.option;
        where = it->second.where;
        used_default_overrides_.insert(key);
      }
      for (const auto& g : group_overrides_) {
        if (key_of(g) != key) continue;
        if (g.op == Override::Op::Delete) {
          if (!g.has_value || (option.is_scalar() && g.value.is_scalar() && g.value.text() == option.text()))
            option = ConfigNode::null(), deleted_.insert(key);
          continue;
        }
        if (g.op == Override::Op::Set || g.op == Override::Op::ForceAdd) option = g.value, where = g.source();
      }
    }
    if (option.is_null()) return;
    const std::string name = option.text();
    const std::string rel = group + "/" + name + ".yaml";
    if (!fs::is_regular_file(fs::path(req_.config_dir) / rel)) {
      if (e.optional) return;
      const auto options = list_group_options(req_.config_dir, group);
      std::vector<std::string> hints;
      const std::string dym = did_you_mean(name, options);
      if (!dym.empty()) hints.push_back(dym);
      hints.push_back(options.empty() ? "the group has no options in " + display(group)
                                      : "options: " + join_names(options));
      if (!is_config_group(req_.config_dir, group)) {
        hints = {};
        const std::string dg = did_you_mean(group, all_groups());
        if (!dg.empty()) hints.push_back(dg);
        hints.push_back("config groups: " + join_names(all_groups()));
        sink_.add(Diagnostic{where, "defaults", "unknown config group '" + group + "'", hints});
        return;
      }
      sink_.add(Diagnostic{where, "", "unknown option '" + name + "' for config group '" + group + "'", hints});
      return;
    }
    std::string package;
    if (!e.package.empty()) {
      if (e.package == "_global_") package = "";
      else if (e.package.rfind("_global_.", 0) == 0) package = e.package.substr(9);
      else package = join_pkg(parent_package, e.package);
    } else {
      package = dotted(group);
    }
    choices_.emplace_back(key, name);
    // The child's own header decides its package unless the entry set one.
    const std::string disp = display(rel);
    if (std::find(stack.begin(), stack.end(), disp) != stack.end() || stack.size() > 32) {
      sink_.add(Diagnostic{where, "defaults", "defaults lists form a cycle: " + join_names(stack, " -> ") + " -> " + disp,
                           {"remove one of the entries that include each other"}});
      return;
    }
    ConfigFile child = load(rel);
    if (child.header && e.package.empty()) package = header_package(*child.header, group);
    collect_default_overrides(child, group);
    stack.push_back(disp);
    expand(child, group, package, stack);
    stack.pop_back();
  }

  void check_unmatched_overrides() {
    for (const auto& g : group_overrides_) {
      const std::string key = key_of(g);
      if (g.op == Override::Op::Add || g.op == Override::Op::ForceAdd) continue;
      if (matched_.count(key)) {
        if (g.op == Override::Op::Delete && g.has_value && !deleted_.count(key))
          sink_.add(Diagnostic{g.source(), "", "cannot delete config group '" + g.key + "': its option is not '" +
                                                   g.value.text() + "'",
                               {"write ~" + g.key + " to delete it whatever its option"}});
        continue;
      }
      if (g.op == Override::Op::Delete) {
        sink_.add(Diagnostic{g.source(), "", "cannot delete config group '" + g.key + "': it is not in the defaults list",
                             {}});
        continue;
      }
      sink_.add(Diagnostic{g.source(), "",
                           "cannot choose '" + g.key + "': the experiment's defaults list has no entry for this group",
                           {"to add the group, write +" + g.text}});
    }
    for (const auto& [key, e] : default_overrides_)
      if (!used_default_overrides_.count(key))
        sink_.add(Diagnostic{e.where, "defaults", "'override " + key + "' matches no entry of the defaults list",
                             {"add the group as a plain entry ('- " + key + ": ...') instead"}});
  }

  static void merge_into(ConfigNode& dst, ConfigNode src) {
    if (dst.is_map() && src.is_map()) {
      for (auto& [k, v] : src.entries()) {
        if (ConfigNode* existing = dst.find(k)) merge_into(*existing, std::move(v));
        else dst.set(k, std::move(v));
      }
      return;
    }
    dst = std::move(src);
  }

  static void merge_at(ConfigNode& root, const std::string& package, ConfigNode body) {
    ConfigNode* cur = &root;
    if (!package.empty()) {
      for (const auto& part : split_path(package)) {
        ConfigNode* next = cur->find(part);
        if (!next || !next->is_map()) next = &cur->set(part, ConfigNode::map(body.source()));
        cur = next;
      }
    }
    if (body.is_map() && body.entries().empty() && !package.empty()) return;
    merge_into(*cur, std::move(body));
  }

  // Navigates to the parent of `path`; creates maps on the way when `create`.
  ConfigNode* parent_of(ConfigNode& root, const std::vector<std::string>& parts, bool create, const Override& o) {
    ConfigNode* cur = &root;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      ConfigNode* next = cur->is_map() ? cur->find(parts[i]) : cur->find_path(parts[i]);
      if (!next) {
        if (!create || !cur->is_map()) return nullptr;
        next = &cur->set(parts[i], ConfigNode::map(o.source()));
      }
      if (!next->is_map() && !next->is_sequence()) {
        if (!create) return nullptr;
        *next = ConfigNode::map(o.source());
      }
      cur = next;
    }
    return cur;
  }

  void unknown_key(ConfigNode& root, const Override& o, const std::string& what) {
    const auto parts = split_path(o.key);
    std::vector<std::string> hints;
    const ConfigNode* parent = parts.size() > 1 ? root.find_path(join_path({parts.begin(), parts.end() - 1})) : &root;
    if (parent && parent->is_map()) {
      const std::string dym = did_you_mean(parts.back(), parent->keys());
      if (!dym.empty()) hints.push_back(dym);
      if (!parent->keys().empty())
        hints.push_back("valid keys" + std::string(parts.size() > 1 ? " under '" + join_path({parts.begin(), parts.end() - 1}) + "'" : "") +
                        ": " + join_names(parent->keys()));
    } else if (parts.size() > 1) {
      hints.push_back("'" + join_path({parts.begin(), parts.end() - 1}) + "' is not a mapping in this config");
    }
    hints.push_back(what);
    sink_.add(Diagnostic{o.source(), o.key, "no such key in the config", hints});
  }

  void apply_value_overrides(ConfigNode& root) {
    for (const auto& o : value_overrides_) {
      std::vector<std::string> parts;
      try {
        parts = split_path(o.key);
      } catch (const ConfigError&) {
        sink_.add(Diagnostic{o.source(), "", "malformed key '" + o.key + "'", {}});
        continue;
      }
      ConfigNode* existing = root.find_path(o.key);
      ConfigNode value = o.value;
      value.set_source_recursive(o.source());
      switch (o.op) {
        case Override::Op::Set:
          if (!existing) {
            unknown_key(root, o, "to add a new key, write +" + o.text);
            break;
          }
          if (existing->is_map() && value.is_map()) merge_into(*existing, std::move(value));
          else *existing = std::move(value);
          break;
        case Override::Op::Add:
          if (existing) {
            sink_.add(Diagnostic{o.source(), o.key,
                                 "cannot add: the key is already set (at " + existing->source().text() + ")",
                                 {"to change it, write " + o.text.substr(1), "to set it either way, write +" + o.text}});
            break;
          }
          [[fallthrough]];
        case Override::Op::ForceAdd: {
          ConfigNode* parent = parent_of(root, parts, true, o);
          if (!parent || !parent->is_map()) {
            sink_.add(Diagnostic{o.source(), o.key, "cannot add a key under a list or scalar", {}});
            break;
          }
          if (existing && existing->is_map() && value.is_map()) merge_into(*existing, std::move(value));
          else parent->set(parts.back(), std::move(value));
          break;
        }
        case Override::Op::Delete: {
          if (!existing) {
            unknown_key(root, o, "nothing to delete");
            break;
          }
          if (o.has_value && !existing->same_value(o.value)) {
            sink_.add(Diagnostic{o.source(), o.key,
                                 "cannot delete: its value is " + yaml_scalar_text(*existing) + ", not " +
                                     yaml_scalar_text(o.value),
                                 {"write ~" + o.key + " to delete it whatever its value"}});
            break;
          }
          ConfigNode* parent = parent_of(root, parts, false, o);
          if (parent && parent->is_map()) parent->erase(parts.back());
          else if (parent && parent->is_sequence()) {
            auto& items = parent->items();
            items.erase(items.begin() + static_cast<long>(std::stoul(parts.back())));
          }
          break;
        }
      }
    }
  }

  const ComposeRequest& req_;
  std::string display_dir_;
  DiagnosticSink sink_;
  std::vector<Override> group_overrides_;
  std::vector<Override> value_overrides_;
  std::map<std::string, DefaultsEntry> default_overrides_;
  std::set<std::string> used_default_overrides_;
  std::set<std::string> matched_;
  std::set<std::string> deleted_;
  std::vector<MergeItem> items_;
  std::vector<std::pair<std::string, std::string>> choices_;
};

}  // namespace

ComposeResult compose(const ComposeRequest& request) { return Composer(request).run(); }

std::vector<std::string> list_primary_configs(const std::string& config_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(config_dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".yaml") out.push_back(e.path().stem().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> list_group_options(const std::string& config_dir, const std::string& group) {
  return list_primary_configs((fs::path(config_dir) / group).string());
}

bool is_config_group(const std::string& config_dir, const std::string& group) {
  if (group.empty() || group.find("..") != std::string::npos) return false;
  std::error_code ec;
  return fs::is_directory(fs::path(config_dir) / group, ec);
}

}  // namespace blocklab
