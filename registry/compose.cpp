#include "registry/compose.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "registry/config_error.h"
#include "registry/interpolate.h"
#include "registry/registry.h"
#include "registry/schema.h"
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

std::string without_leading_slash(const std::string& path) {
  return !path.empty() && path[0] == '/' ? path.substr(1) : path;
}

// Python's == on two config values, which is how Hydra checks `~key=value`: numbers and
// bools compare by value (20 == 20.0, true == 1), strings by text, containers item by item.
bool python_equal(const ConfigNode& a, const ConfigNode& b) {
  const auto numeric = [](const ConfigNode& n) { return n.is_scalar() && (n.is_number() || n.is_bool()); };
  if (numeric(a) && numeric(b)) {
    if (a.is_int() && b.is_int()) return a.as_int() == b.as_int();
    const auto value = [](const ConfigNode& n) { return n.is_bool() ? (n.as_bool() ? 1.0 : 0.0) : n.as_double(); };
    return value(a) == value(b);  // NaN equals nothing, as in Python
  }
  if (a.kind() != b.kind()) return false;
  if (a.is_scalar()) return a.is_string() && b.is_string() && a.text() == b.text();
  if (a.is_sequence()) {
    if (a.items().size() != b.items().size()) return false;
    for (std::size_t i = 0; i < a.items().size(); ++i)
      if (!python_equal(a.items()[i], b.items()[i])) return false;
    return true;
  }
  if (a.is_map()) {
    if (a.entries().size() != b.entries().size()) return false;
    for (const auto& [k, v] : a.entries()) {
      const ConfigNode* other = b.find(k);
      if (!other || !python_equal(v, *other)) return false;
    }
  }
  return true;  // both null
}

// The keys a mapping may have: its own, then the parameters of the registry entry it builds
// ({type: key, ...}) that it leaves at their defaults (dataset.root, a null-default option).
std::vector<std::string> valid_keys(const ConfigNode& map) {
  std::vector<std::string> keys = map.keys();
  const std::string type = component_key(map);
  if (type.empty()) return keys;
  for (const RegistryBase* reg : RegistryIndex::instance().all()) {
    if (!reg->contains(type)) continue;
    for (const auto& name : reg->info(type).schema.names())
      if (std::find(keys.begin(), keys.end(), name) == keys.end()) keys.push_back(name);
    break;
  }
  return keys;
}

// Whether `name` is an option of the component that `map` configures (its `type`): such a key
// is part of the config's schema even when no YAML file sets it.
bool is_schema_option(const ConfigNode& map, const std::string& name) {
  const std::string type = component_key(map);
  if (type.empty() || map.find(name)) return false;
  const auto keys = valid_keys(map);
  return std::find(keys.begin(), keys.end(), name) != keys.end();
}

// Why a list given to a config group is not a list of option names ("" when it is): Hydra
// takes strings only (a number or null in the list is a TypeError there).
std::string option_list_problem(const ConfigNode& options) {
  for (std::size_t i = 0; i < options.items().size(); ++i) {
    const ConfigNode& item = options.items()[i];
    if (item.is_scalar() && item.is_string()) continue;
    const std::string kind = item.kind_name();
    return "item " + std::to_string(i) + (item.is_scalar() ? " ('" + item.text() + "')" : "") + " is " +
           (kind == "int" ? "an " : "a ") + kind + ", not an option name";
  }
  return "";
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
  std::string group;        // group, or config path for Include; as written (may start with '/')
  std::string package;      // after '@', empty when none
  bool optional = false;
  bool is_override = false;
  bool from_cli = false;    // appended with +group=option
  ConfigNode option;        // scalar (option name), list of names (several options), or null
  Source where;
};

// An option that replaces the one a defaults entry chooses: from the command line
// (group=option) or from an `override group: option` entry of a defaults list.
struct ChoiceOverride {
  ConfigNode option;
  Source where;
  bool from_cli = false;
  bool used = false;
};

// A `~group[=option]` from the command line.
struct GroupDeletion {
  Override override;
  bool used = false;
};

// A group entry already expanded, to catch a group chosen twice.
struct KnownChoice {
  ConfigNode option;
  Source where;
  bool from_cli = false;
};

// One config body to merge at an absolute package.
struct MergeItem {
  std::string package;
  ConfigNode body;
};

// What a config and everything below it contribute, in merge order.
struct Expansion {
  std::vector<MergeItem> items;
  std::vector<std::pair<std::string, std::string>> choices;  // override key -> option

  void append(Expansion&& other) {
    for (auto& i : other.items) items.push_back(std::move(i));
    for (auto& c : other.choices) choices.push_back(std::move(c));
  }
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
    std::vector<std::string> stack{top.display};
    const std::string top_package = top.header ? header_package(*top.header, "") : "";
    Expansion all = expand(top, "", top_package, /*primary=*/true, stack);

    // ++group=opt with no entry to change: added after everything else.
    for (const auto& g : group_overrides_) {
      if (g.op != Override::Op::ForceAdd || choice_overrides_.at(key_of(g)).used) continue;
      all.append(expand_group(cli_entry(g), "", top_package, stack));
    }
    check_unused_overrides();
    sink_.throw_if_any();

    ConfigNode root = ConfigNode::map(Source::in_file(top.display, 1));
    for (auto& item : all.items) merge_at(root, item.package, std::move(item.body));
    apply_value_overrides(root);
    sink_.throw_if_any();
    if (req_.resolve) resolve_interpolations(root);
    return ComposeResult{std::move(root), std::move(all.choices)};
  }

  // For override_composed_config: the overrides applied to `root`, a config composed before.
  ConfigNode override_composed(ConfigNode root, const std::string& group_hint) {
    for (const auto& o : req_.overrides) {
      refuse_sweep(o);
      const bool deletes_key = o.op == Override::Op::Delete && !o.has_value;  // ~group: its package goes
      if ((chooses_group_option(o) && !deletes_key) || !o.package.empty() || o.key.find('/') != std::string::npos)
        sink_.add(Diagnostic{o.source(),
                             "",
                             "'" + o.text +
                                 "' chooses a config group option, but a composed config has no defaults "
                                 "list left to choose from",
                             {group_hint}});
      else if (o.text.find("${") != std::string::npos)
        sink_.add(Diagnostic{
            o.source(), o.key, "interpolations are not resolved in a composed config", {"give the value itself"}});
      else
        value_overrides_.push_back(o);
    }
    sink_.throw_if_any();
    apply_value_overrides(root);
    sink_.throw_if_any();
    return root;
  }

 private:
  std::string display(const std::string& rel) const { return (fs::path(display_dir_) / rel).string(); }

  // The key a command-line group override names: "model/mixer", "data@train_data".
  static std::string key_of(const Override& o) { return o.package.empty() ? o.key : o.key + "@" + o.package; }

  // +group=opt (and ++group=opt with no entry to change) as an entry of the primary's defaults.
  static DefaultsEntry cli_entry(const Override& o) {
    DefaultsEntry e;
    e.group = "/" + o.key;
    e.package = o.package;
    e.option = o.value;
    e.where = o.source();
    e.from_cli = true;
    return e;
  }

  static void refuse_sweep(const Override& o) {
    if (o.is_sweep() || o.is_zip())
      throw ConfigError("'" + o.text + "' is a sweep: a single run takes one value per key", o.source(), "",
                        {"run every value with: blocklab sweep <experiment> " + o.text});
  }

  // A mapping given to a group's key merges into the group's values (as in Hydra):
  // trainer={epochs: 1} is a value override, trainer=fast chooses an option.
  bool chooses_group_option(const Override& o) const {
    const bool merges_mapping = o.has_value && o.value.is_map() && o.package.empty();
    return is_config_group(req_.config_dir, o.key) && !merges_mapping;
  }

  void classify_overrides() {
    for (const auto& o : req_.overrides) {
      refuse_sweep(o);
      if (chooses_group_option(o)) {
        // group=[a,b] selects several options (Hydra 1.1+); ~group takes one name at most.
        const bool several = o.has_value && o.value.is_sequence() && o.op != Override::Op::Delete;
        const std::string problem = several ? option_list_problem(o.value) : "";
        if ((o.has_value && !o.value.is_null() && !o.value.is_scalar() && !several) || !problem.empty()) {
          sink_.add(Diagnostic{
              o.source(),
              "",
              problem.empty()
                  ? "config group '" + o.key + "' takes an option name, not a " + std::string(o.value.kind_name())
                  : "the options given to config group '" + o.key + "' must be names: " + problem,
              {"options: " + join_names(list_group_options(req_.config_dir, o.key))}});
          continue;
        }
        group_overrides_.push_back(o);
        // The last command-line word for a group wins.
        if (o.op == Override::Op::Set || o.op == Override::Op::ForceAdd)
          choice_overrides_[key_of(o)] = ChoiceOverride{o.value, o.source(), /*from_cli=*/true, /*used=*/false};
        else if (o.op == Override::Op::Delete)
          deletions_[key_of(o)] = GroupDeletion{o, false};
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

  // A config file must lie inside the config directory: a name with '..', an absolute path or
  // a symlink pointing out would read (and name runs after) files elsewhere.
  fs::path contained(const std::string& rel, const std::string& shown) const {
    std::error_code ec;
    const fs::path dir = fs::weakly_canonical(req_.config_dir, ec);
    const fs::path file = fs::weakly_canonical(fs::path(req_.config_dir) / rel, ec);
    const auto inside = std::mismatch(dir.begin(), dir.end(), file.begin(), file.end()).first == dir.end();
    if (ec || !inside)
      throw ConfigError("config '" + shown + "' lies outside the config directory " + req_.config_dir, Source{}, "",
                        {"name configs by their path under the config directory, without '..' or links that "
                         "point out of it"});
    return file;
  }

  ConfigFile load(const std::string& rel) {
    ConfigFile f;
    f.display = display(rel);
    const std::string text = read_text_file(contained(rel, f.display).string(), f.display);
    // A "# @package x" directive among the leading comment lines: '@' right after the '#'
    // (prose that merely mentions @package is not a directive).
    std::size_t pos = 0;
    while (pos < text.size()) {
      const std::size_t end = std::min(text.find('\n', pos), text.size());
      std::string line = text.substr(pos, end - pos);
      pos = end + 1;
      const auto first = line.find_first_not_of(" \t\r");
      if (first == std::string::npos) continue;
      if (line[first] != '#') break;
      const auto at = line.find_first_not_of(" \t", first + 1);
      if (at == std::string::npos || line.compare(at, 9, "@package ") != 0) continue;
      std::string v = line.substr(at + 9);
      v.erase(0, v.find_first_not_of(" \t"));
      v.erase(v.find_last_not_of(" \t\r") + 1);
      f.header = v;
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
        const auto at = e.group.find('@');  // "name@package"
        if (e.kind == DefaultsEntry::Kind::Include && at != std::string::npos) {
          e.package = e.group.substr(at + 1);
          e.group = e.group.substr(0, at);
        }
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
      const std::string problem = value.is_sequence() ? option_list_problem(value) : "";
      if ((!value.is_null() && !value.is_scalar() && !value.is_sequence()) || !problem.empty()) {
        sink_.add(Diagnostic{value.source(),
                             "defaults",
                             "the option of group '" + key + "' must be a name, a list of names, or null",
                             {problem.empty() ? "got a " + std::string(value.kind_name()) : problem}});
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

  // Hydra's package of a defaults entry before any package header: the entry's '@package', else
  // its group path as written (no leading '/'), relative to the including config's package;
  // "_global_" anywhere in the result starts it again at the root.
  static std::string entry_package(const std::string& written_package, const std::string& relative_group,
                                   const std::string& parent_package) {
    const std::string own = written_package.empty() ? dotted(without_leading_slash(relative_group)) : written_package;
    std::string package = join_pkg(parent_package, own);
    const auto global = package.rfind("_global_");
    if (global != std::string::npos) package = package.substr(std::min(package.size(), global + 9));
    return package;
  }

  // How overrides name a group entry: its group path, plus "@package" (absolute) when the entry
  // is not at its group's own package. Entries of nested configs that other configs place
  // elsewhere get their own keys: "model/mixer@teacher.mixer".
  static std::string override_key(const std::string& group, const std::string& package) {
    if (package == dotted(group)) return group;
    return group + "@" + (package.empty() ? "_global_" : package);
  }

  // A "# @package" header is absolute: it ignores the including config's package. `_group_`
  // (Hydra 1.0's spelling, which blocklab keeps) is the config's own group.
  static std::string header_package(const std::string& header, const std::string& group) {
    if (header == "_global_") return "";
    if (header == "_group_") return dotted(group);
    if (header.rfind("_global_.", 0) == 0) return header.substr(9);
    return header;
  }

  // A config's defaults list, expanded to the bodies to merge. As Hydra does, the entries are
  // expanded last to first (merged first to last), so that an `override` in a later entry
  // (an experiment appended with +experiment=x) already applies to the groups chosen before it.
  Expansion expand(const ConfigFile& f, const std::string& group_dir, const std::string& package, bool primary,
                   std::vector<std::string>& stack) {
    auto entries = parse_defaults(f);
    const bool has_self = std::any_of(entries.begin(), entries.end(),
                                      [](const DefaultsEntry& e) { return e.kind == DefaultsEntry::Kind::Self; });
    if (!has_self) {
      DefaultsEntry self;
      self.kind = DefaultsEntry::Kind::Self;
      entries.push_back(self);
    }
    if (primary)
      for (const auto& g : group_overrides_)
        if (g.op == Override::Op::Add) entries.push_back(cli_entry(g));
    register_default_overrides(entries, group_dir, package);

    std::vector<Expansion> parts;
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
      const DefaultsEntry& e = *it;
      switch (e.kind) {
        case DefaultsEntry::Kind::Self: {
          Expansion self;
          self.items.push_back(MergeItem{package, f.body});
          parts.push_back(std::move(self));
          break;
        }
        case DefaultsEntry::Kind::Include:
          parts.push_back(expand_include(e, group_dir, package, stack));
          break;
        case DefaultsEntry::Kind::Group:
          if (!e.is_override) parts.push_back(expand_group(e, group_dir, package, stack));
          break;
      }
    }
    Expansion out;
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) out.append(std::move(*it));
    return out;
  }

  // `override group: opt` entries change choices before the config's entries are expanded.
  // The first registered wins: the command line, then outer configs, then later entries.
  void register_default_overrides(const std::vector<DefaultsEntry>& entries, const std::string& group_dir,
                                  const std::string& package) {
    for (const auto& e : entries) {
      if (e.kind != DefaultsEntry::Kind::Group || !e.is_override) continue;
      const std::string key =
          override_key(absolute_group(e.group, group_dir), entry_package(e.package, e.group, package));
      choice_overrides_.emplace(key, ChoiceOverride{e.option, e.where, /*from_cli=*/false, /*used=*/false});
    }
  }

  // Loads a config for a defaults entry, unless that would close a cycle.
  std::optional<ConfigFile> load_child(const std::string& rel, const Source& where,
                                       const std::vector<std::string>& stack) {
    const std::string disp = display(rel);
    if (std::find(stack.begin(), stack.end(), disp) != stack.end() || stack.size() > 32) {
      sink_.add(Diagnostic{where, "defaults", "defaults lists form a cycle: " + join_names(stack, " -> ") + " -> " + disp,
                           {"remove one of the entries that include each other"}});
      return std::nullopt;
    }
    return load(rel);
  }

  // A config named directly ("base", "server/apache"): relative to the includer's directory.
  Expansion expand_include(const DefaultsEntry& e, const std::string& group_dir, const std::string& parent_package,
                           std::vector<std::string>& stack) {
    const std::string path = absolute_group(e.group, group_dir);
    const std::string rel = path + ".yaml";
    if (!fs::is_regular_file(fs::path(req_.config_dir) / rel)) {
      sink_.add(Diagnostic{e.where, "defaults", "config '" + e.group + "' not found (no " + display(rel) + ")", {}});
      return {};
    }
    const auto child = load_child(rel, e.where, stack);
    if (!child) return {};
    std::string package = entry_package(e.package, parent_dir(without_leading_slash(e.group)), parent_package);
    if (child->header && e.package.empty()) package = header_package(*child->header, parent_dir(path));
    stack.push_back(child->display);
    Expansion out = expand(*child, parent_dir(path), package, false, stack);
    stack.pop_back();
    return out;
  }

  Expansion expand_group(const DefaultsEntry& e, const std::string& group_dir, const std::string& parent_package,
                         std::vector<std::string>& stack) {
    const std::string group = absolute_group(e.group, group_dir);
    const std::string package = entry_package(e.package, e.group, parent_package);
    const std::string key = override_key(group, package);
    ConfigNode option = e.option;
    Source where = e.where;
    if (auto it = choice_overrides_.find(key); it != choice_overrides_.end()) {
      option = it->second.option;
      where = it->second.where;
      it->second.used = true;
    }
    if (option.is_sequence()) return expand_options(e, group, package, key, option, stack);
    if (auto it = deletions_.find(key); it != deletions_.end()) {
      const Override& d = it->second.override;
      if (!d.has_value || (option.is_scalar() && d.value.is_scalar() && d.value.text() == option.text())) {
        it->second.used = true;
        return {};
      }
    }
    if (!note_choice(key, option, where, e.from_cli)) return {};
    if (option.is_null()) return {};
    return expand_option(e, group, package, option.text(), where, key, stack);
  }

  // Several options of one group (`group: [a, b]`, group=[a,b]): as in Hydra 1.1+, each is
  // included like a config named by its path, in the listed order, at the entry's package, so
  // later options win. The entry chooses no single option: like Hydra, `~group` does not delete
  // it and it does not count as the group's choice (another entry may choose the group).
  Expansion expand_options(const DefaultsEntry& e, const std::string& group, const std::string& package,
                           const std::string& key, const ConfigNode& options, std::vector<std::string>& stack) {
    multi_selected_.insert(key);
    std::vector<Expansion> parts;  // expanded last to first, as a defaults list: a later option's
                                   // `override` entries win
    std::vector<std::string> names;
    for (auto it = options.items().rbegin(); it != options.items().rend(); ++it)
      parts.push_back(expand_option(e, group, package, it->text(), it->source(), "", stack));
    for (const auto& item : options.items()) names.push_back(item.text());
    Expansion out;
    out.choices.emplace_back(key, "[" + join_names(names) + "]");
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) out.append(std::move(*it));
    return out;
  }

  // The option `name` of `group` placed at `package` (its own header decides when the entry sets
  // no package); recorded as the choice of `choice_key` unless that is empty.
  Expansion expand_option(const DefaultsEntry& e, const std::string& group, std::string package,
                          const std::string& name, const Source& where, const std::string& choice_key,
                          std::vector<std::string>& stack) {
    const std::string rel = group + "/" + name + ".yaml";
    if (!fs::is_regular_file(fs::path(req_.config_dir) / rel)) {
      if (!e.optional) report_missing_option(group, name, where);
      return {};
    }
    const auto child = load_child(rel, where, stack);
    if (!child) return {};
    if (child->header && e.package.empty()) package = header_package(*child->header, group);
    Expansion out;
    if (!choice_key.empty()) out.choices.emplace_back(choice_key, name);
    stack.push_back(child->display);
    out.append(expand(*child, group, package, false, stack));
    stack.pop_back();
    return out;
  }

  void report_missing_option(const std::string& group, const std::string& name, const Source& where) {
    if (!is_config_group(req_.config_dir, group)) {
      std::vector<std::string> hints;
      const std::string dg = did_you_mean(group, all_groups());
      if (!dg.empty()) hints.push_back(dg);
      hints.push_back("config groups: " + join_names(all_groups()));
      sink_.add(Diagnostic{where, "defaults", "unknown config group '" + group + "'", hints});
      return;
    }
    const auto options = list_group_options(req_.config_dir, group);
    std::vector<std::string> hints;
    const std::string dym = did_you_mean(name, options);
    if (!dym.empty()) hints.push_back(dym);
    hints.push_back(options.empty() ? "the group has no options in " + display(group)
                                    : "options: " + join_names(options));
    sink_.add(Diagnostic{where, "", "unknown option '" + name + "' for config group '" + group + "'", hints});
  }

  // Records the option chosen for a group entry; false (with a diagnostic) when another entry
  // already chose for the same key, which would leave overrides of that key ambiguous.
  bool note_choice(const std::string& key, const ConfigNode& option, const Source& where, bool from_cli) {
    const auto [it, inserted] = known_choices_.emplace(key, KnownChoice{option, where, from_cli});
    if (inserted) return true;
    const KnownChoice& first = it->second;
    if (first.option.is_null() && option.is_null()) return true;
    if (first.from_cli || from_cli) {
      const KnownChoice& cli = first.from_cli ? first : KnownChoice{option, where, from_cli};
      sink_.add(Diagnostic{cli.where, "", "cannot add config group '" + key + "': the defaults list already has it",
                           {"choose another option with " + key + "=" + cli.option.text()}});
      return false;
    }
    sink_.add(Diagnostic{where, "defaults",
                         "config group '" + key + "' is chosen twice (first at " + first.where.text() + ")",
                         {"to change the earlier choice, write '- override " + key + ": ...'"}});
    return false;
  }

  void check_unused_overrides() {
    for (const auto& g : group_overrides_) {
      const std::string key = key_of(g);
      if (g.op == Override::Op::Add || g.op == Override::Op::ForceAdd) continue;
      if (g.op == Override::Op::Delete) {
        if (deletions_.at(key).used) continue;
        if (multi_selected_.count(key) && !known_choices_.count(key)) {
          sink_.add(Diagnostic{
              g.source(),
              "",
              "cannot delete config group '" + key + "': its entry selects several options, and ~ deletes one choice",
              {"select none with " + key + "=[]"}});
          continue;
        }
        if (known_choices_.count(key) && g.has_value)
          sink_.add(Diagnostic{g.source(), "", "cannot delete config group '" + key + "': its option is not '" +
                                                   g.value.text() + "'",
                               {"write ~" + key + " to delete it whatever its option"}});
        else
          sink_.add(Diagnostic{g.source(), "", "cannot delete config group '" + key + "': it is not in the defaults list",
                               {}});
        continue;
      }
      if (choice_overrides_.at(key).used) continue;
      sink_.add(Diagnostic{g.source(), "",
                           "cannot choose '" + key + "': the experiment's defaults list has no entry for this group",
                           {"to add the group, write +" + g.text}});
    }
    for (const auto& [key, c] : choice_overrides_)
      if (!c.from_cli && !c.used)
        sink_.add(Diagnostic{c.where, "defaults", "'override " + key + "' matches no entry of the defaults list",
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

  // The first key path of `src` that merging it into `dst` would add ("" when none).
  static std::string first_new_key(const ConfigNode& dst, const ConfigNode& src) {
    for (const auto& [k, v] : src.entries()) {
      const ConfigNode* existing = dst.find(k);
      if (!existing) return k;
      if (existing->is_map() && v.is_map()) {
        const std::string deeper = first_new_key(*existing, v);
        if (!deeper.empty()) return k + "." + deeper;
      }
    }
    return "";
  }

  // A list and a mapping do not merge into each other (a scalar may become either); true, with a
  // diagnostic, when the override tries.
  bool containers_clash(const ConfigNode& existing, const ConfigNode& value, const Override& o) {
    if (!(existing.is_map() && value.is_sequence()) && !(existing.is_sequence() && value.is_map())) return false;
    sink_.add(Diagnostic{o.source(), o.key,
                         std::string("cannot merge a ") + value.kind_name() + " into a " + existing.kind_name() +
                             " (at " + existing.source().text() + ")",
                         {"to replace it, delete it first: ~" + o.key + " +" + o.key + "=..."}});
    return true;
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
      const std::vector<std::string> keys = valid_keys(*parent);
      const std::string dym = did_you_mean(parts.back(), keys);
      if (!dym.empty()) hints.push_back(dym);
      if (!keys.empty())
        hints.push_back("valid keys" + std::string(parts.size() > 1 ? " under '" + join_path({parts.begin(), parts.end() - 1}) + "'" : "") +
                        ": " + join_names(keys));
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
          if (!existing && parts.size() > 1) {  // an option of a component that the YAML leaves at its default
            ConfigNode* parent = root.find_path(join_path({parts.begin(), parts.end() - 1}));
            if (parent && parent->is_map() && is_schema_option(*parent, parts.back())) {
              parent->set(parts.back(), std::move(value));
              break;
            }
          }
          if (!existing) {
            unknown_key(root, o, "to add a new key, write +" + o.text);
            break;
          }
          if (containers_clash(*existing, value, o)) break;
          if (existing->is_map() && value.is_map()) {
            // A mapping merges into the existing one but, like a dotted key, adds no new keys.
            const std::string added = first_new_key(*existing, value);
            if (!added.empty()) {
              sink_.add(Diagnostic{o.source(), join_path({o.key, added}), "no such key in the config",
                                   {"to add keys as well, write ++" + o.text}});
              break;
            }
            merge_into(*existing, std::move(value));
          } else {
            *existing = std::move(value);
          }
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
          if (existing && containers_clash(*existing, value, o)) break;
          if (existing && existing->is_map() && value.is_map()) merge_into(*existing, std::move(value));
          else parent->set(parts.back(), std::move(value));
          break;
        }
        case Override::Op::Delete: {
          if (!existing) {
            unknown_key(root, o, "nothing to delete");
            break;
          }
          if (o.has_value && !python_equal(*existing, o.value)) {
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
  std::map<std::string, ChoiceOverride> choice_overrides_;  // by override key
  std::map<std::string, GroupDeletion> deletions_;          // by override key
  std::map<std::string, KnownChoice> known_choices_;        // by override key
  std::set<std::string> multi_selected_;                    // override keys of group: [a, b] entries
};

}  // namespace

ComposeResult compose(const ComposeRequest& request) { return Composer(request).run(); }

ConfigNode override_composed_config(ConfigNode config, const std::vector<Override>& overrides,
                                    const std::string& config_dir, const std::string& group_hint) {
  ComposeRequest request;
  request.config_dir = config_dir;
  request.overrides = overrides;
  return Composer(request).override_composed(std::move(config), group_hint);
}

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
