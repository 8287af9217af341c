// `--set KEY=VALUE` for the commands that build registered blocks from the command line
// (`blocklab block`, `blocklab bench mixers`): one option value, typed as a Hydra override
// (3, 1e-6, true, text); a dotted key sets a nested option.
#pragma once

#include <string>

#include "registry/config_node.h"

namespace blocklab {

// The key of `text` (KEY=VALUE), checked as `apply_option_set` checks it.
std::string option_set_key(const std::string& text, const std::string& command, const std::string& type_hint);

// Sets the value of `text` in `params`. Errors are usage errors of `blocklab <command>`; a
// `type` key is refused with `type_hint` (how that command names its blocks).
void apply_option_set(ConfigNode& params, const std::string& text, const std::string& command,
                      const std::string& type_hint);

}  // namespace blocklab
