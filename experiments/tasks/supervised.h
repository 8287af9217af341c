// What the supervised tasks (classify, seqcls, lm, recall, forecast) share, as a base of their
// training-loop hooks: the `model`, `head` and `dataset` sections, the dataset and its seeded
// training batches (with the lengths of padded sequences), building the model for the data, and
// walking an evaluation split batch by batch. A task adds its loss, its metrics and what "best"
// means. Also the checks every such task runs before anything starts (validate_experiment).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "blocks/model.h"
#include "datasets/dataset.h"
#include "experiments/task.h"
#include "experiments/training/task_hooks.h"
#include "registry/schema.h"

namespace blocklab {

// The default components of a supervised task and what its batches hold ("images", "tokens").
struct SupervisedDefaults {
  std::string examples = "examples";
  std::string model = "vit";
  std::string head = "linear";
  std::string dataset = "fashion-mnist";
};

// model, head and dataset sections plus the loop's (optimizer, scheduler, trainer with the
// task's own trainer keys).
Schema supervised_schema(const SupervisedDefaults& defaults, const std::function<void(Schema&)>& trainer_keys = {});

class SupervisedHooks : public TaskHooks {
 public:
  // `schema` must outlive the hooks (a task's function-local static). `augment`: training
  // batches go through the dataset's augmentation.
  SupervisedHooks(const TaskContext& context, const Schema& schema, bool augment);

  std::string data_fingerprint() const override { return dataset_->fingerprint(); }
  std::shared_ptr<torch::nn::Module> build_model() override;
  std::int64_t batches_per_epoch() const override { return train_.batches_per_epoch(); }
  Batch train_batch(std::int64_t epoch, std::int64_t index) override;

 protected:
  // The model's output on a batch already on the device (lengths passed when the batch has them).
  torch::Tensor predict(const Batch& batch) const;
  // Every batch of a split in order (trainer.eval_batch_size examples), on the device.
  void for_each_batch(const std::string& split, const std::function<void(const Batch&)>& visit) const;
  bool has_split(const std::string& split) const { return dataset_->split(split).size() > 0; }
  std::int64_t split_size(const std::string& split) const { return dataset_->split(split).size(); }

  const ParamReader root_;
  const ParamReader trainer_;  // the trainer section, for the task's own keys
  const LoopSettings& settings_;
  torch::Device device_;
  std::shared_ptr<Dataset> dataset_;
  DatasetInfo info_;
  Network model_;

 private:
  BatchLoader train_;
  bool augment_;
};

// Before anything runs: the training split holds a batch, the test split is not empty, and the
// model builds for the data (rules between values its factories check). Adds to `sink`;
// `examples` names what the splits hold, for the messages ("images").
void check_supervised(const ConfigNode& config, const Schema& schema, const std::string& examples,
                      DiagnosticSink& sink);

}  // namespace blocklab
