// blocklab list [kind] [glob]: registered entries (and experiments) by kind.
#include <iostream>

#include "experiments/experiment.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/registry.h"
#include "registry/suggest.h"

namespace blocklab {
namespace {

void print_entries(const RegistryBase& reg, const std::vector<const EntryInfo*>& entries) {
  std::size_t width = 0;
  for (const auto* e : entries) width = std::max(width, e->key.size());
  std::cout << reg.kind() << " (" << entries.size() << "): " << reg.description() << "\n";
  for (const auto* e : entries) {
    std::string key = e->key;
    key.resize(width, ' ');
    std::cout << "  " << key << "  " << e->summary << "\n";
  }
}

int list_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("config-dir", po::value<std::string>(),
                                                  "experiment configs (default: experiments/conf)");
  const auto cl = parse_command_line("list", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help("list", "[kind] [glob]",
                              "Lists registered entries, all kinds or one kind, optionally filtered by a glob.\n"
                              "Kinds: " + join_names(RegistryIndex::instance().kinds()) +
                                  ", and 'experiment' for the named experiment configs.",
                              opts, "Examples:\n  blocklab list\n  blocklab list mixer 'attention/*'\n"
                                    "  blocklab list '*/softmax'\n  blocklab list experiment\n");
    return 0;
  }
  if (cl.positional.size() > 2) throw UsageError("blocklab list: takes at most a kind and a glob\n  see: blocklab list --help");
  const auto& index = RegistryIndex::instance();
  std::string kind = cl.positional.size() > 0 ? cl.positional[0] : "";
  std::string glob = cl.positional.size() > 1 ? cl.positional[1] : "*";

  if (kind == "experiment" || kind == "experiments") {
    const std::string dir = directory_option(cl, "list", "config-dir", default_config_dir());
    std::cout << "experiment: named configs in " << dir << "\n";
    for (const auto& n : list_primary_configs(dir))
      if (glob_match(glob, n)) std::cout << "  " << n << "\n";
    return 0;
  }
  // A single argument that is not a kind is a glob over every kind.
  if (!kind.empty() && !index.find(kind) && cl.positional.size() == 1 &&
      (kind.find_first_of("*?[/") != std::string::npos)) {
    glob = kind;
    kind.clear();
  }
  if (!kind.empty() && !index.find(kind)) {
    auto kinds = index.kinds();
    kinds.push_back("experiment");
    const std::string dym = did_you_mean(kind, kinds);
    throw UsageError("blocklab list: unknown kind '" + kind + "'" + (dym.empty() ? "" : "; " + dym) +
                     "\n  kinds: " + join_names(kinds));
  }
  bool any = false;
  for (const RegistryBase* reg : index.all()) {
    if (!kind.empty() && reg->kind() != kind) continue;
    const auto entries = reg->list(glob);
    if (entries.empty() && kind.empty()) continue;
    print_entries(*reg, entries);
    any = true;
  }
  if (!any) std::cout << "nothing registered matches '" << glob << "'\n";
  return 0;
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"list", "list registered blocks, datasets, tasks... (by kind, glob)", list_command, 10});

}  // namespace
}  // namespace blocklab
