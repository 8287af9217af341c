// Small string helpers shared by the analysis commands (tables, curves, plots).
#pragma once

#include <cctype>
#include <limits>
#include <string>
#include <vector>

namespace blocklab {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// parts joined by sep.
inline std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

// Whether the dotted config path is `key` or lies under it ("model.dim" is under "model").
inline bool under(const std::string& path, const std::string& key) {
  return path == key || (path.size() > key.size() && path.compare(0, key.size(), key) == 0 && path[key.size()] == '.');
}

// s with every character that is not alphanumeric, '.', '-' or '_' replaced by '_' (file names).
inline std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') ? c : '_';
  return out;
}

}  // namespace blocklab
