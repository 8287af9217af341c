#include "registry/cli_options.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>

#include "registry/suggest.h"

namespace blocklab {

namespace {

std::vector<std::string> long_names(const po::options_description& options) {
  std::vector<std::string> out;
  for (const auto& o : options.options()) out.push_back("--" + o->long_name());
  return out;
}

}  // namespace

CommandLine parse_command_line(const std::string& command, const std::vector<std::string>& args,
                               const po::options_description& options) {
  CommandLine cl;
  const std::string where = "blocklab " + command;
  const std::string help = "see: blocklab " + command + " --help";
  try {
    po::options_description all;
    all.add(options);
    all.add_options()("blocklab-positional", po::value<std::vector<std::string>>(), "");
    po::positional_options_description pos;
    pos.add("blocklab-positional", -1);
    const int style = po::command_line_style::unix_style ^ po::command_line_style::allow_guessing;
    auto parsed = po::command_line_parser(args).options(all).positional(pos).style(style).run();
    po::store(parsed, cl.vars);
    po::notify(cl.vars);
    if (cl.vars.count("blocklab-positional"))
      cl.positional = cl.vars["blocklab-positional"].as<std::vector<std::string>>();
  } catch (const po::unknown_option& e) {
    const std::string name = e.get_option_name();
    const std::string dym = did_you_mean(name, long_names(options));
    throw UsageError(where + ": unknown option '" + name + "'" + (dym.empty() ? "" : "; " + dym) + "\n  " + help);
  } catch (const po::invalid_option_value& e) {
    // Boost's text quotes the value as "the argument ('x') for option ..."; keep only the value.
    const std::string what = e.what();
    const auto open = what.find("('"), close = what.rfind("')");
    const std::string value = open != std::string::npos && close > open ? " '" + what.substr(open + 2, close - open - 2) + "'" : "";
    throw UsageError(where + ": invalid value" + value + " for option '" + e.get_option_name() + "'\n  " + help);
  } catch (const po::multiple_occurrences& e) {
    throw UsageError(where + ": option '" + e.get_option_name() + "' given more than once\n  " + help);
  } catch (const po::required_option& e) {
    throw UsageError(where + ": option '" + e.get_option_name() + "' is required\n  " + help);
  } catch (const po::invalid_command_line_syntax& e) {
    std::string what;
    switch (e.kind()) {
      case po::invalid_syntax::missing_parameter: what = "option '" + e.get_option_name() + "' needs a value"; break;
      case po::invalid_syntax::extra_parameter: what = "option '" + e.get_option_name() + "' takes no value"; break;
      default: what = "malformed option '" + e.get_option_name() + "'";
    }
    throw UsageError(where + ": " + what + "\n  " + help);
  } catch (const po::error& e) {
    throw UsageError(where + ": malformed command line\n  " + help);
  }
  return cl;
}

std::string command_help(const std::string& command, const std::string& usage, const std::string& summary,
                         const po::options_description& options, const std::string& details) {
  std::ostringstream out;
  out << "Usage: blocklab " << command << (usage.empty() ? "" : " " + usage) << "\n\n" << summary << "\n";
  if (!options.options().empty()) out << "\n" << options;
  if (!details.empty()) out << "\n" << details;
  return out.str();
}

std::string string_option(const CommandLine& cl, const char* name) {
  return cl.vars.count(name) ? cl.vars[name].as<std::string>() : "";
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == ',') out.emplace_back();
    else out.back() += c;
  }
  return out;
}

namespace {

constexpr std::int64_t kMaxIndex = 1'000'000'000'000;  // larger indices are typos, not data

bool has_control(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// Decimal digits only, at most `max`; false when not (or when it overflows).
bool read_digits(const std::string& s, std::int64_t max, std::int64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  out = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const int d = c - '0';
    if (out > (max - d) / 10) return false;
    out = out * 10 + d;
  }
  return true;
}

}  // namespace

std::string printable(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return s.size() > 80 ? out + "..." : out;
}

std::int64_t parse_integer(const std::string& command, const std::string& option, const std::string& text,
                           std::int64_t lo, std::int64_t hi) {
  const bool negative = !text.empty() && text[0] == '-';
  std::int64_t magnitude = 0;
  const bool ok = read_digits(negative ? text.substr(1) : text, std::numeric_limits<std::int64_t>::max() / 10, magnitude);
  const std::int64_t value = negative ? -magnitude : magnitude;
  if (!ok || value < lo || value > hi)
    throw UsageError("blocklab " + command + ": " + option + " takes an integer from " + std::to_string(lo) + " to " +
                     std::to_string(hi) + ", not '" + printable(text) + "'");
  return value;
}

std::int64_t integer_option(const CommandLine& cl, const std::string& command, const char* name, std::int64_t lo,
                            std::int64_t hi, std::int64_t fallback) {
  if (!cl.vars.count(name)) return fallback;
  return parse_integer(command, std::string("--") + name, cl.vars[name].as<std::string>(), lo, hi);
}

bool parse_finite_number(const std::string& text, double& value) {
  std::size_t used = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == text.size() && std::isfinite(value);
}

double real_option(const CommandLine& cl, const std::string& command, const char* name, double lo, double hi,
                   double fallback) {
  if (!cl.vars.count(name)) return fallback;
  const auto text = cl.vars[name].as<std::string>();
  double value = 0;
  if (!parse_finite_number(text, value) || value < lo || value > hi) {
    std::ostringstream range;
    range << lo << " to " << hi;
    throw UsageError("blocklab " + command + ": --" + name + " takes a number from " + range.str() + ", not '" +
                     printable(text) + "'");
  }
  return value;
}

std::string choice_option(const CommandLine& cl, const std::string& command, const char* name,
                          std::initializer_list<const char*> choices, const std::string& fallback) {
  if (!cl.vars.count(name)) return fallback;
  const std::string value = cl.vars[name].as<std::string>();
  std::vector<std::string> names(choices.begin(), choices.end());
  if (std::find(names.begin(), names.end(), value) != names.end()) return value;
  std::string list;
  for (std::size_t i = 0; i < names.size(); ++i) list += (i ? (i + 1 == names.size() ? " or " : ", ") : "") + names[i];
  throw UsageError("blocklab " + command + ": --" + name + " takes " + list + ", not '" + printable(value) + "'");
}

std::string directory_option(const CommandLine& cl, const std::string& command, const char* name,
                             const std::string& fallback) {
  if (!cl.vars.count(name)) return fallback;
  const std::string dir = cl.vars[name].as<std::string>();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw UsageError("blocklab " + command + ": --" + name + " '" + printable(dir) + "' is not a directory");
  return dir;
}

std::vector<std::string> name_list(const std::string& command, const std::string& option, const std::string& text) {
  std::vector<std::string> names = split_commas(text);
  for (std::size_t i = 0; i < names.size(); ++i) {
    std::string problem;
    if (names[i].empty()) problem = "has an empty name";
    else if (has_control(names[i])) problem = "has a control character";
    else if (std::find(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(i), names[i]) != names.begin() + static_cast<std::ptrdiff_t>(i))
      problem = "lists '" + names[i] + "' twice";
    if (!problem.empty())
      throw UsageError("blocklab " + command + ": " + option + " '" + printable(text) + "' " + problem +
                       " (a comma-separated list of names, e.g. a,b)");
  }
  return names;
}

IndexList::IndexList(std::string command, std::string option, const std::string& text)
    : command_(std::move(command)), option_(std::move(option)), text_(text) {
  if (text.empty()) fail("nothing given");
  std::vector<std::pair<std::int64_t, std::int64_t>> sorted;
  for (const std::string& item : split_commas(text)) {
    if (item.empty()) fail("an item is empty");
    const auto dash = item.find('-');
    std::int64_t from = 0, to = 0;
    const bool ok = dash == std::string::npos
                        ? read_digits(item, kMaxIndex, from) && (to = from, true)
                        : read_digits(item.substr(0, dash), kMaxIndex, from) &&
                              read_digits(item.substr(dash + 1), kMaxIndex, to);
    if (!ok) fail("'" + printable(item) + "' is not an index or a range FROM-TO");
    if (from > to)
      fail(item + " is a reversed range (write " + std::to_string(to) + "-" + std::to_string(from) + ")");
    for (const auto& [a, b] : ranges_)
      if (from <= b && a <= to) fail(std::to_string(std::max(a, from)) + " is listed twice");
    ranges_.emplace_back(from, to);
  }
}

void IndexList::fail(const std::string& what) const {
  throw UsageError("blocklab " + command_ + ": " + option_ + " '" + printable(text_) + "': " + what + "\n  " + option_ +
                   " takes indices from 0 and inclusive ranges FROM-TO, e.g. 0,2,5-7");
}

std::vector<std::int64_t> IndexList::resolve(std::int64_t count, const std::string& what) const {
  for (const auto& [from, to] : ranges_)
    if (to >= count)
      fail(count <= 0 ? "asks for " + what + ", but there are none"
                      : "asks for " + std::to_string(to) + ", but there are only " + what + " 0-" +
                            std::to_string(count - 1));
  std::vector<std::int64_t> out;
  for (const auto& [from, to] : ranges_)
    for (std::int64_t i = from; i <= to; ++i) out.push_back(i);
  return out;
}

void IndexList::expect_single() const {
  if (ranges_.size() != 1) fail("not one range FROM-TO");
}

std::pair<std::int64_t, std::int64_t> IndexList::single_range(std::int64_t count, const std::string& what) const {
  expect_single();
  resolve(count, what);
  return ranges_.front();
}

std::string checked_file_name(const std::string& command, const std::string& option, const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 120 && name[0] != '.' && name[0] != '-' &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("._-+=", c);
                  });
  if (!ok)
    throw UsageError("blocklab " + command + ": " + option + " '" + printable(name) +
                     "' is not a plain file name\n  use letters, digits and . _ - + = (no '/', no '..', not starting "
                     "with '.' or '-'), at most 120 characters");
  return name;
}

std::string output_path_inside(const std::string& command, const std::string& dir, const std::string& relative) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path root = fs::weakly_canonical(fs::absolute(dir), ec);
  const fs::path path = fs::path(dir) / relative;
  // Links are followed as a write would follow them, a dangling last link included.
  fs::path real = fs::absolute(path);
  for (int hop = 0; hop < 40 && fs::is_symlink(fs::symlink_status(real, ec)); ++hop) {
    const fs::path target = fs::read_symlink(real, ec);
    real = target.is_absolute() ? target : real.parent_path() / target;
  }
  real = fs::weakly_canonical(real, ec);
  const auto mismatch = std::mismatch(root.begin(), root.end(), real.begin(), real.end());
  if (ec || mismatch.first != root.end())
    throw UsageError("blocklab " + command + ": refusing to write " + path.string() + ": it leads to " +
                     real.string() + ", outside " + dir + " (a symbolic link points out)\n  remove the link, or "
                     "choose another output directory");
  return path.string();
}

}  // namespace blocklab
