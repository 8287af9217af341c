#include "analysis/block_options.h"

#include "registry/cli_options.h"
#include "registry/config_error.h"
#include "registry/override.h"

namespace blocklab {

namespace {

// Sets `value` at the dotted `key` of `params`, creating the mappings on the way.
void set_dotted(ConfigNode& params, const std::string& key, ConfigNode value) {
  ConfigNode* at = &params;
  std::size_t from = 0;
  for (std::size_t dot = key.find('.'); dot != std::string::npos; from = dot + 1, dot = key.find('.', from)) {
    const std::string part = key.substr(from, dot - from);
    if (!at->has(part) || !at->find(part)->is_map()) at->set(part, ConfigNode::map(value.source()));
    at = at->find(part);
  }
  at->set(key.substr(from), std::move(value));
}

Override checked_override(const std::string& text, const std::string& command, const std::string& type_hint) {
  const auto usage = [&](const std::string& message) {
    throw UsageError("blocklab " + command + ": --set '" + printable(text) + "': " + message + "\n  see: blocklab " +
                     command + " --help");
  };
  const Override o = parse_override(text);
  if (o.op != Override::Op::Set || o.is_sweep() || o.is_zip() || !o.package.empty() || !o.has_value)
    usage("give one value as key=value (no +, ~, @ or sweeps)");
  if (o.key == "type" || o.key.rfind("type.", 0) == 0) usage(type_hint);
  return o;
}

}  // namespace

std::string option_set_key(const std::string& text, const std::string& command, const std::string& type_hint) {
  return checked_override(text, command, type_hint).key;
}

void apply_option_set(ConfigNode& params, const std::string& text, const std::string& command,
                      const std::string& type_hint) {
  const Override o = checked_override(text, command, type_hint);
  set_dotted(params, o.key, o.value);
}

}  // namespace blocklab
