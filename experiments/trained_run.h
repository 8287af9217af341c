// A finished (or checkpointed) run, opened again for commands that reuse its model: `generate`
// here, `attn` in analysis/. The run directory's config.yaml rebuilds the dataset (with the run's
// seed) and the model, and a checkpoint (best, else last) gives the weights.
#pragma once

#include <memory>
#include <string>

#include "blocks/model.h"
#include "datasets/dataset.h"
#include "registry/config_node.h"

namespace blocklab {

struct TrainedRun {
  ConfigNode config;       // the run's resolved config.yaml
  std::string task;        // its task ("lm", "classify", ...)
  std::string checkpoint;  // the checkpoint file the weights came from
  std::shared_ptr<Dataset> dataset;
  DatasetInfo info;
  Network network;  // the model, in eval mode
  Model model;      // the same as stem -> stack -> head (load_trained_run only)
};

// Throws ConfigError when `run_dir` has no config.yaml or no checkpoint, or when the model is not
// stem -> stack -> head (`purpose` says what needs it: "blocklab generate steps it").
// `which`: "best" (falls back to "last") or "last".
TrainedRun load_trained_run(const std::string& run_dir, const std::string& which, const std::string& purpose);
// The same for any network (a supernet, a whole-network forecaster): `model` stays empty.
TrainedRun load_trained_network(const std::string& run_dir, const std::string& which);

}  // namespace blocklab
