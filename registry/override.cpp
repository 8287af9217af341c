#include "registry/override.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <unordered_set>

#include "registry/config_error.h"

namespace blocklab {

namespace {

const char* kGrammarHint =
    "forms: key=value, +key=value, ++key=value, ~key, group=option, group@package=option";

// The character at s[i] as a message shows it: a whole UTF-8 sequence, never half of one.
std::string char_at(const std::string& s, std::size_t i) {
  if (i >= s.size()) return "";
  const auto lead = static_cast<unsigned char>(s[i]);
  std::size_t n = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
  while (n > 1 && (i + n > s.size() || (static_cast<unsigned char>(s[i + n - 1]) & 0xC0) != 0x80)) --n;
  return s.substr(i, n);
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_decimal_digit(char c) { return c >= '0' && c <= '9'; }
bool at(const std::string& s, std::size_t i, char c) { return i < s.size() && s[i] == c; }

// --- Hydra's lexer (hydra/grammar/OverrideLexer.g4), VALUE_MODE ------------------------------
// Every token rule below returns the length of its longest match at s[i] (0: no match). The
// lexer takes the longest match over all rules, the earlier rule on a tie, as ANTLR does.

std::size_t ws_len(const std::string& s, std::size_t i) {
  std::size_t j = i;
  while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
  return j - i;
}

// DIGIT (('_')? DIGIT)*, with `first` the rule for the first digit.
std::size_t digits_len(const std::string& s, std::size_t i, bool nonzero_first) {
  if (i >= s.size() || !is_decimal_digit(s[i]) || (nonzero_first && s[i] == '0')) return 0;
  std::size_t j = i + 1;
  while (j < s.size()) {
    if (is_decimal_digit(s[j]))
      ++j;
    else if (s[j] == '_' && j + 1 < s.size() && is_decimal_digit(s[j + 1]))
      j += 2;
    else break;
  }
  return j - i;
}

// INT_UNSIGNED: '0' | [1-9] (('_')? DIGIT)*
std::size_t int_unsigned_len(const std::string& s, std::size_t i) {
  if (at(s, i, '0')) return 1;
  return digits_len(s, i, true);
}

// POINT_FLOAT: INT_UNSIGNED '.' | INT_UNSIGNED? '.' DIGIT (('_')? DIGIT)*
std::size_t point_float_len(const std::string& s, std::size_t i) {
  const std::size_t iu = int_unsigned_len(s, i);
  if (!at(s, i + iu, '.')) return 0;
  const std::size_t frac = digits_len(s, i + iu + 1, false);
  if (iu == 0 && frac == 0) return 0;
  return iu + 1 + frac;
}

// EXPONENT_FLOAT: (INT_UNSIGNED | POINT_FLOAT) [eE] [+-]? DIGIT (('_')? DIGIT)*
std::size_t exponent_float_len(const std::string& s, std::size_t i) {
  std::size_t best = 0;
  for (std::size_t base : {int_unsigned_len(s, i), point_float_len(s, i)}) {
    if (base == 0 || !(at(s, i + base, 'e') || at(s, i + base, 'E'))) continue;
    std::size_t j = i + base + 1;
    if (at(s, j, '+') || at(s, j, '-')) ++j;
    const std::size_t d = digits_len(s, j, false);
    if (d > 0) best = std::max(best, j + d - i);
  }
  return best;
}

bool word_at(const std::string& s, std::size_t i, const char* w) {
  for (std::size_t k = 0; w[k]; ++k)
    if (i + k >= s.size() || (is_alpha(s[i + k]) ? (s[i + k] | 0x20) : s[i + k]) != w[k]) return false;
  return true;
}

// FLOAT: [+-]? (POINT_FLOAT | EXPONENT_FLOAT | [Ii][Nn][Ff] | [Nn][Aa][Nn])
std::size_t float_len(const std::string& s, std::size_t i) {
  const std::size_t sign = (at(s, i, '+') || at(s, i, '-')) ? 1 : 0;
  std::size_t body = std::max(point_float_len(s, i + sign), exponent_float_len(s, i + sign));
  if (word_at(s, i + sign, "inf") || word_at(s, i + sign, "nan")) body = std::max<std::size_t>(body, 3);
  return body ? sign + body : 0;
}

// INT: [+-]? INT_UNSIGNED
std::size_t int_len(const std::string& s, std::size_t i) {
  const std::size_t sign = (at(s, i, '+') || at(s, i, '-')) ? 1 : 0;
  const std::size_t body = int_unsigned_len(s, i + sign);
  return body ? sign + body : 0;
}

// ID: (CHAR|'_') (CHAR|DIGIT|'_'|'-')*
std::size_t id_len(const std::string& s, std::size_t i) {
  if (i >= s.size() || !(is_alpha(s[i]) || s[i] == '_')) return 0;
  std::size_t j = i + 1;
  while (j < s.size() && (is_alpha(s[j]) || is_decimal_digit(s[j]) || s[j] == '_' || s[j] == '-')) ++j;
  return j - i;
}

// ESC: ('\\' followed by one of \ ( ) [ ] { } : = , space tab)+
std::size_t esc_len(const std::string& s, std::size_t i) {
  static const std::string escapable = "\\()[]{}:=, \t";
  std::size_t j = i;
  while (j + 1 < s.size() && s[j] == '\\' && escapable.find(s[j + 1]) != std::string::npos) j += 2;
  return j - i;
}

// QUOTED_VALUE: a quote, then up to the first same quote preceded by an even number of
// backslashes (ANTLR's non-greedy loop stops at the first place the rule can end).
std::size_t quoted_len(const std::string& s, std::size_t i) {
  const char q = s[i];
  std::size_t backslashes = 0;
  for (std::size_t j = i + 1; j < s.size(); ++j) {
    if (s[j] == q && backslashes % 2 == 0) return j + 1 - i;
    backslashes = s[j] == '\\' ? backslashes + 1 : 0;
  }
  return 0;
}

enum class Tok {
  POpen, Comma, PClose, BracketOpen, BracketClose, BraceOpen, BraceClose, Colon, Equal,
  Float, Int, Bool, Null, UnquotedChar, Id, Esc, Ws, Quoted, Interpolation,
  End, Unknown
};

struct Token {
  Tok type = Tok::End;
  std::size_t begin = 0, end = 0;
};

class Lexer {
 public:
  explicit Lexer(const std::string& s) : s_(s) {}

  Token token_at(std::size_t i) {
    if (i >= s_.size()) return {Tok::End, i, i};
    Token best{Tok::Unknown, i, i};
    auto consider = [&](Tok t, std::size_t len) {
      if (len > best.end - best.begin) best = {t, i, i + len};
    };
    const std::size_t ws = ws_len(s_, i);
    // WS? x WS? style punctuation, in the grammar's order.
    consider(Tok::POpen, at_char(i + ws, '(') ? ws + 1 + ws_len(s_, i + ws + 1) : 0);
    consider(Tok::Comma, at_char(i + ws, ',') ? ws + 1 + ws_len(s_, i + ws + 1) : 0);
    consider(Tok::PClose, at_char(i + ws, ')') ? ws + 1 : 0);
    consider(Tok::BracketOpen, at_char(i, '[') ? 1 + ws_len(s_, i + 1) : 0);
    consider(Tok::BracketClose, at_char(i + ws, ']') ? ws + 1 : 0);
    consider(Tok::BraceOpen, at_char(i, '{') ? 1 + ws_len(s_, i + 1) : 0);
    consider(Tok::BraceClose, at_char(i + ws, '}') ? ws + 1 : 0);
    consider(Tok::Colon, at_char(i + ws, ':') ? ws + 1 + ws_len(s_, i + ws + 1) : 0);
    consider(Tok::Equal, at_char(i + ws, '=') ? ws + 1 + ws_len(s_, i + ws + 1) : 0);
    consider(Tok::Float, float_len(s_, i));
    consider(Tok::Int, int_len(s_, i));
    consider(Tok::Bool, word_at(s_, i, "true") ? 4 : word_at(s_, i, "false") ? 5 : 0);
    consider(Tok::Null, word_at(s_, i, "null") ? 4 : 0);
    consider(Tok::UnquotedChar, s_[i] != '\0' && std::strchr("/-\\+.$%*@?|", s_[i]) != nullptr ? 1 : 0);
    consider(Tok::Id, id_len(s_, i));
    consider(Tok::Esc, esc_len(s_, i));
    consider(Tok::Ws, ws);
    consider(Tok::Quoted, (s_[i] == '\'' || s_[i] == '"') ? quoted_len(s_, i) : 0);
    consider(Tok::Interpolation, interpolation_len(i));
    return best;
  }

 private:
  bool at_char(std::size_t i, char c) const { return i < s_.size() && s_[i] == c; }

  // INTERPOLATION: '${' ~('}')+ '}'. The next '}' is cached so that many "${" without a
  // '}' cost one scan, not one each (the lexer stays linear in the text).
  std::size_t interpolation_len(std::size_t i) {
    if (!(at_char(i, '$') && at_char(i + 1, '{'))) return 0;
    const std::size_t from = i + 2;
    if (!(searched_from_ <= from && (next_close_ == std::string::npos || next_close_ >= from))) {
      searched_from_ = from;
      next_close_ = s_.find('}', from);
    }
    if (next_close_ == std::string::npos || next_close_ == from) return 0;
    return next_close_ + 1 - i;
  }

  const std::string& s_;
  std::size_t searched_from_ = std::string::npos;  // where next_close_ was searched from (npos: never)
  std::size_t next_close_ = std::string::npos;
};

// An ESC token's text: every second character ("\\," -> "," -> ","), as hydra's _createPrimitive joins several tokens.
std::string unescape_esc(const std::string& text) {
  std::string out;
  for (std::size_t k = 1; k < text.size(); k += 2) out += text[k];
  return out;
}

// A quoted value's text: backslashes count only before a quote (Hydra's
// _unescape_quoted_string): 2k+1 of them and a quote give k backslashes and the quote, 2k
// before the closing quote give k; every other backslash is kept as written.
std::string unquote(const std::string& token) {
  const char q = token.front();
  std::string out;
  const std::size_t last = token.size() - 1;  // the closing quote
  for (std::size_t i = 1; i < last;) {
    std::size_t run = 0;
    while (i + run < last && token[i + run] == '\\') ++run;
    const bool before_quote = i + run == last || token[i + run] == q;
    if (run > 0 && before_quote) {
      out.append(run / 2, '\\');
      i += run;
      if (run % 2 == 1) out += token[i++];  // an escaped quote
      continue;
    }
    if (run > 0) {
      out.append(run, '\\');
      i += run;
      continue;
    }
    out += token[i++];
  }
  return out;
}

// A number token as our scalar text: Python's int()/float() read "1_000", "+3", "inf", "NaN".
std::string number_text(std::string t, bool is_float) {
  t.erase(std::remove(t.begin(), t.end(), '_'), t.end());
  if (!t.empty() && t[0] == '+') t.erase(0, 1);
  if (!is_float) return t == "-0" ? "0" : t;
  std::string low;
  for (char c : t) low += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (low == "inf") return ".inf";
  if (low == "-inf") return "-.inf";
  if (low == "nan" || low == "-nan") return ".nan";
  return t;
}

// Parses the value of an override with Hydra's grammar (hydra/grammar/OverrideParser.g4):
//   value := element (',' element)*         several elements: a choice sweep
//   element := primitive | [list] | {dict} | function(args)
// Every token is looked at a bounded number of times: parsing is linear in the length.
class ValueParser {
 public:
  ValueParser(const std::string& whole, std::size_t from, Source src)
      : s_(whole), lex_(whole), pos_(from), src_(std::move(src)) {}

  [[noreturn]] void fail(const std::string& what, std::size_t where, const std::string& fix = "") const {
    std::vector<std::string> hints{kGrammarHint};
    if (!fix.empty()) hints.insert(hints.begin(), fix);
    throw ConfigError("malformed override '" + s_ + "': " + what + " at column " + std::to_string(where + 1),
                      Source{}, "", hints);
  }

  void parse(Override& o) {
    pos_ += ws_len(s_, pos_);  // EQUAL: '=' WS?
    if (pos_ >= s_.size()) {  // "key=" sets the empty string, as in Hydra
      o.value = ConfigNode::string("", src_);
      return;
    }
    std::vector<ConfigNode> elems;
    std::optional<Sweep> fn_sweep;
    while (true) {
      const std::size_t start = pos_;
      if (is_function_call()) {
        if (!elems.empty() || fn_sweep) fail("a sweep function cannot be combined with other values", start);
        fn_sweep = parse_function();
      } else {
        if (fn_sweep) fail("a sweep function cannot be combined with other values", start);
        elems.push_back(parse_element(0));
      }
      const Token t = peek();
      if (t.type == Tok::End) break;
      if (t.type != Tok::Comma) unexpected(t);
      pos_ = t.end;
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

 private:
  Token peek() { return lex_.token_at(pos_); }

  [[noreturn]] void unexpected(const Token& t) const {
    if (t.type == Tok::End) fail("unexpected end", t.begin);
    if (t.type == Tok::Unknown) {
      const std::string c = char_at(s_, t.begin);
      if (c == "'" || c == "\"")
        fail(std::string("unterminated ") + (c == "'" ? "single" : "double") + "-quoted string", t.begin);
      fail("unexpected '" + c + "' in an unquoted value", t.begin,
           "unquoted values hold ASCII letters, digits, blanks and / - \\ + . $ % * @ ? | : only, as in Hydra: "
           "quote the value, e.g. " + s_.substr(0, s_.find('=')) + "='...'");
    }
    const std::size_t at = t.begin + ws_len(s_, t.begin);
    fail("unexpected '" + char_at(s_, at) + "'", at);
  }

  // Consumes the next token if it is of this type.
  bool take(Tok type) {
    const Token t = peek();
    if (t.type != type) return false;
    pos_ = t.end;
    return true;
  }

  // After an item of a list, dict or call: consumes ',' (false) or the closing token (true).
  bool at_close(Tok close, const std::string& unclosed, std::size_t open_at) {
    const Token t = peek();
    pos_ = t.end;
    if (t.type == Tok::Comma) return false;
    if (t.type == close) return true;
    if (t.type == Tok::End) fail(unclosed, open_at);
    unexpected(t);
  }

  bool is_function_call() {
    const Token t = peek();
    return t.type == Tok::Id && lex_.token_at(t.end).type == Tok::POpen;
  }

  ConfigNode parse_element(int depth) {
    if (depth >= kMaxConfigDepth)
      fail("values nested deeper than " + std::to_string(kMaxConfigDepth) + " levels", pos_);
    const Token t = peek();
    if (t.type == Tok::BracketOpen) return parse_list(t, depth);
    if (t.type == Tok::BraceOpen) return parse_dict(t, depth);
    if (is_function_call()) fail("a sweep function must be the whole value", t.begin);
    return parse_primitive();
  }

  ConfigNode parse_list(const Token& open, int depth) {
    pos_ = open.end;
    ConfigNode list = ConfigNode::sequence(src_);
    if (take(Tok::BracketClose)) return list;
    do {
      list.push_back(parse_element(depth + 1));
    } while (!at_close(Tok::BracketClose, "unclosed '['", open.begin));
    return list;
  }

  ConfigNode parse_dict(const Token& open, int depth) {
    pos_ = open.end;
    ConfigNode map = ConfigNode::map(src_);
    if (take(Tok::BraceClose)) return map;
    std::unordered_set<std::string> seen;
    while (true) {
      const std::size_t key_at = pos_;
      std::string key = parse_dict_key();
      const Token colon = peek();
      if (colon.type != Tok::Colon) colon.type == Tok::End ? fail("expected ':' after a key in '{...}'", colon.begin)
                                                            : unexpected(colon);
      pos_ = colon.end;
      // Deliberate: Hydra keeps the last of duplicate keys; a config file may not repeat a key
      // either, so neither may an override.
      if (!seen.insert(key).second) fail("duplicate key '" + key + "' in '{...}'", key_at);
      map.entries().emplace_back(std::move(key), parse_element(depth + 1));
      if (at_close(Tok::BraceClose, "unclosed '{'", open.begin)) return map;
    }
  }

  // dictKey: (ID | NULL | INT | FLOAT | BOOL | UNQUOTED_CHAR | ESC | WS)+. Hydra types a key
  // of one token (1, 1.5, true, null); config keys here are strings, so such a key is refused
  // rather than silently turned into text.
  std::string parse_dict_key() {
    const std::size_t start = pos_;
    std::vector<Token> tokens = collect({Tok::Id, Tok::Null, Tok::Int, Tok::Float, Tok::Bool, Tok::UnquotedChar,
                                         Tok::Esc, Tok::Ws});
    if (tokens.empty()) {
      const Token t = peek();
      if (t.type == Tok::Colon || t.type == Tok::Comma || t.type == Tok::BraceClose || t.type == Tok::End)
        fail("expected a key in '{...}'", t.begin + ws_len(s_, t.begin));
      unexpected(t);
    }
    if (tokens.size() == 1 && tokens[0].type != Tok::Id && tokens[0].type != Tok::UnquotedChar &&
        tokens[0].type != Tok::Esc) {
      const char* type = tokens[0].type == Tok::Int ? "an int" : tokens[0].type == Tok::Float ? "a float"
                         : tokens[0].type == Tok::Bool ? "a bool" : "null";
      fail("the dict key '" + text_of(tokens[0]) + "' is " + type, start,
           std::string("Hydra would keep it as ") + type + " key, but config keys are strings here: use a name");
    }
    return join(tokens);
  }

  // The longest run of tokens of the given types, from pos_ on.
  std::vector<Token> collect(std::initializer_list<Tok> types) {
    std::vector<Token> out;
    while (true) {
      const Token t = peek();
      if (std::find(types.begin(), types.end(), t.type) == types.end()) break;
      out.push_back(t);
      pos_ = t.end;
    }
    while (!out.empty() && out.back().type == Tok::Ws) out.pop_back();
    if (!out.empty() && out.front().type == Tok::Ws) out.erase(out.begin());
    return out;
  }

  std::string text_of(const Token& t) const { return s_.substr(t.begin, t.end - t.begin); }

  std::string join(const std::vector<Token>& tokens) const {
    std::string out;
    for (const auto& t : tokens) out += t.type == Tok::Esc ? unescape_esc(text_of(t)) : text_of(t);
    return out;
  }

  // primitive: QUOTED_VALUE | (ID | NULL | INT | FLOAT | BOOL | INTERPOLATION | UNQUOTED_CHAR |
  //                            COLON | ESC | WS)+ ; typed only when it is one token.
  ConfigNode parse_primitive() {
    const Token first = peek();
    if (first.type == Tok::Quoted) {
      pos_ = first.end;
      const Token next = peek();
      if (next.type != Tok::End && next.type != Tok::Comma && next.type != Tok::BracketClose &&
          next.type != Tok::BraceClose && next.type != Tok::PClose)
        fail("text after a quoted string", next.begin);
      return ConfigNode::string(unquote(text_of(first)), src_);
    }
    const std::vector<Token> tokens = collect({Tok::Id, Tok::Null, Tok::Int, Tok::Float, Tok::Bool,
                                               Tok::Interpolation, Tok::UnquotedChar, Tok::Colon, Tok::Esc, Tok::Ws});
    if (tokens.empty()) {
      const Token t = peek();
      if (t.type == Tok::Comma || t.type == Tok::BracketClose || t.type == Tok::BraceClose || t.type == Tok::End ||
          t.type == Tok::PClose)
        fail("empty element", t.begin + ws_len(s_, t.begin));
      unexpected(t);
    }
    if (tokens.size() > 1) {
      std::string text = join(tokens);
      if (text == "???") return ConfigNode::scalar(text, false, src_);  // mandatory, as in OmegaConf
      return ConfigNode::string(std::move(text), src_);
    }
    const Token& t = tokens[0];
    switch (t.type) {
      case Tok::Int: return ConfigNode::scalar(number_text(text_of(t), false), false, src_);
      case Tok::Float: return ConfigNode::scalar(number_text(text_of(t), true), false, src_);
      case Tok::Bool: return ConfigNode::boolean(std::tolower(static_cast<unsigned char>(s_[t.begin])) == 't', src_);
      case Tok::Null: return ConfigNode::null(src_);
      case Tok::Esc: return ConfigNode::string(unescape_esc(text_of(t)), src_);
      default: return ConfigNode::string(text_of(t), src_);
    }
  }

  // range(...), choice(...), glob(...): the whole value of a sweep.
  Sweep parse_function() {
    const Token name_tok = peek();
    const std::string name = text_of(name_tok);
    if (name != "range" && name != "choice" && name != "glob")
      fail("unknown sweep function '" + name + "' (known: range, choice, glob)", name_tok.begin);
    pos_ = lex_.token_at(name_tok.end).end;  // past '('
    std::vector<ConfigNode> args;
    if (!take(Tok::PClose)) {
      while (true) {
        const Token arg = peek();
        if (arg.type == Tok::Id && lex_.token_at(arg.end).type == Tok::Equal)
          fail(name + "() takes its arguments by position here (write " + name + "(0,3), not names)", arg.begin);
        args.push_back(parse_element(1));
        if (at_close(Tok::PClose, "unclosed '" + name + "('", name_tok.begin)) break;
      }
    }
    return make_sweep(name, std::move(args), name_tok.begin);
  }

  Sweep make_sweep(const std::string& name, std::vector<ConfigNode> args, std::size_t at) const {
    Sweep sw;
    if (name == "choice") {
      if (args.empty()) fail("choice() needs at least one value", at);
      sw.kind = Sweep::Kind::Choice;
      sw.choices = std::move(args);
    } else if (name == "glob") {
      if (args.empty()) fail("glob() needs a pattern", at);
      sw.kind = Sweep::Kind::Glob;
      for (const auto& a : args) {
        if (!a.is_scalar()) fail("glob() takes name patterns", at);
        sw.patterns.push_back(a.text());
      }
    } else {
      if (args.size() < 2 || args.size() > 3) fail("range() takes (start, stop[, step])", at);
      sw.kind = Sweep::Kind::Range;
      for (const auto& a : args)
        if (!a.is_number()) fail("range() takes numbers", at);
      sw.range_is_int = true;
      for (const auto& a : args) sw.range_is_int = sw.range_is_int && a.is_int();
      sw.start = args[0].as_double();
      sw.stop = args[1].as_double();
      sw.step = args.size() == 3 ? args[2].as_double() : 1.0;
      if (sw.step == 0) fail("range() step must not be 0", at);
      if ((sw.stop - sw.start) / sw.step > 100000) fail("range() would give more than 100000 values", at);
    }
    return sw;
  }

  const std::string& s_;
  Lexer lex_;
  std::size_t pos_;
  Source src_;
};

// --- Keys (Hydra's DEFAULT_MODE) --------------------------------------------------------------
//   key := path ('@' package)?      path := package | ID ('/' ID)+
//   package := segment ('.' segment)*   segment := KEY_SPECIAL | INT_UNSIGNED (not alone)
// KEY_SPECIAL: (CHAR|'_'|'$') (CHAR|DIGIT|'_'|'-'|'$')*.

std::size_t key_special_len(const std::string& s, std::size_t i) {
  if (i >= s.size() || !(is_alpha(s[i]) || s[i] == '_' || s[i] == '$')) return 0;
  std::size_t j = i + 1;
  while (j < s.size() && (is_alpha(s[j]) || is_decimal_digit(s[j]) || s[j] == '_' || s[j] == '-' || s[j] == '$')) ++j;
  return j - i;
}

class KeyParser {
 public:
  explicit KeyParser(const std::string& s) : s_(s) {}

  [[noreturn]] void fail(const std::string& what, std::size_t where) const {
    throw ConfigError("malformed override '" + s_ + "': " + what + " at column " + std::to_string(where + 1),
                      Source{}, "", {kGrammarHint});
  }

  // A dotted path or a group path ("a.b.0", "$x", "model/mixer"); empty if none starts here.
  std::string path(std::size_t& i, const char* what) {
    const std::size_t start = i;
    const std::size_t id = id_len(s_, i);
    if (id > 0 && at(s_, i + id, '/')) {  // a group: ID ('/' ID)+
      i += id;
      while (at(s_, i, '/')) {
        const std::size_t next = id_len(s_, i + 1);
        if (next == 0) fail(std::string("expected a name after '/' in the ") + what, i + 1);
        i += 1 + next;
      }
      return s_.substr(start, i - start);
    }
    std::size_t segments = 0;
    bool only_number = false;
    while (true) {
      const std::size_t special = key_special_len(s_, i);
      const std::size_t number = special ? 0 : int_unsigned_len(s_, i);
      if (special + number == 0) {
        if (segments > 0) fail(std::string("empty segment in the ") + what, i);
        break;
      }
      only_number = segments == 0 && number > 0;
      i += special + number;
      ++segments;
      if (!at(s_, i, '.')) break;
      ++i;
    }
    if (segments == 1 && only_number) fail(std::string("a ") + what + " cannot be a number alone", start);
    return s_.substr(start, i - start);
  }

 private:
  const std::string& s_;
};

void check_zip_key(const std::string& key, const std::string& whole) {
  std::size_t i = 0;
  const std::string k = KeyParser(key).path(i, "zip key");
  if (k.empty() || i != key.size())
    throw ConfigError("malformed override '" + whole + "': invalid zip key '" + key + "'", Source{}, "",
                      {kGrammarHint});
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

namespace {

[[noreturn]] void malformed(const std::string& text, const std::string& why) {
  throw ConfigError("malformed override '" + text + "': " + why, Source{}, "", {kGrammarHint});
}

// zip(a,b)=...: our extension for sweeps; returns the position of the '='.
std::size_t parse_zip_keys(const std::string& text, std::size_t from, Override& o) {
  const std::size_t close = text.find(')', from);
  if (close == std::string::npos || !at(text, close + 1, '=')) malformed(text, "zip(...) must close before '='");
  const std::string inner = text.substr(from + 4, close - from - 4);
  std::size_t begin = 0;
  while (begin <= inner.size()) {
    std::size_t end = inner.find(',', begin);
    if (end == std::string::npos) end = inner.size();
    std::string k = inner.substr(begin, end - begin);
    k.erase(0, k.find_first_not_of(' '));
    k.erase(k.find_last_not_of(' ') + 1);
    check_zip_key(k, text);
    o.zip_keys.push_back(k);
    begin = end + 1;
  }
  if (o.zip_keys.size() < 2) malformed(text, "zip(...) pairs two or more keys");
  if (o.op != Override::Op::Set) malformed(text, "zip(...) takes no +, ++ or ~");
  return close + 1;
}

void check_zip_values(const Override& o) {
  if (!o.is_sweep() && !o.value.is_sequence()) malformed(o.text, "zip(...) takes lists, e.g. zip(a,b)=[1,x],[2,y]");
  const auto tuples = o.is_sweep() ? o.sweep->values(o.source()) : std::vector<ConfigNode>{o.value};
  for (const auto& t : tuples)
    if (!t.is_sequence() || t.items().size() != o.zip_keys.size())
      malformed(o.text, "each zip(...) value must be a list of " + std::to_string(o.zip_keys.size()) + " values");
}

// key ('@' package)?, from `i`; leaves `i` after it.
void parse_key(const std::string& text, std::size_t& i, Override& o) {
  KeyParser keys(text);
  const std::size_t start = i;
  o.key = keys.path(i, "key");
  if (o.key.empty()) keys.fail(i < text.size() && text[i] != '=' && text[i] != '@'
                                   ? "unexpected '" + char_at(text, i) + "' in the key"
                                   : std::string("empty key"),
                               start);
  if (!at(text, i, '@')) return;
  ++i;
  o.package = keys.path(i, "package");
  // Hydra's parser takes "group@=x" (an empty package) and fails later; refuse it here.
  if (o.package.empty()) keys.fail("empty package after '@' (write group@package=option)", i);
  if (o.package.find('/') != std::string::npos) keys.fail("a package is a dotted path, not a group", i);
}

}  // namespace

Override parse_override(const std::string& text) {
  Override o;
  o.text = text;
  std::size_t i = 0;
  if (text.rfind("++", 0) == 0) o.op = Override::Op::ForceAdd, i = 2;
  else if (text.rfind("+", 0) == 0) o.op = Override::Op::Add, i = 1;
  else if (text.rfind("~", 0) == 0) o.op = Override::Op::Delete, i = 1;

  if (text.compare(i, 4, "zip(") == 0) i = parse_zip_keys(text, i, o);
  else parse_key(text, i, o);

  if (i >= text.size()) {
    if (o.op != Override::Op::Delete) malformed(text, "missing '=' (write key=value, or ~key to delete)");
    return o;
  }
  if (text[i] != '=') {
    const bool blank = text[i] == ' ' || text[i] == '\t';
    KeyParser(text).fail("unexpected '" + char_at(text, i) + "' in the key" +
                             (blank ? " (no blanks around '=')"
                                    : " (a key is made of ASCII letters, digits, '_', '-', '$', '.' and '/')"),
                         i);
  }
  o.has_value = true;
  ValueParser(text, i + 1, o.source()).parse(o);
  if (o.is_zip()) check_zip_values(o);
  return o;
}

ConfigNode parse_override_value(const std::string& text) {
  Override o = parse_override("value=" + text);
  if (o.is_sweep()) throw ConfigError("a sweep is not a single value: '" + text + "'");
  return o.value;
}


namespace {

// A single-quoted override string whose unquoting (see unquote above) gives back `t`: a run
// of backslashes is doubled where it precedes a quote or the closing quote, and a quote gets
// one more backslash.
std::string quoted_text(const std::string& t) {
  std::string out = "'";
  std::size_t run = 0;  // backslashes just written
  for (char c : t) {
    if (c == '\'') out.append(run + 1, '\\');
    run = c == '\\' ? run + 1 : 0;
    out += c;
  }
  out.append(run, '\\');
  return out + "'";
}

bool reads_back_as(const std::string& text, const ConfigNode& value) {
  try {
    const ConfigNode back = parse_override_value(text);
    return back.kind() == value.kind() && back.scalar_type() == value.scalar_type() && back.text() == value.text();
  } catch (const ConfigError&) {
    return false;
  }
}

}  // namespace

std::string override_value_text(const ConfigNode& v) {
  if (v.is_null()) return "null";
  if (v.is_sequence()) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.items().size(); ++i) out += (i ? "," : "") + override_value_text(v.items()[i]);
    return out + "]";
  }
  if (v.is_map()) {
    std::string out = "{";
    for (const auto& [k, x] : v.entries()) {
      if (!reads_back_as(k, ConfigNode::string(k)))
        throw ConfigError("the key '" + k + "' cannot be written in an override's {...}", x.source(), "",
                          {"dict keys in overrides hold ASCII letters, digits, blanks and / - + . $ % * @ ? |"});
      out += (out.size() > 1 ? "," : "") + k + ":" + override_value_text(x);
    }
    return out + "}";
  }
  if (reads_back_as(v.text(), v)) return v.text();  // as written, when the grammar agrees ("1e-3")
  switch (v.scalar_type()) {
    case ScalarType::Int: return std::to_string(v.as_int());
    case ScalarType::Bool: return v.as_bool() ? "true" : "false";
    case ScalarType::Float: {
      const double d = v.as_double();
      return std::isnan(d) ? "nan" : std::isinf(d) ? (d > 0 ? "inf" : "-inf") : format_double(d);
    }
    default: return quoted_text(v.text());
  }
}

}  // namespace blocklab
