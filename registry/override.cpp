#include "registry/override.h"

#include <cctype>
#include <cmath>

#include "registry/config_error.h"

namespace blocklab {

namespace {

const char* kGrammarHint =
    "forms: key=value, +key=value, ++key=value, ~key, group=option, group@package=option";

class Parser {
 public:
  Parser(std::string text, std::string whole) : s_(std::move(text)), whole_(std::move(whole)) {}

  [[noreturn]] void fail(const std::string& what) const {
    const std::size_t col = offset_ + pos_ + 1;
    throw ConfigError("malformed override '" + whole_ + "': " + what + " at column " + std::to_string(col),
                      Source{}, "", {kGrammarHint});
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }
  void skip_ws() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) fail(std::string("expected '") + c + "'" + (at_end() ? " before the end" : ""));
    ++pos_;
  }

  // value := element (',' element)*  -> a plain value or a choice sweep
  void parse_value(Override& o) {
    const Source src = o.source();
    skip_ws();
    if (at_end()) {  // "key=" sets the empty string, as in Hydra
      o.value = ConfigNode::string("", src);
      return;
    }
    std::vector<ConfigNode> elems;
    std::optional<Sweep> fn_sweep;
    while (true) {
      skip_ws();
      if (auto sw = try_sweep_function(src)) {
        if (!elems.empty() || fn_sweep) fail("a sweep function cannot be combined with other values");
        fn_sweep = std::move(sw);
      } else {
        if (fn_sweep) fail("a sweep function cannot be combined with other values");
        elems.push_back(parse_element(src, /*top=*/true));
      }
      skip_ws();
      if (at_end()) break;
      if (peek() != ',') fail(std::string("unexpected '") + peek() + "'");
      ++pos_;
    }
    if (fn_sweep) {
      o.sweep = std::move(fn_sweep);
    } else if (elems.size() > 1) {
      Sweep sw;
      sw.kind = Sweep::Kind::Choice;
      sw.choices = std::move(elems);
      o.sweep = std::move(sw);
    } else {
      o.value = std::move(elems.front());
    }
  }

  ConfigNode parse_element(const Source& src, bool top) {
    skip_ws();
    if (++depth_ > 64) fail("values nested deeper than 64 levels");
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    const char c = peek();
    if (c == '[') return parse_list(src);
    if (c == '{') return parse_dict(src);
    if (c == '\'' || c == '"') {
      ConfigNode q = ConfigNode::string(parse_quoted(), src);
      skip_ws();
      if (!at_end() && peek() != ',' && peek() != ']' && peek() != '}' && !(in_function_ > 0 && peek() == ')'))
        fail("text after a quoted string");
      return q;
    }
    return parse_primitive(src, top);
  }

  std::string parse_quoted() {
    const char q = s_[pos_++];
    std::string out;
    while (!at_end() && s_[pos_] != q) {
      if (s_[pos_] == '\\' && pos_ + 1 < s_.size() && (s_[pos_ + 1] == q || s_[pos_ + 1] == '\\')) ++pos_;
      out += s_[pos_++];
    }
    if (at_end()) fail(std::string("unterminated ") + (q == '\'' ? "single" : "double") + "-quoted string");
    ++pos_;
    return out;
  }

  ConfigNode parse_list(const Source& src) {
    ++pos_;  // '['
    ConfigNode list = ConfigNode::sequence(src);
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return list;
    }
    while (true) {
      list.push_back(parse_element(src, false));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return list;
      }
      fail(at_end() ? "unclosed '['" : std::string("expected ',' or ']' but found '") + peek() + "'");
    }
  }

  ConfigNode parse_dict(const Source& src) {
    ++pos_;  // '{'
    ConfigNode map = ConfigNode::map(src);
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return map;
    }
    while (true) {
      skip_ws();
      std::string key;
      while (!at_end() && (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '_' || peek() == '-' ||
                           peek() == '/' || peek() == '.'))
        key += s_[pos_++];
      if (key.empty()) fail("expected a key in '{...}'");
      expect(':');
      if (map.has(key)) fail("duplicate key '" + key + "' in '{...}'");
      map.set(key, parse_element(src, false));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return map;
      }
      fail(at_end() ? "unclosed '{'" : std::string("expected ',' or '}' but found '") + peek() + "'");
    }
  }

  // An unquoted value: runs to ',', ']', '}' (or the end); ${...} is kept whole; '\' escapes.
  ConfigNode parse_primitive(const Source& src, bool top) {
    std::string out;
    bool had_escape = false;
    while (!at_end()) {
      const char c = s_[pos_];
      if (c == '\\' && pos_ + 1 < s_.size()) {
        out += s_[pos_ + 1];
        pos_ += 2;
        had_escape = true;
        continue;
      }
      if (c == '$' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '{') {
        out += "${";
        pos_ += 2;
        int depth = 1;
        while (!at_end() && depth > 0) {
          if (s_[pos_] == '{') ++depth;
          if (s_[pos_] == '}') --depth;
          out += s_[pos_++];
        }
        if (depth > 0) fail("unclosed '${'");
        continue;
      }
      if (c == ',' || c == ']' || c == '}' || (c == ')' && in_function_ > 0)) break;
      if (c == '[' || c == '{' || c == '(' || c == ')' || c == '=' || c == '\'' || c == '"')
        fail(std::string("unexpected '") + c + "' (quote the value or escape it with '\\')");
      out += c;
      ++pos_;
    }
    while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
    if (out.empty() && !top) fail("empty element");
    if (out.empty()) fail("empty value before ','");
    if (had_escape) return ConfigNode::string(out, src);
    return typed_primitive(out, src);
  }

  // Hydra's primitive typing: case-insensitive true/false/null/inf/nan; else YAML core.
  static ConfigNode typed_primitive(const std::string& t, const Source& src) {
    std::string low;
    for (char c : t) low += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (low == "true" || low == "false") return ConfigNode::boolean(low == "true", src);
    if (low == "null") return ConfigNode::null(src);
    if (low == "inf" || low == "+inf") return ConfigNode::scalar(".inf", false, src);
    if (low == "-inf") return ConfigNode::scalar("-.inf", false, src);
    if (low == "nan") return ConfigNode::scalar(".nan", false, src);
    if (t == "???") return ConfigNode::scalar(t, false, src);  // mandatory, as in OmegaConf
    const ScalarType type = resolve_plain_scalar(t);
    if (type == ScalarType::Int || type == ScalarType::Float) return ConfigNode::scalar(t, false, src);
    return ConfigNode::string(t, src);
  }

  // range(...), choice(...), glob(...) when they start here; otherwise nothing consumed.
  std::optional<Sweep> try_sweep_function(const Source& src) {
    std::size_t p = pos_;
    std::string name;
    while (p < s_.size() && std::isalpha(static_cast<unsigned char>(s_[p]))) name += s_[p++];
    if (p >= s_.size() || s_[p] != '(') return std::nullopt;
    if (name != "range" && name != "choice" && name != "glob")
      return (pos_ = p, fail("unknown sweep function '" + name + "' (known: range, choice, glob)"), std::nullopt);
    pos_ = p + 1;
    ++in_function_;
    std::vector<ConfigNode> args;
    skip_ws();
    if (peek() != ')') {
      while (true) {
        args.push_back(parse_element(src, false));
        skip_ws();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        if (peek() == ')') break;
        fail(at_end() ? "unclosed '" + name + "('" : "expected ',' or ')' in " + name + "(...)");
      }
    }
    ++pos_;  // ')'
    --in_function_;
    Sweep sw;
    if (name == "choice") {
      if (args.empty()) fail("choice() needs at least one value");
      sw.kind = Sweep::Kind::Choice;
      sw.choices = std::move(args);
    } else if (name == "glob") {
      if (args.empty()) fail("glob() needs a pattern");
      sw.kind = Sweep::Kind::Glob;
      for (const auto& a : args) {
        if (!a.is_scalar()) fail("glob() takes name patterns");
        sw.patterns.push_back(a.text());
      }
    } else {
      if (args.size() < 2 || args.size() > 3) fail("range() takes (start, stop[, step])");
      sw.kind = Sweep::Kind::Range;
      for (const auto& a : args)
        if (!a.is_number()) fail("range() takes numbers");
      sw.range_is_int = true;
      for (const auto& a : args) sw.range_is_int = sw.range_is_int && a.is_int();
      sw.start = args[0].as_double();
      sw.stop = args[1].as_double();
      sw.step = args.size() == 3 ? args[2].as_double() : 1.0;
      if (sw.step == 0) fail("range() step must not be 0");
      if ((sw.stop - sw.start) / sw.step > 100000) fail("range() would give more than 100000 values");
    }
    return sw;
  }

  std::size_t pos_ = 0;
  std::size_t offset_ = 0;
  int depth_ = 0;
  int in_function_ = 0;  // inside range(...)/choice(...)/glob(...): ')' ends a value

 private:
  const std::string s_;
  const std::string whole_;
};

bool valid_key_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '/';
}

void check_key(const std::string& key, const std::string& whole, const char* what) {
  auto bad = [&](const std::string& why) {
    throw ConfigError("malformed override '" + whole + "': " + why, Source{}, "", {kGrammarHint});
  };
  if (key.empty()) bad(std::string("empty ") + what);
  for (char c : key)
    if (!valid_key_char(c)) bad(std::string("invalid character '") + c + "' in " + what + " '" + key + "'");
  if (key.front() == '.' || key.back() == '.' || key.find("..") != std::string::npos || key.back() == '/' ||
      key.find("//") != std::string::npos)
    bad(std::string("empty segment in ") + what + " '" + key + "'");
}

}  // namespace

std::vector<ConfigNode> Sweep::values(const Source& src) const {
  std::vector<ConfigNode> out;
  if (kind == Kind::Choice) return choices;
  if (kind == Kind::Range) {
    // Computed as start + i*step (no accumulated rounding), stopping before stop.
    for (long i = 0;; ++i) {
      const double v = start + static_cast<double>(i) * step;
      if ((step > 0 && v >= stop - 1e-12 * std::abs(step)) || (step < 0 && v <= stop + 1e-12 * std::abs(step)))
        break;
      out.push_back(range_is_int ? ConfigNode::integer(static_cast<std::int64_t>(std::llround(v)), src)
                                 : ConfigNode::floating(v, src));
    }
  }
  return out;
}

Override parse_override(const std::string& text) {
  Override o;
  o.text = text;
  std::string rest = text;
  std::size_t consumed = 0;
  if (rest.rfind("++", 0) == 0) o.op = Override::Op::ForceAdd, consumed = 2;
  else if (rest.rfind("+", 0) == 0) o.op = Override::Op::Add, consumed = 1;
  else if (rest.rfind("~", 0) == 0) o.op = Override::Op::Delete, consumed = 1;
  rest = rest.substr(consumed);

  const std::size_t eq = rest.find('=');
  std::string key = eq == std::string::npos ? rest : rest.substr(0, eq);
  while (!key.empty() && key.back() == ' ') key.pop_back();
  if (eq == std::string::npos && o.op != Override::Op::Delete)
    throw ConfigError("malformed override '" + text + "': missing '=' (write key=value, or ~key to delete)",
                      Source{}, "", {kGrammarHint});

  if (key.rfind("zip(", 0) == 0) {
    if (key.back() != ')')
      throw ConfigError("malformed override '" + text + "': zip(...) must close before '='", Source{}, "",
                        {kGrammarHint});
    std::string inner = key.substr(4, key.size() - 5);
    std::string cur;
    for (char c : inner + ",") {
      if (c == ',') {
        while (!cur.empty() && cur.front() == ' ') cur.erase(0, 1);
        while (!cur.empty() && cur.back() == ' ') cur.pop_back();
        check_key(cur, text, "zip key");
        o.zip_keys.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    if (o.zip_keys.size() < 2)
      throw ConfigError("malformed override '" + text + "': zip(...) pairs two or more keys", Source{}, "",
                        {kGrammarHint});
    if (o.op != Override::Op::Set)
      throw ConfigError("malformed override '" + text + "': zip(...) takes no +, ++ or ~", Source{}, "",
                        {kGrammarHint});
  } else {
    const std::size_t at = key.find('@');
    if (at != std::string::npos) {
      o.package = key.substr(at + 1);
      key = key.substr(0, at);
      if (o.package != "_global_") check_key(o.package, text, "package");
    }
    check_key(key, text, "key");
    o.key = key;
  }

  if (eq != std::string::npos) {
    o.has_value = true;
    Parser p(rest.substr(eq + 1), text);
    p.offset_ = consumed + eq + 1;
    p.parse_value(o);
  }
  if (o.is_zip()) {
    if (!o.is_sweep() && !o.value.is_sequence())
      throw ConfigError("malformed override '" + text + "': zip(...) takes lists, e.g. zip(a,b)=[1,x],[2,y]",
                        Source{}, "", {kGrammarHint});
    const auto tuples = o.is_sweep() ? o.sweep->values(o.source()) : std::vector<ConfigNode>{o.value};
    for (const auto& t : tuples)
      if (!t.is_sequence() || t.items().size() != o.zip_keys.size())
        throw ConfigError("malformed override '" + text + "': each zip(...) value must be a list of " +
                              std::to_string(o.zip_keys.size()) + " values",
                          Source{}, "", {kGrammarHint});
  }
  return o;
}

ConfigNode parse_override_value(const std::string& text) {
  Override o = parse_override("value=" + text);
  if (o.is_sweep()) throw ConfigError("a sweep is not a single value: '" + text + "'");
  return o.value;
}

}  // namespace blocklab
