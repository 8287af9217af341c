#include "registry/config_node.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "registry/config_error.h"

namespace blocklab {

Source Source::in_file(std::string file, int line, int column) {
  Source s;
  s.file = std::move(file);
  s.line = line;
  s.column = column;
  return s;
}

Source Source::command_line(std::string override_text) {
  Source s;
  s.override = std::make_shared<const std::string>(std::move(override_text));
  s.from_cli = true;
  return s;
}

std::string Source::text() const {
  if (from_cli) return "command line '" + (override ? *override : std::string()) + "'";
  if (file.empty()) return "<unknown>";
  if (line <= 0) return file;
  return file + ":" + std::to_string(line);
}

const char* scalar_type_name(ScalarType t) {
  switch (t) {
    case ScalarType::Null: return "null";
    case ScalarType::Bool: return "bool";
    case ScalarType::Int: return "int";
    case ScalarType::Float: return "float";
    case ScalarType::String: return "string";
  }
  return "?";
}

namespace {

bool all_of_chars(const std::string& t, std::size_t from, bool (*ok)(char)) {
  if (from >= t.size()) return false;
  for (std::size_t i = from; i < t.size(); ++i)
    if (!ok(t[i])) return false;
  return true;
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_octal(char c) { return c >= '0' && c <= '7'; }

// [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+
bool is_int_text(const std::string& t) {
  if (t.rfind("0x", 0) == 0) return all_of_chars(t, 2, is_hex);
  if (t.rfind("0o", 0) == 0) return all_of_chars(t, 2, is_octal);
  const std::size_t from = (t[0] == '-' || t[0] == '+') ? 1 : 0;
  return all_of_chars(t, from, is_digit);
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? | [-+]?\.inf | \.nan (any case form)
bool is_float_text(const std::string& t) {
  std::size_t i = (t[0] == '-' || t[0] == '+') ? 1 : 0;
  const std::string rest = t.substr(i);
  if (rest == ".inf" || rest == ".Inf" || rest == ".INF") return true;
  if (i == 0 && (rest == ".nan" || rest == ".NaN" || rest == ".NAN")) return true;
  std::size_t int_digits = 0, frac_digits = 0;
  while (i < t.size() && is_digit(t[i])) ++i, ++int_digits;
  if (i < t.size() && t[i] == '.') {
    ++i;
    while (i < t.size() && is_digit(t[i])) ++i, ++frac_digits;
    if (int_digits == 0 && frac_digits == 0) return false;
  } else if (int_digits == 0) {
    return false;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '-' || t[i] == '+')) ++i;
    std::size_t exp_digits = 0;
    while (i < t.size() && is_digit(t[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == t.size();
}

}  // namespace

ScalarType resolve_plain_scalar(const std::string& t) {
  if (t.empty() || t == "~" || t == "null" || t == "Null" || t == "NULL") return ScalarType::Null;
  if (t == "true" || t == "True" || t == "TRUE" || t == "false" || t == "False" || t == "FALSE")
    return ScalarType::Bool;
  if (is_int_text(t)) return ScalarType::Int;
  if (is_float_text(t)) return ScalarType::Float;
  return ScalarType::String;
}

std::string format_double(double v) {
  // Python's repr(): the shortest round-trip digits, in fixed notation when the decimal
  // exponent is in [-4, 16), else scientific ("1e-05"); OmegaConf prints floats this way.
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const std::string sci(buf, res.ptr);  // "-1.2345e-05"
  const auto e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::stoi(sci.substr(e + 1));
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  std::string out;
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out = "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exponent + 1) {
      out = digits + std::string(static_cast<std::size_t>(exponent + 1 - static_cast<int>(digits.size())), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<std::size_t>(exponent + 1)) + "." +
            digits.substr(static_cast<std::size_t>(exponent + 1));
    }
  } else {
    out = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "") + "e" + (exponent < 0 ? "-" : "+") +
          (std::abs(exponent) < 10 ? "0" : "") + std::to_string(std::abs(exponent));
  }
  return negative ? "-" + out : out;
}

ConfigNode ConfigNode::null(Source src) {
  ConfigNode n;
  n.source_ = std::move(src);
  return n;
}

ConfigNode ConfigNode::scalar(std::string text, bool quoted, Source src) {
  ConfigNode n;
  n.kind_ = Kind::Scalar;
  n.text_ = std::move(text);
  n.quoted_ = quoted;
  n.source_ = std::move(src);
  if (!quoted && resolve_plain_scalar(n.text_) == ScalarType::Null) n.kind_ = Kind::Null, n.text_.clear();
  return n;
}

ConfigNode ConfigNode::integer(std::int64_t v, Source src) { return scalar(std::to_string(v), false, std::move(src)); }
ConfigNode ConfigNode::floating(double v, Source src) { return scalar(format_double(v), false, std::move(src)); }
ConfigNode ConfigNode::boolean(bool v, Source src) { return scalar(v ? "true" : "false", false, std::move(src)); }

ConfigNode ConfigNode::sequence(Source src) {
  ConfigNode n;
  n.kind_ = Kind::Sequence;
  n.source_ = std::move(src);
  return n;
}

ConfigNode ConfigNode::map(Source src) {
  ConfigNode n;
  n.kind_ = Kind::Map;
  n.source_ = std::move(src);
  return n;
}

ScalarType ConfigNode::scalar_type() const {
  if (kind_ == Kind::Null) return ScalarType::Null;
  if (kind_ != Kind::Scalar) return ScalarType::String;  // not meaningful for containers
  return quoted_ ? ScalarType::String : resolve_plain_scalar(text_);
}

const char* ConfigNode::kind_name() const {
  switch (kind_) {
    case Kind::Null: return "null";
    case Kind::Sequence: return "list";
    case Kind::Map: return "mapping";
    case Kind::Scalar: return scalar_type_name(scalar_type());
  }
  return "?";
}

static std::string describe_value(const ConfigNode& n) {
  if (n.is_scalar()) return std::string(n.kind_name()) + " '" + n.text() + "'";
  return n.kind_name();
}

static ConfigError type_error(const ConfigNode& n, const char* expected) {
  return ConfigError(std::string("expected ") + expected + ", got " + describe_value(n), n.source());
}

std::int64_t ConfigNode::as_int() const {
  if (!is_int()) throw type_error(*this, "an int");
  const std::string& t = text_;
  std::size_t start = (t[0] == '+') ? 1 : 0;
  int base = 10;
  if (t.rfind("0x", 0) == 0) start = 2, base = 16;
  if (t.rfind("0o", 0) == 0) start = 2, base = 8;
  std::int64_t v = 0;
  auto res = std::from_chars(t.data() + start, t.data() + t.size(), v, base);
  if (res.ec != std::errc() || res.ptr != t.data() + t.size())
    throw ConfigError("integer '" + t + "' is out of range (64-bit)", source_);
  return v;
}

double ConfigNode::as_double() const {
  if (is_int()) return static_cast<double>(as_int());
  if (!is_float()) throw type_error(*this, "a float");
  std::string t = text_;
  if (t.find("inf") != std::string::npos || t.find("Inf") != std::string::npos || t.find("INF") != std::string::npos)
    return t[0] == '-' ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  if (t.find("nan") != std::string::npos || t.find("NaN") != std::string::npos || t.find("NAN") != std::string::npos)
    return std::numeric_limits<double>::quiet_NaN();
  if (t[0] == '+') t.erase(0, 1);
  double v = 0;
  auto res = std::from_chars(t.data(), t.data() + t.size(), v);
  // Too large or too small for a double: inf or 0, as Python's float() (and so OmegaConf) reads it.
  if (res.ec == std::errc::result_out_of_range) return std::strtod(t.c_str(), nullptr);
  if (res.ec != std::errc()) throw ConfigError("float '" + text_ + "' is not a number", source_);
  return v;
}

bool ConfigNode::as_bool() const {
  if (!is_bool()) throw type_error(*this, "a bool (true or false)");
  return text_[0] == 't' || text_[0] == 'T';
}

const std::string& ConfigNode::as_string() const {
  if (!is_scalar()) throw type_error(*this, "a string");
  return text_;
}

void ConfigNode::push_back(ConfigNode n) { items_.push_back(std::move(n)); }

const ConfigNode* ConfigNode::find(const std::string& key) const {
  for (const auto& e : entries_)
    if (e.first == key) return &e.second;
  return nullptr;
}

ConfigNode* ConfigNode::find(const std::string& key) {
  for (auto& e : entries_)
    if (e.first == key) return &e.second;
  return nullptr;
}

const ConfigNode& ConfigNode::at(const std::string& key) const {
  if (const ConfigNode* n = find(key)) return *n;
  throw ConfigError("missing key '" + key + "'", source_);
}

ConfigNode& ConfigNode::set(const std::string& key, ConfigNode value) {
  if (kind_ != Kind::Map) *this = map(source_);
  if (ConfigNode* n = find(key)) {
    *n = std::move(value);
    return *n;
  }
  entries_.emplace_back(key, std::move(value));
  return entries_.back().second;
}

bool ConfigNode::erase(const std::string& key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == key) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

std::vector<std::string> ConfigNode::keys() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e.first);
  return out;
}

static bool parse_index(const std::string& s, std::size_t& out) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  out = std::stoul(s);
  return true;
}

ConfigNode* ConfigNode::find_path(const std::string& dotted) {
  ConfigNode* cur = this;
  if (dotted.empty()) return cur;
  for (const auto& part : split_path(dotted)) {
    if (cur->is_map()) {
      cur = cur->find(part);
    } else if (cur->is_sequence()) {
      std::size_t i = 0;
      cur = (parse_index(part, i) && i < cur->items_.size()) ? &cur->items_[i] : nullptr;
    } else {
      cur = nullptr;
    }
    if (!cur) return nullptr;
  }
  return cur;
}

const ConfigNode* ConfigNode::find_path(const std::string& dotted) const {
  return const_cast<ConfigNode*>(this)->find_path(dotted);
}

void ConfigNode::set_source_recursive(const Source& s) {
  source_ = s;
  for (auto& i : items_) i.set_source_recursive(s);
  for (auto& e : entries_) e.second.set_source_recursive(s);
}

bool ConfigNode::same_value(const ConfigNode& o) const {
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::Null: return true;
    case Kind::Scalar: {
      if (scalar_type() != o.scalar_type()) return false;
      if (is_float()) {
        const double a = as_double(), b = o.as_double();
        return a == b || (std::isnan(a) && std::isnan(b));
      }
      if (is_int()) return as_int() == o.as_int();
      if (is_bool()) return as_bool() == o.as_bool();
      return text_ == o.text_;
    }
    case Kind::Sequence:
      if (items_.size() != o.items_.size()) return false;
      for (std::size_t i = 0; i < items_.size(); ++i)
        if (!items_[i].same_value(o.items_[i])) return false;
      return true;
    case Kind::Map:
      if (entries_.size() != o.entries_.size()) return false;
      for (const auto& e : entries_) {
        const ConfigNode* other = o.find(e.first);
        if (!other || !e.second.same_value(*other)) return false;
      }
      return true;
  }
  return false;
}

std::vector<std::string> split_path(const std::string& dotted) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : dotted) {
    if (c == '.') {
      if (cur.empty()) throw ConfigError("malformed key path '" + dotted + "': empty segment");
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (cur.empty()) throw ConfigError("malformed key path '" + dotted + "': empty segment");
  parts.push_back(cur);
  return parts;
}

std::string join_path(const std::vector<std::string>& parts) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? "." : "") + parts[i];
  return out;
}

}  // namespace blocklab
