// Checkpoints: model, optimizer and the training position, in one self-checking file.
//
// Layout: "BLKCKPT1" magic, payload length (u64 LE), FNV-1a 64 checksum of the payload (u64
// LE), then the payload (a LibTorch archive). Loading checks length and checksum before
// LibTorch reads anything, so a truncated or corrupted file gives a clear error naming it.
// Files are written atomically (run_files.h): a kill during a write leaves the previous
// checkpoint in place, and temp files are never loaded.
#pragma once

#include <torch/torch.h>

#include <stdexcept>
#include <string>

namespace blocklab {

// Where training stands; with the seeds (data order, augmentation and dropout all derive
// from (seed, epoch, step)) this is everything a resumed run needs.
struct TrainPosition {
  std::int64_t step = 0;            // optimizer steps done
  std::int64_t epoch = 0;           // current epoch (0-based)
  std::int64_t batch = 0;           // next batch index within the epoch
  double loss_sum = 0;              // running loss since the last log line
  std::int64_t loss_count = 0;
  double best_metric = -1e300;      // best selection metric so far (see best_epoch)
  std::int64_t best_epoch = -1;
  std::int64_t metrics_bytes = 0;   // length of metrics.jsonl at this point
  std::int64_t log_bytes = 0;       // length of log.txt at this point
  std::string task_state;           // TaskHooks::task_state (written only when not empty)
};

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void save_checkpoint(const std::string& path, const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                     const TrainPosition& position);
// Restores into `model` and `optimizer` (built with the same config) and returns the position.
TrainPosition load_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer);
// Loads only the model's tensors (for evaluation and attention maps).
void load_model_weights(const std::string& path, torch::nn::Module& model);

}  // namespace blocklab
