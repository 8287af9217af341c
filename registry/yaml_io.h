// Reading YAML into ConfigNode (with file:line provenance) and writing it back as YAML or
// JSON. yaml-cpp stays behind this interface: its exceptions become ConfigErrors.
#pragma once

#include <string>

#include "registry/config_node.h"

namespace blocklab {

// Parses one YAML document; `name` is the file name used in sources and messages.
// Duplicate keys and parse errors throw ConfigError with the line.
ConfigNode parse_yaml(const std::string& text, const std::string& name);
// Reads and parses a file; a missing or unreadable file throws ConfigError.
ConfigNode load_yaml_file(const std::string& path, const std::string& display_name);
// Reads a whole file; throws ConfigError naming it when it cannot be read.
std::string read_text_file(const std::string& path, const std::string& display_name);

struct DumpOptions {
  bool provenance = false;  // append "# file:line" to each value
  int indent = 2;
};
std::string dump_yaml(const ConfigNode& node, const DumpOptions& options = {});
// JSON with typed scalars (ints, floats, bools, null); non-finite floats become strings.
std::string dump_json(const ConfigNode& node);

// A JSON string literal with escapes.
std::string json_quote(const std::string& s);

// Quotes a string for YAML when its plain form would read back as something else.
std::string yaml_scalar_text(const ConfigNode& scalar);

}  // namespace blocklab
