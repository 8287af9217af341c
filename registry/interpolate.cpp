#include "registry/interpolate.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#include "registry/config_error.h"
#include "registry/override.h"
#include "registry/suggest.h"

namespace blocklab {

namespace {

// A piece of a string: literal text or an interpolation expression.
struct Piece {
  bool is_expr = false;
  std::string text;
};

// The index just past the '}' that closes the interpolation whose "${" starts at `open`, or
// npos. As in OmegaConf's grammar, braces nest ("${oc.env:X,{a: 1}}") and quoted resolver
// arguments may hold any character ("${oc.env:X,'a}b'}").
std::size_t interpolation_end(const std::string& s, std::size_t open) {
  int depth = 0;
  char quote = 0;
  for (std::size_t i = open + 1; i < s.size(); ++i) {
    const char c = s[i];
    if (quote) {
      if (c == '\\') ++i;  // an escaped character, the quote included
      else if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      return i + 1;
    }
  }
  return std::string::npos;
}

// Splits a string into literal text and ${...} expressions. Backslashes matter only right
// before "${" (OmegaConf's top-level escapes): 2k+1 of them give k backslashes and a literal
// "${"; 2k give k backslashes and then the interpolation. Any other backslash is kept.
std::vector<Piece> split_pieces(const std::string& s, const Source& where) {
  std::vector<Piece> out;
  std::string lit;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t run = 0;
    while (i + run < s.size() && s[i + run] == '\\') ++run;
    const bool before_interp = s.compare(i + run, 2, "${") == 0;
    if (run > 0 && !before_interp) {
      lit.append(run, '\\');
      i += run;
      continue;
    }
    if (before_interp) {
      lit.append(run / 2, '\\');
      i += run;
      if (run % 2 == 1) {  // escaped: a literal "${"
        lit += "${";
        i += 2;
        continue;
      }
      const std::size_t close = interpolation_end(s, i);
      if (close == std::string::npos)
        throw ConfigError("unclosed interpolation in '" + s + "'", where, "", {"write ${path.to.key}"});
      const std::string expr = s.substr(i + 2, close - i - 3);
      if (expr.find("${") != std::string::npos)
        throw ConfigError("nested interpolation in '" + s + "' is not supported", where);
      if (!lit.empty()) out.push_back({false, lit}), lit.clear();
      out.push_back({true, expr});
      i = close;
      continue;
    }
    lit += s[i++];
  }
  if (!lit.empty()) out.push_back({false, lit});
  return out;
}

// A key path in OmegaConf's dot and bracket forms, "a.b[0].c" or "a[b]" -> {"a", "b", "0", "c"};
// empty when malformed (an empty key, an unclosed '[', text right after ']').
std::vector<std::string> split_key_path(const std::string& s) {
  std::vector<std::string> parts;
  std::string key;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '[') {
      if (!key.empty()) parts.push_back(key), key.clear();
      const std::size_t close = s.find(']', i + 1);
      if (close == std::string::npos || close == i + 1) return {};
      parts.push_back(s.substr(i + 1, close - i - 1));
      i = close;
      if (i + 1 < s.size() && s[i + 1] != '.' && s[i + 1] != '[') return {};
      if (i + 1 < s.size() && s[i + 1] == '.') {
        if (i + 2 >= s.size()) return {};
        ++i;  // "[0].x": the dot only separates
      }
    } else if (c == '.') {
      if (key.empty() || i + 1 >= s.size()) return {};
      parts.push_back(key), key.clear();
    } else if (c == ']') {
      return {};
    } else {
      key += c;
    }
  }
  if (!key.empty()) parts.push_back(key);
  return parts;
}

// Python's str() of a scalar, as OmegaConf uses it inside strings.
std::string python_str(const ConfigNode& n) {
  if (n.is_null()) return "None";
  switch (n.scalar_type()) {
    case ScalarType::Bool: return n.as_bool() ? "True" : "False";
    case ScalarType::Int: return std::to_string(n.as_int());
    case ScalarType::Float: {
      const double d = n.as_double();
      if (std::isnan(d)) return "nan";
      if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
      return format_double(d);
    }
    default: return n.text();
  }
}

class Resolver {
 public:
  explicit Resolver(ConfigNode& root) : root_(root) {}

  void walk(ConfigNode& node, std::vector<std::string>& path) {
    if (node.is_scalar() && has_interpolation(node.text())) {
      resolve_node(node, path);
      return;
    }
    if (node.is_map()) {
      for (auto& [k, v] : node.entries()) {
        path.push_back(k);
        walk(v, path);
        path.pop_back();
      }
    } else if (node.is_sequence()) {
      for (std::size_t i = 0; i < node.items().size(); ++i) {
        path.push_back(std::to_string(i));
        walk(node.items()[i], path);
        path.pop_back();
      }
    }
  }

 private:
  // Resolves the scalar at `path` in place (its targets first, with cycle detection).
  void resolve_node(ConfigNode& node, const std::vector<std::string>& path) {
    const std::string here = join_path(path);
    if (!(node.is_scalar() && has_interpolation(node.text()))) return;
    if (std::find(active_.begin(), active_.end(), here) != active_.end()) {
      std::vector<std::string> chain(std::find(active_.begin(), active_.end(), here), active_.end());
      chain.push_back(here);
      throw ConfigError("interpolation cycle: " + join_names(chain, " -> "), node.source(), here,
                        {"one of these values must be given directly"});
    }
    if (static_cast<int>(active_.size()) >= kMaxConfigDepth)
      throw ConfigError("interpolations refer through more than " + std::to_string(kMaxConfigDepth) +
                            " values: " + active_.front() + " -> ... -> " + here,
                        node.source(), here, {"give one of the values in this chain directly"});
    active_.push_back(here);
    const Source where = node.source();
    const auto pieces = split_pieces(node.text(), where);
    if (pieces.size() == 1 && pieces[0].is_expr) {
      ConfigNode value = evaluate(pieces[0].text, path, where);
      // A container copied into place may nest deeper than any file could (v1: [[${v0}]], ...).
      if (!value.is_scalar() && path.size() + nesting(value) > static_cast<std::size_t>(kMaxConfigDepth))
        throw ConfigError("the interpolation makes the config nest deeper than " + std::to_string(kMaxConfigDepth) +
                              " levels",
                          where, here, {"interpolate a smaller part of the target"});
      value.set_source(where);
      node = std::move(value);
    } else {
      std::string out;
      for (const auto& p : pieces) {
        if (!p.is_expr) {
          out += p.text;
          continue;
        }
        const ConfigNode v = evaluate(p.text, path, where);
        if (!v.is_scalar() && !v.is_null())
          throw ConfigError("cannot put a " + std::string(v.kind_name()) + " inside a string ('${" + p.text + "}')",
                            where, here);
        out += python_str(v);
      }
      node = ConfigNode::string(out, where);
    }
    active_.pop_back();
  }

  ConfigNode evaluate(const std::string& expr, const std::vector<std::string>& path, const Source& where) {
    const std::string here = join_path(path);
    std::string e = expr;
    e.erase(0, e.find_first_not_of(' '));
    e.erase(e.find_last_not_of(' ') + 1);
    const auto colon = e.find(':');
    if (colon != std::string::npos) return resolver_call(e.substr(0, colon), e.substr(colon + 1), where, here);
    // Relative paths: ".x" is a sibling of this value, "..x" one level up, ...
    std::vector<std::string> target;
    std::string rest = e;
    if (!rest.empty() && rest[0] == '.') {
      std::size_t dots = 0;
      while (dots < rest.size() && rest[dots] == '.') ++dots;
      if (dots > path.size())
        throw ConfigError("interpolation '${" + expr + "}' goes above the root", where, here);
      target.assign(path.begin(), path.end() - static_cast<long>(dots));
      rest = rest.substr(dots);
    }
    if (rest.empty()) throw ConfigError("empty interpolation '${" + expr + "}'", where, here, {"write ${path.to.key}"});
    const std::vector<std::string> parts = split_key_path(rest);
    if (parts.empty())
      throw ConfigError("malformed interpolation '${" + expr + "}'", where, here, {"write ${path.to.key}"});
    target.insert(target.end(), parts.begin(), parts.end());
    const std::string target_path = join_path(target);
    ConfigNode* t = root_.find_path(target_path);
    if (!t) {
      std::vector<std::string> hints;
      // The deepest existing container, for did-you-mean.
      std::vector<std::string> prefix = target;
      prefix.pop_back();
      while (!prefix.empty() && !root_.find_path(join_path(prefix))) prefix.pop_back();
      const ConfigNode* parent = prefix.empty() ? &root_ : root_.find_path(join_path(prefix));
      if (parent && parent->is_map()) {
        const std::string missing = target[prefix.size()];
        const std::string dym = did_you_mean(missing, parent->keys());
        if (!dym.empty()) hints.push_back(dym);
        if (!parent->keys().empty())
          hints.push_back("keys " + (prefix.empty() ? std::string("at the top level") : "under '" + join_path(prefix) + "'") +
                          ": " + join_names(parent->keys()));
      }
      throw ConfigError("interpolation target '" + target_path + "' not found (in '${" + expr + "}')", where, here, hints);
    }
    if (t->is_scalar() && has_interpolation(t->text())) resolve_node(*t, target);
    if (t->is_map() || t->is_sequence()) {
      // Containers may hold interpolations of their own.
      std::vector<std::string> tp = target;
      for_each_interp(*t, tp);
    }
    return *t;
  }

  // How many levels of containers a value has (0 for a scalar).
  static std::size_t nesting(const ConfigNode& n) {
    std::size_t deepest = 0;
    for (const auto& i : n.items()) deepest = std::max(deepest, nesting(i));
    for (const auto& e : n.entries()) deepest = std::max(deepest, nesting(e.second));
    return n.is_scalar() || n.is_null() ? 0 : deepest + 1;
  }

  void for_each_interp(ConfigNode& node, std::vector<std::string>& path) {
    // Each link of an interpolation chain may walk a whole container: bound the sum as well.
    struct Frame {
      int& n;
      ~Frame() { --n; }
    } frame{++frames_};
    if (frames_ > 8 * kMaxConfigDepth)
      throw ConfigError("interpolations nest too deeply to resolve", node.source(), join_path(path),
                        {"give some of the values directly"});
    if (node.is_scalar() && has_interpolation(node.text())) {
      resolve_node(node, path);
      return;
    }
    if (node.is_map())
      for (auto& [k, v] : node.entries()) path.push_back(k), for_each_interp(v, path), path.pop_back();
    if (node.is_sequence())
      for (std::size_t i = 0; i < node.items().size(); ++i)
        path.push_back(std::to_string(i)), for_each_interp(node.items()[i], path), path.pop_back();
  }

  ConfigNode resolver_call(const std::string& name, const std::string& args, const Source& where,
                           const std::string& here) {
    if (name != "oc.env")
      throw ConfigError("unknown resolver '" + name + "'", where, here, {"known resolvers: oc.env"});
    const std::size_t comma = top_level_comma(args);
    std::string var = args.substr(0, comma);
    var.erase(0, var.find_first_not_of(' '));
    var.erase(var.find_last_not_of(' ') + 1);
    if (const char* v = std::getenv(var.c_str())) return ConfigNode::string(v, where);
    if (comma == std::string::npos)
      throw ConfigError("environment variable '" + var + "' is not set (in '${oc.env:" + args + "}')", where, here,
                        {"set it, or give a default: ${oc.env:" + var + ",value}"});
    return env_default(args.substr(comma + 1), where, here);
  }

  // The first ',' of `args` outside quotes and brackets, or npos.
  static std::size_t top_level_comma(const std::string& args) {
    int depth = 0;
    char quote = 0;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const char c = args[i];
      if (quote) {
        if (c == '\\') ++i;
        else if (c == quote) quote = 0;
      } else if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if (c == ']' || c == '}') {
        --depth;
      } else if (c == ',' && depth == 0) {
        return i;
      }
    }
    return std::string::npos;
  }

  // oc.env's default, as OmegaConf 2.3 returns it: parsed like an override value, then
  // str() of it (10 -> "10", 1.50 -> "1.5", true -> "True"); null stays null.
  static ConfigNode env_default(const std::string& text, const Source& where, const std::string& here) {
    ConfigNode def;
    try {
      def = parse_override_value(text);
    } catch (const ConfigError&) {
      throw ConfigError("malformed default '" + text + "' in ${oc.env:...}", where, here,
                        {"quote it: ${oc.env:NAME,'text'}"});
    }
    if (def.is_null()) return ConfigNode::null(where);
    if (!def.is_scalar())
      throw ConfigError("the default of ${oc.env:...} must be a single value, not a " + std::string(def.kind_name()),
                        where, here);
    return ConfigNode::string(python_str(def), where);
  }

  ConfigNode& root_;
  std::vector<std::string> active_;
  int frames_ = 0;  // for_each_interp calls on the stack
};

}  // namespace

bool has_interpolation(const std::string& text) {
  return text.find("${") != std::string::npos;
}

void resolve_interpolations(ConfigNode& root) {
  Resolver r(root);
  std::vector<std::string> path;
  r.walk(root, path);
}

}  // namespace blocklab
