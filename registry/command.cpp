#include "registry/command.h"

#include <algorithm>
#include <iostream>

#include "registry/cli_options.h"
#include "registry/config_error.h"
#include "registry/registry.h"
#include "registry/suggest.h"

#ifndef BLOCKLAB_VERSION
#define BLOCKLAB_VERSION "0.0.0"
#endif

namespace blocklab {

CommandRegistry& CommandRegistry::instance() {
  static CommandRegistry r;
  return r;
}

bool CommandRegistry::add(Command c) {
  commands_[c.name] = std::move(c);
  return true;
}

const Command* CommandRegistry::find(const std::string& name) const {
  auto it = commands_.find(name);
  return it == commands_.end() ? nullptr : &it->second;
}

std::vector<const Command*> CommandRegistry::all() const {
  std::vector<const Command*> out;
  for (const auto& kv : commands_) out.push_back(&kv.second);
  std::stable_sort(out.begin(), out.end(), [](const Command* a, const Command* b) { return a->order < b->order; });
  return out;
}

std::vector<std::string> CommandRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& kv : commands_) out.push_back(kv.first);
  return out;
}

static void print_usage(std::ostream& out) {
  out << "blocklab " << BLOCKLAB_VERSION << ": research experiments with registered paper blocks\n\n"
      << "Usage: blocklab <command> [arguments...]\n\nCommands:\n";
  for (const Command* c : CommandRegistry::instance().all()) {
    std::string name = c->name;
    name.resize(std::max<std::size_t>(name.size(), 10), ' ');
    out << "  " << name << "  " << c->summary << "\n";
  }
  out << "\nRun 'blocklab <command> --help' for a command's arguments.\n";
}

namespace {
ErrorFormatter& error_formatter() {
  static ErrorFormatter formatter = [](const std::exception& e) { return std::string(e.what()); };
  return formatter;
}
}  // namespace

void set_error_formatter(ErrorFormatter formatter) { error_formatter() = std::move(formatter); }

int run_cli(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    RegistryIndex::instance().check();  // duplicate or malformed registrations
    if (args.empty()) {
      print_usage(std::cerr);
      return 2;
    }
    if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      print_usage(std::cout);
      return 0;
    }
    if (args[0] == "--version") {
      std::cout << "blocklab " << BLOCKLAB_VERSION << "\n";
      return 0;
    }
    const Command* cmd = CommandRegistry::instance().find(args[0]);
    if (!cmd) {
      const std::string dym = did_you_mean(args[0], CommandRegistry::instance().names());
      std::cerr << "error: unknown command '" << args[0] << "'\n";
      if (!dym.empty()) std::cerr << "  " << dym << "\n";
      std::cerr << "  commands: " << join_names(CommandRegistry::instance().names()) << "\n";
      return 2;
    }
    return cmd->run(std::vector<std::string>(args.begin() + 1, args.end()));
  } catch (const ConfigError& e) {
    std::cerr << "error: " << e.what();
    return 2;
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << error_formatter()(e) << "\n";
    return 1;
  }
}

}  // namespace blocklab
