// ${...} interpolation over a composed config (OmegaConf semantics).
//
//   ${a.b}      absolute path          ${.b}  sibling      ${..b}  parent's sibling
//   ${a.list[1]}, ${a[b].c}            bracket form of list indices and keys
//   "lr_${a}"   string interpolation   \${x}  a literal ${x}
//   ${oc.env:NAME[,default]}           environment variable
// A value that is exactly one interpolation takes the target's type (int stays int);
// inside a string, values are formatted as Python's str() does (OmegaConf, Hydra).
// A missing target or a cycle throws ConfigError naming the value's file:line.
#pragma once

#include "registry/config_node.h"

namespace blocklab {

void resolve_interpolations(ConfigNode& root);
bool has_interpolation(const std::string& text);

}  // namespace blocklab
