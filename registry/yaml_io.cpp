#include "registry/yaml_io.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "registry/config_error.h"

namespace blocklab {

namespace {

// yaml-cpp's messages, said in our words.
std::string explain_parser_message(const std::string& msg) {
  struct Known {
    const char* raw;
    const char* ours;
  };
  static const Known table[] = {
      {"end of map not found", "a mapping is not closed: check the indentation and any '{' without '}'"},
      {"end of map flow not found", "a '{' has no matching '}'"},
      {"end of sequence not found", "a list is not closed: check the indentation"},
      {"end of sequence flow not found", "a '[' has no matching ']'"},
      {"illegal map value", "a ':' where no mapping value can start (quote the value if it holds ': ')"},
      {"unknown escape character", "an unknown escape sequence in a double-quoted string"},
      {"unexpected end of sequence", "a list ends unexpectedly"},
      {"unexpected end of map", "a mapping ends unexpectedly"},
      {"end of quoted scalar not found", "a quoted string is not closed"},
      {"block sequence entries are not allowed in this context",
       "a '- ' list item where it is not allowed: check the indentation"},
      {"illegal tab when looking for indentation", "a tab in the indentation: YAML indents with spaces"},
      {"invalid character in anchor", "an invalid character in an anchor (&name)"},
      {"the referenced anchor is not defined", "an alias (*name) refers to an undefined anchor"},
  };
  for (const auto& k : table)
    if (msg.find(k.raw) != std::string::npos) return k.ours;
  return "malformed YAML (" + msg + ")";
}

ConfigNode convert(const YAML::Node& y, const std::string& name) {
  const Source src = Source::in_file(name, y.Mark().line + 1, y.Mark().column + 1);
  switch (y.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return ConfigNode::null(src);
    case YAML::NodeType::Scalar:
      return ConfigNode::scalar(y.Scalar(), y.Tag() == "!", src);
    case YAML::NodeType::Sequence: {
      ConfigNode seq = ConfigNode::sequence(src);
      for (const auto& item : y) seq.push_back(convert(item, name));
      return seq;
    }
    case YAML::NodeType::Map: {
      ConfigNode map = ConfigNode::map(src);
      for (const auto& kv : y) {
        const Source key_src = Source::in_file(name, kv.first.Mark().line + 1, kv.first.Mark().column + 1);
        if (!kv.first.IsScalar())
          throw ConfigError("mapping keys must be plain strings, not a " +
                                std::string(kv.first.IsMap() ? "mapping" : "list"),
                            key_src);
        const std::string key = kv.first.Scalar();
        if (const ConfigNode* prev = map.find(key))
          throw ConfigError("duplicate key '" + key + "' (first defined at line " +
                                std::to_string(prev->source().line) + ")",
                            key_src, "", {"remove one of the two definitions"});
        ConfigNode value = convert(kv.second, name);
        // A value's provenance is the line of its key ("lr: 1e-3" -> line of lr).
        if (value.is_null() || value.is_scalar()) value.set_source(key_src);
        map.set(key, std::move(value));
      }
      return map;
    }
  }
  return ConfigNode::null(src);
}

bool needs_quotes(const std::string& s) {
  if (s.empty()) return true;
  if (resolve_plain_scalar(s) != ScalarType::String) return true;
  if (s == "???") return false;
  const std::string specials = ":#{}[],&*!|>'\"%@`";
  if (specials.find(s.front()) != std::string::npos || s.front() == '-' || s.front() == '?') return true;
  if (s.find(": ") != std::string::npos || s.find(" #") != std::string::npos) return true;
  if (s.back() == ':' || s.front() == ' ' || s.back() == ' ') return true;
  for (char c : s)
    if (c == '\n' || c == '\t' || static_cast<unsigned char>(c) < 0x20) return true;
  return false;
}

std::string double_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string key_text(const std::string& k) {
  return (needs_quotes(k) || k.find(' ') != std::string::npos) ? double_quote(k) : k;
}

bool is_flow_list(const ConfigNode& n) {
  if (!n.is_sequence() || n.items().size() > 16) return false;
  for (const auto& i : n.items())
    if (!(i.is_scalar() || i.is_null())) return false;
  return true;
}

std::string flow_list(const ConfigNode& n) {
  std::string out = "[";
  for (std::size_t i = 0; i < n.items().size(); ++i)
    out += (i ? ", " : "") + yaml_scalar_text(n.items()[i]);
  return out + "]";
}

void emit(const ConfigNode& n, int depth, const DumpOptions& opt, std::ostringstream& out);

std::string comment(const ConfigNode& n, const DumpOptions& opt) {
  return opt.provenance && n.source().known() ? "  # " + n.source().text() : "";
}

// Writes the value that follows "key:" or "- " (inline scalar or nested block).
void emit_value_after_key(const ConfigNode& v, int depth, const DumpOptions& opt, std::ostringstream& out) {
  if (v.is_map() && !v.entries().empty()) {
    out << comment(v, opt) << "\n";
    emit(v, depth + 1, opt, out);
  } else if (v.is_sequence() && !v.items().empty() && !is_flow_list(v)) {
    out << comment(v, opt) << "\n";
    emit(v, depth + 1, opt, out);
  } else if (v.is_map()) {
    out << " {}" << comment(v, opt) << "\n";
  } else if (v.is_sequence()) {
    out << " " << flow_list(v) << comment(v, opt) << "\n";
  } else {
    out << " " << yaml_scalar_text(v) << comment(v, opt) << "\n";
  }
}

void emit(const ConfigNode& n, int depth, const DumpOptions& opt, std::ostringstream& out) {
  const std::string pad(static_cast<std::size_t>(depth * opt.indent), ' ');
  if (n.is_map()) {
    for (const auto& [k, v] : n.entries()) {
      out << pad << key_text(k) << ":";
      emit_value_after_key(v, depth, opt, out);
    }
  } else if (n.is_sequence()) {
    for (const auto& item : n.items()) {
      if (item.is_map() && !item.entries().empty()) {
        // "- key: value" with the rest of the mapping aligned under it.
        std::ostringstream inner;
        emit(item, depth + 1, opt, inner);
        std::string s = inner.str();
        out << pad << "-" << s.substr(pad.size() + 1);
      } else {
        out << pad << "-";
        emit_value_after_key(item, depth, opt, out);
      }
    }
  } else {
    out << pad << yaml_scalar_text(n) << comment(n, opt) << "\n";
  }
}

void emit_json(const ConfigNode& n, std::ostringstream& out) {
  switch (n.kind()) {
    case ConfigNode::Kind::Null: out << "null"; return;
    case ConfigNode::Kind::Scalar:
      switch (n.scalar_type()) {
        case ScalarType::Int: out << n.as_int(); return;
        case ScalarType::Float: {
          const double d = n.as_double();
          if (std::isfinite(d)) out << format_double(d);
          else out << json_quote(std::isnan(d) ? "nan" : (d > 0 ? "inf" : "-inf"));
          return;
        }
        case ScalarType::Bool: out << (n.as_bool() ? "true" : "false"); return;
        default: out << json_quote(n.text()); return;
      }
    case ConfigNode::Kind::Sequence: {
      out << "[";
      for (std::size_t i = 0; i < n.items().size(); ++i) {
        if (i) out << ", ";
        emit_json(n.items()[i], out);
      }
      out << "]";
      return;
    }
    case ConfigNode::Kind::Map: {
      out << "{";
      bool first = true;
      for (const auto& [k, v] : n.entries()) {
        if (!first) out << ", ";
        first = false;
        out << json_quote(k) << ": ";
        emit_json(v, out);
      }
      out << "}";
      return;
    }
  }
}

}  // namespace

std::string json_quote(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"') r += "\\\"";
    else if (c == '\\') r += "\\\\";
    else if (c == '\n') r += "\\n";
    else if (c == '\t') r += "\\t";
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      r += buf;
    } else r += c;
  }
  return r + "\"";
}

std::string yaml_scalar_text(const ConfigNode& n) {
  if (n.is_null()) return "null";
  if (n.is_sequence()) return flow_list(n);
  if (n.is_map()) return n.entries().empty() ? "{}" : "{...}";
  if (!n.quoted()) return n.text();
  return needs_quotes(n.text()) ? double_quote(n.text()) : n.text();
}

ConfigNode parse_yaml(const std::string& text, const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(explain_parser_message(e.msg), Source::in_file(name, e.mark.line + 1, e.mark.column + 1));
  }
  try {
    return convert(root, name);
  } catch (const YAML::Exception& e) {
    throw ConfigError(explain_parser_message(e.msg), Source::in_file(name, e.mark.line + 1, e.mark.column + 1));
  }
}

std::string read_text_file(const std::string& path, const std::string& display_name) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("cannot read file '" + display_name + "' (missing or not readable)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ConfigNode load_yaml_file(const std::string& path, const std::string& display_name) {
  return parse_yaml(read_text_file(path, display_name), display_name);
}

std::string dump_yaml(const ConfigNode& node, const DumpOptions& options) {
  std::ostringstream out;
  if (node.is_map() && node.entries().empty()) return "{}\n";
  emit(node, 0, options, out);
  return out.str();
}

std::string dump_json(const ConfigNode& node) {
  std::ostringstream out;
  emit_json(node, out);
  out << "\n";
  return out.str();
}

}  // namespace blocklab
