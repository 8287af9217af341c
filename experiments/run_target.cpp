#include "experiments/run_target.h"

#include <algorithm>
#include <filesystem>

#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/config_error.h"
#include "registry/suggest.h"
#include "registry/yaml_io.h"

namespace fs = std::filesystem;

namespace blocklab {

std::optional<int> run_multirun_alias(const std::vector<std::string>& args) {
  const auto end = std::find(args.begin(), args.end(), "--");  // after "--" everything is an override
  const auto flag =
      std::find_if(args.begin(), end, [](const std::string& a) { return a == "-m" || a == "--multirun"; });
  if (flag == end) return std::nullopt;
  const Command* sweep = CommandRegistry::instance().find("sweep");
  if (!sweep) throw UsageError("blocklab run: -m runs `blocklab sweep`, which this binary does not have");
  std::vector<std::string> rest(args.begin(), flag);
  rest.insert(rest.end(), flag + 1, args.end());
  return sweep->run(rest);
}

bool names_run_directory(const std::string& config_dir, const std::string& target) {
  std::error_code ec;
  // A path that is no directory stays an experiment name, whose check explains what names are.
  if (target.find('/') != std::string::npos) return fs::is_directory(target, ec);
  return fs::is_directory(target, ec) && !fs::is_regular_file(fs::path(config_dir) / (target + ".yaml"), ec);
}

namespace {

// What open_run_directory (experiments/run_setup.cpp) writes first into every run directory.
constexpr const char* kRunFiles[] = {"config.yaml", "overrides.yaml"};

[[noreturn]] void not_a_run(const std::string& target, const std::string& why) {
  throw ConfigError("'" + target + "' is not a run directory: " + why, Source{}, "",
                    {"a run directory is <output_dir>/<experiment>/<id> and holds config.yaml and overrides.yaml, "
                     "e.g. results/runs/vit_fmnist/0123456789ab",
                     "to run an experiment by name: blocklab run <experiment> (see: blocklab list experiment)"});
}

// The override texts a run recorded: overrides.yaml is a list of strings.
std::vector<std::string> recorded_overrides(const std::string& path) {
  const ConfigNode list = load_yaml_file(path, path);
  std::vector<std::string> out;
  if (list.is_null()) return out;
  const auto malformed = [&](const Source& where) {
    return ConfigError(path + " is not a list of overrides", where, "",
                       {"blocklab run writes one override per item, e.g. - trainer.lr=3e-4"});
  };
  if (!list.is_sequence()) throw malformed(list.source());
  for (const auto& item : list.items()) {
    if (!item.is_scalar()) throw malformed(item.source());
    out.push_back(item.text());
  }
  return out;
}

// A run directory <root>/<experiment>/<id>: the experiment's name and the root (output_dir).
struct RunPlace {
  std::string experiment;
  fs::path root;
};

RunPlace run_place(const std::string& dir) {
  fs::path p = fs::absolute(dir).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // "id/" and "." normalise with a trailing '/'
  return {p.parent_path().filename().string(), p.parent_path().parent_path()};
}

// Points output_dir at the directory's root (unless it already does), so the run opens the same
// directory from wherever blocklab is started. output_dir is not part of the run id.
void write_to_root(ConfigNode& config, const RunPlace& place, const std::string& dir) {
  const ConfigNode* recorded = config.find("output_dir");
  if (recorded && recorded->is_scalar() && fs::absolute(recorded->text()).lexically_normal() == place.root) return;
  config.set("output_dir", ConfigNode::string(place.root.string(), Source::in_file(dir, 0)));
}

Experiment load_past_run(const std::string& config_dir, const std::string& target,
                         const std::vector<std::string>& override_texts) {
  std::string dir = target;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) not_a_run(target, "no such directory");
  std::vector<std::string> missing;
  for (const char* file : kRunFiles)
    if (!fs::is_regular_file(dir + "/" + file, ec)) missing.push_back(file);
  if (!missing.empty()) not_a_run(target, "it has no " + join_names(missing, " and no "));

  const RunPlace place = run_place(dir);
  Experiment e;
  e.name = checked_file_name("run", "the run directory's experiment (its parent directory)", place.experiment);
  e.config_dir = config_dir;
  std::vector<std::string> texts = recorded_overrides(dir + "/overrides.yaml");
  std::string again = "blocklab run " + e.name;
  for (const auto& t : texts) again += " " + t;
  for (const auto& t : override_texts) again += " " + t;

  ConfigNode config = load_yaml_file(dir + "/config.yaml", dir + "/config.yaml");
  if (!config.is_map()) not_a_run(target, "its config.yaml is not a mapping");
  write_to_root(config, place, dir);
  e.config = override_composed_config(std::move(config), parse_overrides(override_texts), config_dir,
                                      "to choose options, compose the experiment again: " + again);
  validate_experiment(e.config);
  texts.insert(texts.end(), override_texts.begin(), override_texts.end());
  e.overrides = parse_overrides(texts);
  return e;
}

}  // namespace

Experiment load_run_target(const std::string& config_dir, const std::string& target,
                           const std::vector<std::string>& overrides) {
  if (names_run_directory(config_dir, target)) return load_past_run(config_dir, target, overrides);
  return load_experiment(config_dir, checked_file_name("run", "the experiment name", target), overrides, true);
}

}  // namespace blocklab
