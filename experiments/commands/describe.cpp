// blocklab describe <key>: an entry's summary, paper, equation and every parameter.
#include <iostream>

#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/registry.h"
#include "registry/suggest.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

// Parameters with type, default and doc; sections list their own parameters indented.
void print_params(const Schema& schema, std::size_t indent) {
  std::size_t width = 0;
  for (const auto& p : schema.params()) width = std::max(width, p.name.size());
  const std::string pad(indent, ' ');
  for (const auto& p : schema.params()) {
    std::string name = p.name;
    name.resize(width, ' ');
    std::cout << pad << name << "  " << p.type_text() << "\n" << pad << std::string(width + 2, ' ') << p.doc << "\n";
    if (p.type == ParamType::Section && p.section) print_params(*p.section, indent + 4);
  }
}

void describe_entry(const RegistryBase& reg, const EntryInfo& e) {
  std::cout << e.key << " (" << reg.kind() << ")\n  " << e.summary << "\n";
  if (!e.paper.empty()) std::cout << "  paper:    " << e.paper << "\n";
  if (!e.equation.empty()) std::cout << "  computes: " << e.equation << "\n";
  for (const auto& line : reg.described_facts(e)) std::cout << "  " << line << "\n";
  if (e.schema.empty()) {
    std::cout << "  parameters: none\n";
  } else {
    std::cout << "  parameters:\n";
    print_params(e.schema, 4);
  }
  std::cout << "  example:  {type: " << e.key;
  const ConfigNode example = parse_yaml(e.example.empty() ? "{}" : e.example, e.key + " example");
  for (const auto& [k, v] : example.entries()) std::cout << ", " << k << ": " << yaml_scalar_text(v);
  std::cout << "}\n";
}

int describe_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help");
  const auto cl = parse_command_line("describe", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help("describe", "<key> | <kind>:<key>",
                              "Shows a registered entry: summary, paper, equation, parameters with type, default "
                              "and doc, and a small example.",
                              opts);
    return 0;
  }
  if (cl.positional.size() != 1) throw UsageError("blocklab describe: give one key, e.g. blocklab describe optimizer:adamw");
  std::string key = cl.positional[0];
  std::string kind;
  if (auto colon = key.find(':'); colon != std::string::npos) kind = key.substr(0, colon), key = key.substr(colon + 1);
  const auto& index = RegistryIndex::instance();
  int found = 0;
  std::vector<std::string> all;
  for (const RegistryBase* reg : index.all()) {
    if (!kind.empty() && reg->kind() != kind) continue;
    for (const auto& k : reg->keys()) all.push_back(k);
    if (reg->contains(key)) {
      if (found++) std::cout << "\n";
      describe_entry(*reg, reg->info(key));
    }
  }
  if (!found) {
    std::vector<std::string> hints;
    const std::string dym = did_you_mean(key, all);
    if (!dym.empty()) hints.push_back(dym);
    hints.push_back("see: blocklab list" + (kind.empty() ? "" : " " + kind));
    throw ConfigError("nothing registered as '" + key + "'" + (kind.empty() ? "" : " in kind '" + kind + "'"), Source{},
                      "", hints);
  }
  return 0;
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"describe", "show a block's paper, equation and parameters", describe_command, 20});

}  // namespace
}  // namespace blocklab
