// ConfigNode: the configuration tree blocklab composes, validates and binds.
//
// A value-semantic YAML tree (null, scalar, sequence, map with insertion order) in which
// every node remembers where it came from: a file and line, or the command-line override
// that set it. Scalars keep their text and whether they were quoted, and are typed by the
// YAML 1.2 core schema (quoted scalars are always strings). No LibTorch here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace blocklab {

// Where a value came from.
struct Source {
  std::string file;      // path of the YAML file, empty for command-line values
  int line = 0;          // 1-based; 0 when unknown
  int column = 0;        // 1-based; 0 when unknown
  // The command-line override text, when from_cli. Shared: every node of a long list value
  // points at the one text, so parsing and copying stay linear in the override's length.
  std::shared_ptr<const std::string> override;
  bool from_cli = false;

  static Source in_file(std::string file, int line, int column = 0);
  static Source command_line(std::string override_text);
  // "conf/trainer/default.yaml:3" or "command line 'trainer.lr=3e-4'" or "<unknown>".
  std::string text() const;
  bool known() const { return from_cli || !file.empty(); }
};

enum class ScalarType { Null, Bool, Int, Float, String };
const char* scalar_type_name(ScalarType t);

class ConfigNode {
 public:
  enum class Kind { Null, Scalar, Sequence, Map };
  using MapEntry = std::pair<std::string, ConfigNode>;

  ConfigNode() = default;  // null
  static ConfigNode null(Source src = {});
  // A scalar with its text as written; quoted scalars are strings whatever they contain.
  static ConfigNode scalar(std::string text, bool quoted = false, Source src = {});
  static ConfigNode string(std::string value, Source src = {}) { return scalar(std::move(value), true, std::move(src)); }
  static ConfigNode integer(std::int64_t v, Source src = {});
  static ConfigNode floating(double v, Source src = {});
  static ConfigNode boolean(bool v, Source src = {});
  static ConfigNode sequence(Source src = {});
  static ConfigNode map(Source src = {});

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_scalar() const { return kind_ == Kind::Scalar; }
  bool is_sequence() const { return kind_ == Kind::Sequence; }
  bool is_map() const { return kind_ == Kind::Map; }
  const char* kind_name() const;  // "null", "int", "float", "bool", "string", "list", "mapping"

  // Scalars.
  const std::string& text() const { return text_; }
  bool quoted() const { return quoted_; }
  ScalarType scalar_type() const;  // Null for null nodes
  bool is_int() const { return scalar_type() == ScalarType::Int; }
  bool is_float() const { return scalar_type() == ScalarType::Float; }
  bool is_number() const { return is_int() || is_float(); }
  bool is_bool() const { return scalar_type() == ScalarType::Bool; }
  bool is_string() const { return scalar_type() == ScalarType::String; }
  // Typed reads; throw ConfigError naming the source and the expected type.
  std::int64_t as_int() const;
  double as_double() const;  // ints convert
  bool as_bool() const;
  const std::string& as_string() const;  // any scalar's text
  bool is_missing() const { return is_scalar() && !quoted_ && text_ == "???"; }  // mandatory

  // Sequences.
  const std::vector<ConfigNode>& items() const { return items_; }
  std::vector<ConfigNode>& items() { return items_; }
  void push_back(ConfigNode n);

  // Maps (insertion ordered).
  const std::vector<MapEntry>& entries() const { return entries_; }
  std::vector<MapEntry>& entries() { return entries_; }
  bool has(const std::string& key) const { return find(key) != nullptr; }
  const ConfigNode* find(const std::string& key) const;
  ConfigNode* find(const std::string& key);
  const ConfigNode& at(const std::string& key) const;  // throws ConfigError if absent
  ConfigNode& set(const std::string& key, ConfigNode value);  // insert or replace in place
  bool erase(const std::string& key);
  std::vector<std::string> keys() const;

  // Dotted paths ("trainer.lr", "model.layers.0"): list indices are numbers.
  const ConfigNode* find_path(const std::string& dotted) const;
  ConfigNode* find_path(const std::string& dotted);

  const Source& source() const { return source_; }
  void set_source(Source s) { source_ = std::move(s); }
  // Give this node and every node under it the same source (command-line values).
  void set_source_recursive(const Source& s);

  // Deep structural equality of values (types and contents; sources ignored).
  bool same_value(const ConfigNode& other) const;

 private:
  Kind kind_ = Kind::Null;
  std::string text_;
  bool quoted_ = false;
  std::vector<ConfigNode> items_;
  std::vector<MapEntry> entries_;
  Source source_;
};

// YAML 1.2 core-schema type of a plain (unquoted) scalar.
ScalarType resolve_plain_scalar(const std::string& text);
// Shortest text that reads back as the same double ("0.0003", "1e-05", ".inf").
std::string format_double(double v);

// How deep a config tree may nest (YAML files, override values, interpolation chains): deep
// enough for any real config, shallow enough that the recursive walks cannot exhaust the stack.
constexpr int kMaxConfigDepth = 256;

// Splits "a.b.0.c" into {"a","b","0","c"}; throws ConfigError on empty segments.
std::vector<std::string> split_path(const std::string& dotted);
std::string join_path(const std::vector<std::string>& parts);

}  // namespace blocklab
