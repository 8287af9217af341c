#include "experiments/classifier.h"

namespace blocklab {

std::shared_ptr<ClassifierImpl> build_classifier(const ConfigNode& model, const ConfigNode& head,
                                                 const DatasetInfo& info) {
  ModelArgs args;
  args.inputs.channels = info.channels;
  args.inputs.height = info.height;
  args.inputs.width = info.width;
  args.outputs = info.num_classes;
  args.head = head;
  return model_registry().create(model, args);
}

}  // namespace blocklab
