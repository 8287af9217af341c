// Weights a researcher can open: a model's state dict (its parameter and buffer names, as
// named_parameters()/named_buffers() give them, to tensors) in the file format of Python's
// torch.save, so `torch.load(path)` reads it (also with weights_only=True). Runs write
// weights/final.pt and weights/best.pt; `--init-from` starts a run from such a file.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace blocklab {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes the model's parameters and buffers (on the CPU) atomically to `path`.
void save_state_dict(const std::string& path, const torch::nn::Module& model);

// Reads a dict of tensors saved by save_state_dict or by Python's torch.save(dict). Throws
// CheckpointError naming the file when it is missing, truncated or not such a dict.
NamedTensors read_state_dict(const std::string& path);

// The weights file `--init-from <run or file>` names: a file as is; a run directory's
// weights/best.pt, else weights/final.pt. Throws CheckpointError saying what is missing.
std::string init_weights_file(const std::string& run_or_file);

// What init_from_state_dict did, by name.
struct InitReport {
  std::vector<std::string> loaded;
  std::vector<std::string> reshaped;  // in both, with different shapes: kept as initialised (a new head)
  std::vector<std::string> missing;   // in the model only: kept as initialised
  std::vector<std::string> unused;    // in the file only
  std::string text() const;           // "loaded 12 tensors; kept 2 ... (head.weight [10,16] vs [5,16])"
};

// Copies every tensor of `weights` whose name and shape match into the model (fine-tuning,
// also with another head). Throws CheckpointError when nothing matches (a different model).
InitReport init_from_state_dict(torch::nn::Module& model, const NamedTensors& weights, const std::string& source);

}  // namespace blocklab
