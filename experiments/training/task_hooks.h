// What a task supplies to the one training loop (experiments/training/loop.h): its data, its
// model, a training batch, the loss on a batch, an evaluation, and what "best" means.
//
// Everything else is the loop's and holds for every task: run directories, checkpoints, exact
// resume, stop signals (checkpoint, exit 75), divergence (exit 3), progress, metrics.jsonl,
// best/last checkpoints, the evaluation schedule, optimizer, schedule and seeds.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "experiments/run_files.h"
#include "experiments/training/precision.h"
#include "registry/config_node.h"

namespace blocklab {

// One batch: model input (images, token ids, series values) and targets (labels, next
// tokens, future values). The loop moves them to the run's device.
struct Batch {
  torch::Tensor inputs;
  torch::Tensor targets;
  torch::Tensor lengths;  // [B] valid lengths of right-padded sequences; undefined: all valid
};

// What "best" means: the evaluation number compared (summary.json: "best/<name>") and its
// direction.
struct Selection {
  std::string name;  // "val_acc", "test_mse"
  bool higher_is_better = true;
};

// One evaluation's outcome (its numbers go into the metrics line, see TaskHooks::evaluate).
struct Evaluation {
  double selection = 0;  // the value Selection::name names
  std::string text;      // for the log: "test acc 0.8123 loss 0.5012"
};

// The trainer settings every task shares (the `trainer` section, see loop.h).
struct LoopSettings {
  std::int64_t epochs = 1;
  std::int64_t batch_size = 1;
  double lr = 1e-3;
  double warmup_epochs = 0;
  double clip_grad = 0;
  std::int64_t log_every = 1;
  std::int64_t checkpoint_every = 0;
  std::int64_t keep_checkpoints = 0;  // epoch checkpoints kept besides last and best
  std::int64_t val_every = 1;         // epochs between evaluations (the last epoch always)
  Precision precision = Precision::fp32;  // bf16: forward passes under autocast (precision.h)
  std::int64_t eval_batch_size = 1;
  std::int64_t max_steps = 0;
  ConfigNode optimizer, scheduler;  // the components, for their registries
};

// What a task's hooks are built from.
struct TaskContext {
  const ConfigNode& config;  // the experiment (composed, validated)
  const LoopSettings& settings;
  std::uint64_t seed;        // the run seed
  torch::Device device;
};

// Reports what the run is doing, for failure messages ("evaluation on test").
using PhaseNote = std::function<void(const std::string& phase)>;

class TaskHooks {
 public:
  virtual ~TaskHooks() = default;
  // Identifies the data content (part of the run id).
  virtual std::string data_fingerprint() const = 0;
  // Builds the model; the loop seeds torch before and moves the model to the device after.
  virtual std::shared_ptr<torch::nn::Module> build_model() = 0;
  // Optimizer steps in one epoch (the last partial batch is dropped).
  virtual std::int64_t batches_per_epoch() const = 0;
  // Training batch `index` of `epoch`: deterministic in (seed, epoch, index).
  virtual Batch train_batch(std::int64_t epoch, std::int64_t index) = 0;
  // The training loss on a batch already on the device (the model is in training mode).
  virtual torch::Tensor loss(const Batch& batch) = 0;
  // Evaluates the model on the task's evaluation splits and adds the numbers to `line`, the
  // evaluation's metrics line ("val/acc", "test/loss"). The loop has put the model in eval
  // mode without gradients; inputs go to TaskContext::device.
  virtual Evaluation evaluate(JsonObject& line, const PhaseNote& note_phase) = 0;
  virtual Selection selection() const = 0;
  // What a batch holds, for rates: "images" gives images_per_s and train_images_per_s.
  virtual std::string examples_name() const = 0;
  // How many of those one row of a batch holds (a language model counts tokens: its context).
  virtual std::int64_t examples_per_row() const { return 1; }
  // What the task keeps besides the model and the optimizer that training depends on (a
  // sampler's memory), as text for checkpoints; empty for most tasks. restore_task_state gets
  // back what task_state gave when the checkpoint was written.
  virtual std::string task_state() const { return {}; }
  virtual void restore_task_state(const std::string& /*state*/) {}
  // Why the task cannot train data-parallel (distributed.h), or "" when it can: each rank
  // trains on its rows of the global batch, so what the task keeps besides the gradients must
  // not depend on those rows.
  virtual std::string data_parallel_problem() const { return {}; }
};

using HooksFactory = std::function<std::unique_ptr<TaskHooks>(const TaskContext& context)>;

}  // namespace blocklab
