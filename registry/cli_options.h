// Boost.Program_options behind a small wrapper: abbreviation guessing off, and every Boost
// error turned into a UsageError in our words (the option, what is wrong, and --help).
#pragma once

#include <boost/program_options.hpp>
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

// "Usage: blocklab <command> <usage>\n<summary>\n\n<options>"
std::string command_help(const std::string& command, const std::string& usage, const std::string& summary,
                         const po::options_description& options, const std::string& details = "");

}  // namespace blocklab
