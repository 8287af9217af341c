#include "registry/cli_options.h"

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
    throw UsageError(where + ": invalid value for option '" + e.get_option_name() + "'\n  " + help);
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

}  // namespace blocklab
