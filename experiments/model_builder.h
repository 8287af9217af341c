// A task's model for its data: the `model` component (registry kind "model": the `vit` preset,
// model/composed, or a whole-network model such as forecast/dlinear) with the task's `head`
// component, sized by what the dataset holds (image shape, vocabulary, length, horizon, classes).
// Shared by the tasks and by analysis (`blocklab attn` rebuilds a run's model from its
// config.yaml and loads its checkpoint).
#pragma once

#include <torch/torch.h>

#include "blocks/model.h"
#include "datasets/dataset.h"

namespace blocklab {

// What the model is sized from: the dataset's shapes and outputs, and the head config.
ModelArgs model_args_for(const DatasetInfo& info, const ConfigNode& head);

// Builds the model; errors name model.* / head.*.
Network build_model(const ConfigNode& model, const ConfigNode& head, const DatasetInfo& info);

}  // namespace blocklab
