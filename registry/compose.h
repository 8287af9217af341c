// Config composition in the spirit of Hydra: defaults lists, config groups, packages,
// `_self_`, group and value overrides, then interpolation.
//
// A config directory holds primary configs (<dir>/<name>.yaml: the named experiments) and
// config groups (<dir>/<group>/<option>.yaml, nested groups as sub-directories). A config's
// `defaults:` list names what it is built from:
//   - group: option          place <group>/<option>.yaml at the package <group> (dots for
//                            '/'), relative to the package of the including config
//   - group@pkg: option      ... at <including package>.pkg (or _global_ / _global_.x)
//   - optional group: opt    skip silently when the option file does not exist
//   - override group: opt    change the option an earlier entry chose
//   - group: null            choose nothing
//   - group: [a, b]          several options (Hydra 1.1+): each merged at the group's package
//                            in the listed order, so later ones win; group=[a,b] and
//                            +group=[a,b] on the command line
//   - name, name@pkg         include <name>.yaml from the same directory (or sub/path)
//   - _self_                 this config's own body (implicitly last when absent)
// A file may start with "# @package <pkg>" (_global_, _group_, or an absolute dotted path);
// the primary config's header is honoured too. Groups in nested configs are relative to
// the config's own group; a leading '/' makes them absolute. Command-line group overrides
// name an entry as Hydra does: `group=opt`, or `group@abs.pkg=opt` for an entry placed away
// from its default package. tests/hydra_diff checks all this against Hydra 1.3 itself.
#pragma once

#include <string>
#include <vector>

#include "registry/config_node.h"
#include "registry/override.h"

namespace blocklab {

struct ComposeRequest {
  std::string config_dir;    // filesystem path of the config root
  std::string display_dir;   // how files are named in messages (default: config_dir)
  std::string config_name;   // primary config (experiment) name, without .yaml
  std::vector<Override> overrides;
  bool resolve = true;       // resolve ${...} interpolations
};

struct ComposeResult {
  ConfigNode config;
  // Group choices that made the config, "model" -> "vit", in composition order.
  std::vector<std::pair<std::string, std::string>> choices;
};

// Throws ConfigError (with every problem it can find in one report where possible).
ComposeResult compose(const ComposeRequest& request);

// Applies value overrides (key=value, +key=value, ++key=value, ~key) to a config composed
// before, such as a past run's config.yaml, with compose's rules and messages. Such a config has
// no defaults list and its interpolations are resolved: an override that chooses an option of
// one of `config_dir`'s groups is refused with `group_hint`, and so is a value with ${...}.
ConfigNode override_composed_config(ConfigNode config, const std::vector<Override>& overrides,
                                    const std::string& config_dir, const std::string& group_hint);

// Named experiments: the primary configs (*.yaml directly in the config directory).
std::vector<std::string> list_primary_configs(const std::string& config_dir);
// Options of a config group ("model", "model/mixer").
std::vector<std::string> list_group_options(const std::string& config_dir, const std::string& group);
bool is_config_group(const std::string& config_dir, const std::string& group);

}  // namespace blocklab
