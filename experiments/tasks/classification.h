// What the classification tasks share (classify: images; seqcls: token sequences): a label
// per example, cross-entropy with label smoothing (trainer.label_smoothing), accuracy and loss
// on val (when the dataset has one) and test after each epoch, the best by accuracy. A task
// differs in its default components, what its examples are called and whether training
// batches go through the dataset's augmentation.
#pragma once

#include <string>

#include "experiments/tasks/supervised.h"
#include "experiments/training/loop.h"

namespace blocklab {

struct ClassificationTask {
  SupervisedDefaults defaults;  // components, and what a batch holds ("images", "sequences")
  bool augment = true;          // training batches through the dataset's augmentation
};

// The supervised sections plus trainer.label_smoothing (and a task's own trainer keys).
Schema classification_schema(const SupervisedDefaults& defaults, const std::function<void(Schema&)>& trainer_keys = {});

// The loop's hooks of a classification task. `schema` (classification_schema) must outlive them.
class ClassificationHooks : public SupervisedHooks {
 public:
  ClassificationHooks(const TaskContext& context, const Schema& schema, const ClassificationTask& task);

  torch::Tensor loss(const Batch& batch) override;
  Evaluation evaluate(JsonObject& line, const PhaseNote& note_phase) override;
  Selection selection() const override { return {has_val_ ? "val_acc" : "test_acc", /*higher_is_better=*/true}; }
  std::string examples_name() const override { return examples_; }

 protected:
  struct SplitResult {
    double accuracy = 0, loss = 0;
  };
  // Accuracy and mean cross-entropy (without smoothing) of the model on a split.
  SplitResult evaluate_split(const std::string& split) const;
  bool has_val() const { return has_val_; }
  double label_smoothing() const { return label_smoothing_; }

 private:
  std::string examples_;
  bool has_val_;
  double label_smoothing_;
};

// The task-registry factory and the checks before a run (check_supervised) of `task`; `schema`
// (classification_schema(task.defaults)) must outlive them.
TaskRegistry::Factory classification_factory(const Schema& schema, const ClassificationTask& task);
TaskCheck classification_check(const Schema& schema, const ClassificationTask& task);

}  // namespace blocklab
