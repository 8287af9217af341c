#include "experiments/classifier.h"

namespace blocklab {

ClassifierImpl::ClassifierImpl(Backbone backbone, Head head)
    : backbone_(register_module("backbone", std::move(backbone))), head_(register_module("head", std::move(head))) {}

torch::Tensor ClassifierImpl::forward(const torch::Tensor& images, AttentionProbe* probe) {
  return head_->forward(backbone_->forward(images, probe));
}

std::shared_ptr<ClassifierImpl> build_classifier(const ConfigNode& model, const ConfigNode& head,
                                                 const DatasetInfo& info) {
  auto backbone = backbone_registry().create(model, BackboneArgs{info.channels, info.height, info.width});
  auto classifier_head = head_registry().create(head, backbone->feature_dim(), info.num_classes);
  return std::make_shared<ClassifierImpl>(backbone, classifier_head);
}

}  // namespace blocklab
