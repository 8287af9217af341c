#include "analysis/commands/attn_common.h"

#include <iostream>

#include "analysis/curves.h"
#include "analysis/npy.h"
#include "analysis/run_records.h"
#include "experiments/run_files.h"
#include "experiments/task.h"
#include "experiments/trained_run.h"
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

Heatmap layers_by_heads_panel(const torch::Tensor& m, const std::string& title,
                              const std::vector<std::string>& layers) {
  Heatmap h = matrix_panel(m, title);
  h.x_label = "head";
  h.y_label = "layer";
  h.annotate = true;
  h.row_labels = layers;
  for (std::int64_t i = 0; i < m.size(1); ++i) h.col_labels.push_back(std::to_string(i));
  return h;
}

LoadedRun load_run(const AttnOptions& o) {
  TrainedRun trained = load_trained_run(o.run_dir, o.checkpoint, "it has no token mixers to show");
  const std::string order = metrics_order_problem(o.run_dir + "/metrics.jsonl");
  if (!order.empty()) std::cerr << "warning: " << order << "\n";
  return trained;
}
}  // namespace blocklab
