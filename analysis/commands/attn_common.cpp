#include "analysis/commands/attn_common.h"

#include <iostream>

#include "analysis/curves.h"
#include "analysis/npy.h"
#include "analysis/run_records.h"
#include "experiments/checkpoint.h"
#include "experiments/model_builder.h"
#include "experiments/run_files.h"
#include "experiments/task.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace blocklab {

// Every index below `count` when `wanted` is empty; otherwise the wanted ones, checked.
std::vector<std::int64_t> select(const IndexList& wanted, std::int64_t count, const std::string& what) {
  if (!wanted.empty()) return wanted.resolve(count, what);
  std::vector<std::int64_t> all(static_cast<std::size_t>(std::max<std::int64_t>(count, 0)));
  for (std::int64_t i = 0; i < count; ++i) all[static_cast<std::size_t>(i)] = i;
  return all;
}

std::vector<double> to_doubles(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

void save_npy(const std::string& path, const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  write_npy(path, c.sizes().vec(), c.data_ptr<float>());
}

Heatmap matrix_panel(const torch::Tensor& m, const std::string& title) {
  Heatmap h;
  h.rows = static_cast<int>(m.size(0));
  h.cols = static_cast<int>(m.size(1));
  h.values = to_doubles(m);
  h.title = title;
  h.x_label = "key token";
  h.y_label = "query token";
  return h;
}

LoadedRun load_run(const AttnOptions& o) {
  const std::string config_path = o.run_dir + "/config.yaml";
  if (!file_exists(config_path))
    throw ConfigError("'" + o.run_dir + "' is not a run directory (no config.yaml)", Source{}, "",
                      {"run directories are results/runs/<experiment>/<id>; see `blocklab run`"});
  LoadedRun run;
  run.config = load_yaml_file(config_path, config_path);
  run.task = run.config.at("task").text();
  const ParamReader root(run.config, task_registry().info(run.task).schema, "");
  const std::string order = metrics_order_problem(o.run_dir + "/metrics.jsonl");
  if (!order.empty()) std::cerr << "warning: " << order << "\n";
  run.checkpoint = o.run_dir + "/checkpoints/" + o.checkpoint + ".ckpt";
  if (!file_exists(run.checkpoint) && o.checkpoint == "best") run.checkpoint = o.run_dir + "/checkpoints/last.ckpt";
  if (!file_exists(run.checkpoint))
    throw ConfigError("no checkpoint in " + o.run_dir + "/checkpoints", Source{}, "",
                      {"the run has not finished an epoch yet; continue it with blocklab run --resume"});
  const ConfigNode* seed = run.config.find("seed");
  run.dataset = dataset_registry().create(root.get_node("dataset"),
                                          DatasetArgs{seed ? static_cast<std::uint64_t>(seed->as_int()) : 0});
  run.info = run.dataset->info();
  const ConfigNode model_config = root.get_node("model");
  run.model = composed_model(build_model(model_config, root.get_node("head"), run.info));
  if (!run.model)
    throw ConfigError("the run's model is not stem -> stack -> head: it has no token mixers to show",
                      model_config.source(), "model", {});
  load_model_weights(run.checkpoint, *run.model);
  run.model->eval();
  return run;
}
}  // namespace blocklab
