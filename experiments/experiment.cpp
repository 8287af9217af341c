#include "experiments/experiment.h"

#include <cstdlib>
#include <filesystem>

#include "experiments/task.h"
#include "registry/registry.h"
#include "registry/suggest.h"

namespace blocklab {

std::string default_config_dir() {
  if (const char* env = std::getenv("BLOCKLAB_CONF"); env && *env) return env;
  return std::string(BLOCKLAB_SOURCE_DIR) + "/experiments/conf";
}

std::vector<Override> parse_overrides(const std::vector<std::string>& texts) {
  DiagnosticSink sink;
  std::vector<Override> out;
  for (const auto& t : texts) {
    try {
      out.push_back(parse_override(t));
    } catch (const ConfigError& e) {
      sink.add(e);
    }
  }
  sink.throw_if_any();
  return out;
}

const Schema& experiment_common_schema() {
  static const Schema schema = [] {
    Schema s;
    s.add_string("name", "", "experiment name (defaults to the config's name)");
    s.add_component("task", "task", "", "training loop that runs the experiment");
    s.add_int("seed", 0, "run seed: torch, data order and augmentation seeds derive from it").min = 0;
    s.add_choice("device", "auto", {"auto", "cpu", "cuda"}, "where to run (auto: cuda when available)");
    auto& threads = s.add_int("threads", 0, "CPU threads for LibTorch (0: the measured default)");
    threads.min = 0;
    threads.max = 256;
    s.add_string("output_dir", "results/runs", "root of the run directories");
    return s;
  }();
  return schema;
}

void validate_experiment(const ConfigNode& config) {
  if (!config.is_map()) throw ConfigError("an experiment config must be a mapping", config.source());
  DiagnosticSink sink;
  const auto& index = RegistryIndex::instance();
  const Schema& common = experiment_common_schema();
  const ConfigNode* task = config.find("task");
  if (!task || !task->is_scalar() || !task_registry().contains(task->text())) {
    // Without a known task the other sections cannot be checked: report the common keys only.
    ConfigNode known = ConfigNode::map(config.source());
    for (const auto& [k, v] : config.entries())
      if (common.find(k)) known.set(k, v);
    validate(known, common, "", index.lookup(), sink);
    sink.throw_if_any();
    return;
  }
  Schema schema = common;
  for (const auto& p : task_registry().info(task->text()).schema.params()) schema.add(p);
  validate(config, schema, "", index.lookup(), sink);
  sink.throw_if_any();
  // Rules between values, once every value is known to be well-typed.
  if (const TaskCheck* check = find_task_check(task->text())) (*check)(config, sink);
  sink.throw_if_any();
}

Experiment load_experiment(const std::string& config_dir, const std::string& name,
                           const std::vector<std::string>& override_texts, bool validate) {
  Experiment e;
  e.name = name;
  e.config_dir = config_dir;
  e.overrides = parse_overrides(override_texts);
  ComposeRequest req;
  req.config_dir = config_dir;
  std::error_code ec;
  const auto rel = std::filesystem::relative(config_dir, std::filesystem::current_path(), ec);
  req.display_dir = (!ec && !rel.empty() && rel.string().rfind("..", 0) != 0) ? rel.string() : config_dir;
  req.config_name = name;
  req.overrides = e.overrides;
  ComposeResult result = compose(req);
  e.config = std::move(result.config);
  e.choices = std::move(result.choices);
  if (validate) validate_experiment(e.config);
  return e;
}

}  // namespace blocklab
