#include "experiments/json_io.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <vector>

#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

const std::size_t kSuffixLength = std::strlen(kNonFiniteSuffix);

const char* nonfinite_name(double v) { return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"); }

bool nonfinite_value(const std::string& name, double& out) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (name == "nan" || name == "NaN")
    out = std::numeric_limits<double>::quiet_NaN();
  else if (name == "inf" || name == "Infinity")
    out = inf;
  else if (name == "-inf" || name == "-Infinity")
    out = -inf;
  else
    return false;
  return true;
}

bool is_nonfinite(const Json& v) { return v.is_number_float() && !std::isfinite(v.get<double>()); }

// A string's or integer's text by nlohmann (escapes, UTF-8 repair).
std::string leaf_text(const Json& v) { return v.dump(-1, ' ', false, Json::error_handler_t::replace); }

void emit(const Json& v, std::string& out, int depth) {
  if (depth > kMaxConfigDepth)
    throw std::invalid_argument("a JSON value nests deeper than " + std::to_string(kMaxConfigDepth) + " levels");
  if (v.is_object()) {
    out += '{';
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it != v.begin()) out += ", ";
      out += leaf_text(Json(it.key())) + ": ";
      if (is_nonfinite(it.value())) {
        out += "null, " + leaf_text(Json(it.key() + kNonFiniteSuffix)) + ": \"" +
               nonfinite_name(it.value().get<double>()) + "\"";
        continue;
      }
      emit(it.value(), out, depth + 1);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it != v.begin()) out += ", ";
      emit(*it, out, depth + 1);
    }
    out += ']';
  } else if (v.is_number_float()) {
    out += is_nonfinite(v) ? "null" : format_double(v.get<double>());
  } else {
    out += leaf_text(v);
  }
}

// Puts non-finite numbers back under `v`: a null with its "_nonfinite" flag, a string marked by
// mark_legacy_nonfinite().
// False when `v` nests deeper than kMaxConfigDepth (the walk is recursive).
bool restore_nonfinite(Json& v, int depth) {
  if (depth > kMaxConfigDepth) return false;
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    double d = 0;
    if (s.size() > 1 && s[0] == '\0' && nonfinite_value(s.substr(1), d)) v = d;
    return true;
  }
  if (v.is_array()) {
    for (Json& item : v)
      if (!restore_nonfinite(item, depth + 1)) return false;
    return true;
  }
  if (!v.is_object()) return true;
  std::vector<std::string> flags;
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!restore_nonfinite(it.value(), depth + 1)) return false;
    const std::string& key = it.key();
    if (key.size() > kSuffixLength && key.compare(key.size() - kSuffixLength, kSuffixLength, kNonFiniteSuffix) == 0 &&
        it.value().is_string())
      flags.push_back(key);
  }
  for (const std::string& flag : flags) {
    const auto base = v.find(flag.substr(0, flag.size() - kSuffixLength));
    double d = 0;
    if (base == v.end() || !base->is_null() || !nonfinite_value(v.at(flag).get<std::string>(), d)) continue;
    *base = d;
    v.erase(flag);
  }
  return true;
}

// Old files' bare NaN / Infinity / -Infinity (outside strings) as marked strings: a NUL byte
// (\u0000, never written by blocklab) and the word, for restore_nonfinite().
std::string mark_legacy_nonfinite(const std::string& text) {
  std::string out;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size())
        out += text[++i];
      else if (c == '"')
        in_string = false;
      continue;
    }
    in_string = c == '"';
    const char* word = nullptr;
    for (const char* w : {"NaN", "Infinity", "-Infinity"})
      if (text.compare(i, std::strlen(w), w) == 0) word = w;
    if (!word) {
      out += c;
      continue;
    }
    out += "\"\\u0000" + std::string(word) + "\"";
    i += std::strlen(word) - 1;
  }
  return out;
}

struct Failure {
  std::size_t byte = 0;  // 1-based offset of the last character read; 0 when unknown
  std::string reason;
};

// nlohmann's message without its exception id and position, the context last:
// "[json.exception.parse_error.101] parse error at line 1, column 9: syntax error while parsing
// object - unexpected end of input; expected string literal" -> "unexpected end of input;
// expected string literal (parsing object)".
std::string reason_of(const std::string& what) {
  std::string r = what;
  if (r.rfind("[json.exception.", 0) == 0 && r.find("] ") != std::string::npos) r = r.substr(r.find("] ") + 2);
  if (r.rfind("parse error", 0) == 0 && r.find(": ") != std::string::npos) r = r.substr(r.find(": ") + 2);
  if (r.rfind("syntax error ", 0) == 0) r = r.substr(13);
  const auto last_read = r.find("; last read: '");
  if (last_read != std::string::npos) {
    const auto expected = r.rfind("; expected ");
    r = r.substr(0, last_read) + (expected != std::string::npos && expected > last_read ? r.substr(expected) : "");
  }
  const std::string parsing = "while parsing ";
  const auto dash = r.find(" - ");
  if (r.rfind(parsing, 0) == 0 && dash != std::string::npos)
    r = r.substr(dash + 3) + " (parsing " + r.substr(parsing.size(), dash - parsing.size()) + ")";
  return r;
}

std::optional<Failure> parse_strict(const std::string& text, Json& out) {
  try {
    out = Json::parse(text);
    return std::nullopt;
  } catch (const Json::parse_error& e) {
    return Failure{e.byte, reason_of(e.what())};
  } catch (const Json::exception& e) {  // a number too large for a double
    return Failure{0, reason_of(e.what())};
  }
}

// Parses strictly, then (only if that fails) as an old file with bare non-finite numbers.
std::optional<Failure> parse_any(const std::string& text, Json& out) {
  Json value;
  std::optional<Failure> failure = parse_strict(text, value);
  if (failure && (text.find("NaN") != std::string::npos || text.find("Infinity") != std::string::npos)) {
    if (!parse_strict(mark_legacy_nonfinite(text), value)) failure.reset();
  }
  if (failure) return failure;
  if (!restore_nonfinite(value, 0))
    return Failure{0, "it nests deeper than " + std::to_string(kMaxConfigDepth) + " levels"};
  out = std::move(value);
  return std::nullopt;
}

// "at line 2, column 7" (whole files) or "at column 7" (one line of a .jsonl file).
std::string position_text(const std::string& text, std::size_t byte, bool one_line) {
  if (byte == 0) return "";
  const std::size_t at = std::min(byte, text.size() + 1) - 1;  // 0-based offset
  std::size_t line = 1, line_start = 0;
  for (std::size_t i = 0; i < at; ++i)
    if (text[i] == '\n') ++line, line_start = i + 1;
  const std::string column = "column " + std::to_string(at - line_start + 1);
  return one_line ? " at " + column : " at line " + std::to_string(line) + ", " + column;
}

}  // namespace

std::string json_text(const Json& value) {
  std::string out;
  emit(value, out, 0);
  return out;
}

Json parse_json(const std::string& text, const std::string& file, int line) {
  Json value;
  if (const auto failure = parse_any(text, value))
    throw ConfigError("not valid JSON" + position_text(text, failure->byte, line > 0) + ": " + failure->reason,
                      Source::in_file(file, std::max(line, 0)));
  return value;
}

bool try_parse_json(const std::string& text, Json& out) { return !parse_any(text, out); }

Json read_json_file(const std::string& path) { return parse_json(read_text_file(path, path), path); }

namespace {

ConfigNode to_config(const Json& v, const Source& source, int depth) {
  if (depth > kMaxConfigDepth)
    throw ConfigError("the JSON nests deeper than " + std::to_string(kMaxConfigDepth) + " levels", source);
  switch (v.type()) {
    case Json::value_t::boolean:
      return ConfigNode::boolean(v.get<bool>(), source);
    case Json::value_t::number_integer:
      return ConfigNode::integer(v.get<std::int64_t>(), source);
    case Json::value_t::number_unsigned: {
      const auto u = v.get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return ConfigNode::integer(static_cast<std::int64_t>(u), source);
      return ConfigNode::scalar(std::to_string(u), false, source);
    }
    case Json::value_t::number_float:
      return ConfigNode::floating(v.get<double>(), source);
    case Json::value_t::string:
      return ConfigNode::string(v.get<std::string>(), source);
    case Json::value_t::array: {
      ConfigNode list = ConfigNode::sequence(source);
      for (const Json& item : v) list.push_back(to_config(item, source, depth + 1));
      return list;
    }
    case Json::value_t::object: {
      ConfigNode map = ConfigNode::map(source);
      for (auto it = v.begin(); it != v.end(); ++it) map.set(it.key(), to_config(it.value(), source, depth + 1));
      return map;
    }
    default:
      return ConfigNode::null(source);  // null (binary and discarded values are never parsed from text)
  }
}

}  // namespace

ConfigNode json_to_config(const Json& value, const Source& source) { return to_config(value, source, 0); }

ConfigNode parse_json_object(const std::string& text, const std::string& file, int line) {
  const Json value = parse_json(text, file, line);
  const Source source = Source::in_file(file, std::max(line, 0));
  if (!value.is_object()) throw ConfigError("not a JSON object", source);
  return json_to_config(value, source);
}

}  // namespace blocklab
