// task `classify`: supervised image classification (train, validate, test), as hooks of the
// training loop (experiments/training/loop.h): images and labels in, cross-entropy with label
// smoothing, accuracy and loss on val (when the dataset has one) and test each epoch
// (experiments/tasks/classification.h); training batches are augmented.
#include "experiments/tasks/classification.h"

namespace blocklab {
namespace {

const ClassificationTask kClassifyTask{{"images", "vit", "linear", "fashion-mnist"}, /*augment=*/true};

const Schema& classify_schema() {
  static const Schema schema = classification_schema(kClassifyTask.defaults);
  return schema;
}

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(check_registered_) =
    register_task_check("classify", classification_check(classify_schema(), kClassifyTask));

BLOCKLAB_REGISTER(task_registry(),
                  BLOCKLAB_ENTRY("classify")
                      .summary("supervised classification: train, validate each epoch, test")
                      .equation("min_theta CE(head(pool(stack(stem(x)))), y) with AdamW/SGD, schedule, label smoothing")
                      .schema(classify_schema())
                      .example("{}"),
                  classification_factory(classify_schema(), kClassifyTask));

}  // namespace
}  // namespace blocklab
