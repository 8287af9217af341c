#include "registry/yaml_io.h"

#include <yaml-cpp/depthguard.h>  // YAML::DeepRecursion
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <unordered_map>

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

// The 1-based line of the '[' or '{' that is still open at byte `end` of `text` (outside
// quotes and comments), or 0 when none is.
int unclosed_flow_line(const std::string& text, std::size_t end, char open) {
  std::vector<std::pair<char, int>> stack;  // open bracket, line
  int line = 1;
  char quote = 0;
  bool comment = false;
  for (std::size_t i = 0; i < std::min(end, text.size()); ++i) {
    const char c = text[i];
    if (c == '\n') ++line, comment = false;
    if (comment) continue;
    if (quote) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') quote = c;
    else if (c == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t' || text[i - 1] == '\n')) comment = true;
    else if (c == '[' || c == '{') stack.emplace_back(c, line);
    else if ((c == ']' || c == '}') && !stack.empty()) stack.pop_back();
  }
  for (auto it = stack.rbegin(); it != stack.rend(); ++it)
    if (it->first == open) return it->second;
  return 0;
}

// The line an error is about. yaml-cpp notices an unclosed '[' or '{' only where the next
// token cannot continue it, often the line below (or the end of the file): the error is
// where the bracket opened.
int error_line(const std::string& text, const YAML::Exception& e) {
  const int noticed = e.mark.line + 1;
  const bool seq = e.msg.find("end of sequence flow not found") != std::string::npos;
  const bool map = e.msg.find("end of map flow not found") != std::string::npos;
  if ((!seq && !map) || e.mark.pos < 0) return noticed;
  const int opened = unclosed_flow_line(text, static_cast<std::size_t>(e.mark.pos), seq ? '[' : '{');
  return opened > 0 ? opened : noticed;
}

// yaml-cpp's marks are 0-based; ours are 1-based.
Source source_of(const YAML::Mark& m, const std::string& name) {
  return Source::in_file(name, m.line + 1, m.column + 1);
}

// How many values one YAML file may expand to. yaml-cpp shares an anchored node among its
// aliases, so a small file of nested aliases (a "billion laughs" document) describes a tree of
// billions of values; expanding it into ConfigNodes must stop long before memory runs out.
constexpr std::size_t kMaxYamlValues = 1000000;

// Converts yaml-cpp's node graph into a ConfigNode tree. The graph is not necessarily a tree:
// aliases repeat nodes (bounded by kMaxYamlValues) and an alias inside its own anchor
// (`a: &x [*x]`) makes a cycle, which would recurse forever; nesting is bounded by
// kMaxConfigDepth so that no walk over the tree can exhaust the stack.
class Converter {
 public:
  explicit Converter(const std::string& name) : name_(name) {}

  ConfigNode convert(const YAML::Node& y) {
    const Source src = source_of(y.Mark(), name_);
    if (++values_ > kMaxYamlValues)
      throw ConfigError("the YAML expands to more than " + std::to_string(kMaxYamlValues) +
                            " values (each use of an alias *name repeats its anchored value)",
                        src, "", {"reduce the aliases that repeat other aliases, or split the file"});
    switch (y.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return ConfigNode::null(src);
      case YAML::NodeType::Scalar:
        return ConfigNode::scalar(y.Scalar(), y.Tag() == "!", src);
      case YAML::NodeType::Sequence:
      case YAML::NodeType::Map:
        break;
    }
    enter(y, src);
    ConfigNode out = y.IsSequence() ? convert_sequence(y, src) : convert_map(y, src);
    ancestors_.pop_back();
    return out;
  }

 private:
  // Pushes a container on the path from the root, refusing cycles and excessive depth.
  void enter(const YAML::Node& y, const Source& src) {
    for (const auto& a : ancestors_)
      if (a.is(y))
        throw ConfigError("an alias (*name) refers to a value that contains it, so the value would be infinite", src,
                          "", {"an alias may only repeat an anchor (&name) that it is not part of"});
    if (static_cast<int>(ancestors_.size()) >= kMaxConfigDepth)
      throw ConfigError("the YAML nests deeper than " + std::to_string(kMaxConfigDepth) + " levels", src, "",
                        {"flatten the structure"});
    ancestors_.push_back(y);
  }

  ConfigNode convert_sequence(const YAML::Node& y, const Source& src) {
    ConfigNode seq = ConfigNode::sequence(src);
    for (const auto& item : y) seq.push_back(convert(item));
    return seq;
  }

  ConfigNode convert_map(const YAML::Node& y, const Source& src) {
    ConfigNode map = ConfigNode::map(src);
    std::unordered_map<std::string, int> lines;  // key -> line: duplicates found in O(1), not by a scan
    for (const auto& kv : y) {
      const Source key_src = source_of(kv.first.Mark(), name_);
      if (!kv.first.IsScalar())
        throw ConfigError("mapping keys must be plain strings, not a " +
                              std::string(kv.first.IsMap() ? "mapping" : kv.first.IsSequence() ? "list" : "null"),
                          key_src);
      const std::string key = kv.first.Scalar();
      const auto [prev, fresh] = lines.emplace(key, key_src.line);
      if (!fresh)
        throw ConfigError("duplicate key '" + key + "' (first defined at line " + std::to_string(prev->second) + ")",
                          key_src, "", {"remove one of the two definitions"});
      ConfigNode value = convert(kv.second);
      // A value's provenance is the line of its key ("lr: 1e-3" -> line of lr).
      if (value.is_null() || value.is_scalar()) value.set_source(key_src);
      map.entries().emplace_back(key, std::move(value));
    }
    return map;
  }

  const std::string& name_;
  std::size_t values_ = 0;
  std::vector<YAML::Node> ancestors_;  // containers from the root to the current one
};

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
  } catch (const YAML::DeepRecursion&) {
    // yaml-cpp stops at 500 levels, with a wrong message ("bad file") and no position.
    throw ConfigError("the YAML nests deeper than " + std::to_string(kMaxConfigDepth) + " levels",
                      Source::in_file(name, 0), "", {"flatten the structure"});
  } catch (const YAML::Exception& e) {
    throw ConfigError(explain_parser_message(e.msg), Source::in_file(name, error_line(text, e), e.mark.column + 1));
  }
  try {
    return Converter(name).convert(root);
  } catch (const YAML::Exception& e) {
    throw ConfigError(explain_parser_message(e.msg), Source::in_file(name, error_line(text, e), e.mark.column + 1));
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
