// The `blocklab` subcommands register themselves here (experiments/ registers run, show,
// list...; analysis/ registers table, attn, plot, bench), so `main` only dispatches.
#pragma once

#include <exception>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace blocklab {

struct Command {
  std::string name;
  std::string summary;  // one line, for `blocklab --help`
  // Receives the arguments after the subcommand name; returns the exit status.
  std::function<int(const std::vector<std::string>& args)> run;
  int order = 100;      // position in the help listing
};

class CommandRegistry {
 public:
  static CommandRegistry& instance();
  bool add(Command c);
  const Command* find(const std::string& name) const;
  std::vector<const Command*> all() const;  // by order, then name
  std::vector<std::string> names() const;

 private:
  std::map<std::string, Command> commands_;
};

// How an unexpected exception (not a ConfigError or UsageError) is shown: the layers above
// registry/ install one that knows LibTorch's errors (one line, no C++ stack trace). The
// default prints what().
using ErrorFormatter = std::function<std::string(const std::exception&)>;
void set_error_formatter(ErrorFormatter formatter);

// Runs the CLI: `blocklab <command> [args...]`. Errors print to stderr; returns the status
// (0 ok, 2 usage or configuration errors, 1 runtime failures).
int run_cli(int argc, char** argv);

}  // namespace blocklab
