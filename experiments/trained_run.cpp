#include "experiments/trained_run.h"

#include "experiments/checkpoint.h"
#include "experiments/model_builder.h"
#include "experiments/run_files.h"
#include "experiments/task.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace blocklab {

namespace {

std::string checkpoint_path(const std::string& run_dir, const std::string& which) {
  std::string path = run_dir + "/checkpoints/" + which + ".ckpt";
  if (!file_exists(path) && which == "best") path = run_dir + "/checkpoints/last.ckpt";
  if (!file_exists(path))
    throw ConfigError("no checkpoint in " + run_dir + "/checkpoints", Source{}, "",
                      {"the run has not finished an epoch yet; continue it with blocklab run --resume"});
  return path;
}

}  // namespace

TrainedRun load_trained_network(const std::string& run_dir, const std::string& which) {
  const std::string config_path = run_dir + "/config.yaml";
  if (!file_exists(config_path))
    throw ConfigError("'" + run_dir + "' is not a run directory (no config.yaml)", Source{}, "",
                      {"run directories are results/runs/<experiment>/<id>; see `blocklab run`"});
  TrainedRun run;
  run.config = load_yaml_file(config_path, config_path);
  run.task = run.config.at("task").text();
  run.checkpoint = checkpoint_path(run_dir, which);
  const ParamReader root(run.config, task_registry().info(run.task).schema, "");
  const ConfigNode* seed = run.config.find("seed");
  run.dataset = dataset_registry().create(root.get_node("dataset"),
                                          DatasetArgs{seed ? static_cast<std::uint64_t>(seed->as_int()) : 0});
  run.info = run.dataset->info();
  run.network = build_model(root.get_node("model"), root.get_node("head"), run.info);
  load_model_weights(run.checkpoint, *run.network);
  run.network->eval();
  return run;
}

TrainedRun load_trained_run(const std::string& run_dir, const std::string& which, const std::string& purpose) {
  TrainedRun run = load_trained_network(run_dir, which);
  run.model = composed_model(run.network);
  if (!run.model) {
    const ParamReader root(run.config, task_registry().info(run.task).schema, "");
    const ConfigNode model_config = root.get_node("model");
    throw ConfigError("the run's model is not stem -> stack -> head: " + purpose, model_config.source(), "model", {});
  }
  return run;
}

}  // namespace blocklab
