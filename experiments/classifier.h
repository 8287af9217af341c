// The model of the classify task: a backbone and a head as one module, so checkpoints and
// parameter groups see the whole model. Shared by the task and by analysis (`blocklab attn`
// rebuilds a run's model from its config.yaml and loads its checkpoint).
#pragma once

#include <torch/torch.h>

#include "blocks/interfaces.h"
#include "datasets/dataset.h"

namespace blocklab {

class ClassifierImpl : public torch::nn::Module {
 public:
  ClassifierImpl(Backbone backbone, Head head);
  torch::Tensor forward(const torch::Tensor& images, AttentionProbe* probe = nullptr);
  BackboneImpl& backbone() { return *backbone_; }

 private:
  Backbone backbone_;
  Head head_;
};

// Builds the model from the `model` (backbone) and `head` component configs for a dataset.
std::shared_ptr<ClassifierImpl> build_classifier(const ConfigNode& model, const ConfigNode& head,
                                                 const DatasetInfo& info);

}  // namespace blocklab
