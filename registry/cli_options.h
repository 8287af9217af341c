// Boost.Program_options behind a small wrapper: abbreviation guessing off, and every Boost
// error turned into a UsageError in our words (the option, what is wrong, and --help).
#pragma once

#include <boost/program_options.hpp>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace blocklab {

namespace po = boost::program_options;

// A command-line usage error: printed with the command's name, exit status 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CommandLine {
  po::variables_map vars;
  std::vector<std::string> positional;  // in order (subcommand arguments, overrides)
};

// Parses `args` for `blocklab <command>`. Options are in `options`; everything else is
// positional. Arguments after "--" are positional even when they start with '-'.
// Note: "~key" overrides start with '~', never '-', so they need no "--".
CommandLine parse_command_line(const std::string& command, const std::vector<std::string>& args,
                               const po::options_description& options);

// The value of a string option, or "" when it was not given.
std::string string_option(const CommandLine& cl, const char* name);
// "a,b,,c" -> {"a", "b", "", "c"} (empty items kept, so callers can reject them).
std::vector<std::string> split_commas(const std::string& s);

// ---- Checked option values -----------------------------------------------------------------
// Every check throws a UsageError that names the command and the option, says what was given
// and shows the valid values or range ("blocklab sweep: --jobs takes an integer from 1 to
// 1024, not 'x'").

// `text` for a message: control characters as '?', cut after 80 characters.
std::string printable(const std::string& text);

// A whole decimal integer in [lo, hi] ("+", spaces, hex, fractions and overflow refused).
std::int64_t parse_integer(const std::string& command, const std::string& option, const std::string& text,
                           std::int64_t lo, std::int64_t hi);
// The integer option `name` (declared as a string option), `fallback` when it was not given.
std::int64_t integer_option(const CommandLine& cl, const std::string& command, const char* name, std::int64_t lo,
                            std::int64_t hi, std::int64_t fallback);
// A whole finite decimal number (what std::stod reads, all of `text`) into `value`; false if not.
bool parse_finite_number(const std::string& text, double& value);
// The number option `name` (declared as a string option), finite and in [lo, hi]; `fallback`
// when it was not given.
double real_option(const CommandLine& cl, const std::string& command, const char* name, double lo, double hi,
                   double fallback);
// The string option `name`, which must be one of `choices`; `fallback` when not given.
std::string choice_option(const CommandLine& cl, const std::string& command, const char* name,
                          std::initializer_list<const char*> choices, const std::string& fallback = "");
// The directory option `name`, which must name an existing directory; `fallback` when not given.
std::string directory_option(const CommandLine& cl, const std::string& command, const char* name,
                             const std::string& fallback);
// `text` split at commas into names, each non-empty, without control characters, and listed
// once ("--metrics 'loss,,lr' has an empty name").
std::vector<std::string> name_list(const std::string& command, const std::string& option, const std::string& text);

// A list of indices and inclusive ranges, "0,2,5-7", the one syntax of --samples, --layers,
// --heads, --tokens and the like. Parsing checks the syntax (no empty items, FROM <= TO, no
// index twice); resolve() checks the indices against what exists, then expands them.
class IndexList {
 public:
  IndexList() = default;
  IndexList(std::string command, std::string option, const std::string& text);
  bool empty() const { return ranges_.empty(); }
  // Every index, in the order given; each must be below `count` ("--layers 7 does not exist:
  // the run has layers 0-3"). `what` names the things counted ("layers", "samples").
  std::vector<std::int64_t> resolve(std::int64_t count, const std::string& what) const;
  // Refuses a list that is not exactly one index or range (--tokens FROM-TO).
  void expect_single() const;
  // A list of exactly one range (--tokens FROM-TO) as [from, to] inclusive, checked as resolve().
  std::pair<std::int64_t, std::int64_t> single_range(std::int64_t count, const std::string& what) const;

 private:
  [[noreturn]] void fail(const std::string& what) const;
  std::string command_, option_, text_;
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges_;  // inclusive
};

// ---- Output files ------------------------------------------------------------------------
// A file name given on the command line (--name): letters, digits and ._-+=, at most 120
// characters, not starting with '.' or '-'; never a path ("..", "/", absolute).
std::string checked_file_name(const std::string& command, const std::string& option, const std::string& name);
// `dir/relative` after checking that it stays inside `dir` once symlinks are followed (a
// symlinked tables/ or a file symlinked elsewhere is refused). `dir` itself may be anywhere.
std::string output_path_inside(const std::string& command, const std::string& dir, const std::string& relative);

// "Usage: blocklab <command> <usage>\n<summary>\n\n<options>"
std::string command_help(const std::string& command, const std::string& usage, const std::string& summary,
                         const po::options_description& options, const std::string& details = "");

}  // namespace blocklab
