// The model of the classify task: stem -> stack -> norm -> pool -> head (blocks/model.h) as one
// module, so checkpoints and parameter groups see the whole model. Shared by the task and by
// analysis (`blocklab attn` rebuilds a run's model from its config.yaml and loads its checkpoint).
#pragma once

#include <torch/torch.h>

#include "blocks/model.h"
#include "datasets/dataset.h"

namespace blocklab {

using ClassifierImpl = ModelImpl;

// Builds the model from the `model` component (registry kind "model": the `vit` preset or
// model/composed) and the task's `head` component for a dataset; errors name model.* / head.*.
std::shared_ptr<ClassifierImpl> build_classifier(const ConfigNode& model, const ConfigNode& head,
                                                 const DatasetInfo& info);

}  // namespace blocklab
