// blocklab show <experiment> [overrides...]: the composed, resolved, validated config.
#include <iostream>

#include "experiments/experiment.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

int show_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("provenance,p", "annotate each value with its origin")(
      "format", po::value<std::string>(), "yaml (default) or json")(
      "config-dir", po::value<std::string>(), "experiment configs (default: experiments/conf or $BLOCKLAB_CONF)")(
      "no-validate", "compose only, without checking against the registry (any config directory)")(
      "choices", "also list the option chosen for each config group");
  const auto cl = parse_command_line("show", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "show", "<experiment> [overrides...]",
        "Prints an experiment's resolved config: defaults lists composed, overrides applied, interpolations\n"
        "resolved, and every value checked against the registry schemas.",
        opts,
        "Overrides:\n  key=value  +key=value  ++key=value  ~key  group=option  group@package=option\n"
        "Examples:\n  blocklab show vit_fmnist trainer.lr=3e-4 ~trainer.warmup --provenance\n");
    return 0;
  }
  if (cl.positional.empty()) throw UsageError("blocklab show: name an experiment\n  see: blocklab list experiment");
  const std::string format = choice_option(cl, "show", "format", {"yaml", "json"}, "yaml");
  const std::string dir = directory_option(cl, "show", "config-dir", default_config_dir());
  const std::vector<std::string> overrides(cl.positional.begin() + 1, cl.positional.end());
  const Experiment e = load_experiment(dir, checked_file_name("show", "the experiment name", cl.positional[0]),
                                       overrides, !cl.vars.count("no-validate"));
  if (format == "json") {
    std::cout << dump_json(e.config);
    return 0;
  }
  DumpOptions dump;
  dump.provenance = cl.vars.count("provenance") > 0;
  std::cout << dump_yaml(e.config, dump);
  if (cl.vars.count("choices")) {
    std::cout << "# config group choices:\n";
    for (const auto& [group, option] : e.choices) std::cout << "#   " << group << ": " << option << "\n";
  }
  return 0;
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"show", "print an experiment's resolved config (with provenance)", show_command, 30});

}  // namespace
}  // namespace blocklab
