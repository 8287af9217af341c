#include "experiments/model_builder.h"

namespace blocklab {

ModelArgs model_args_for(const DatasetInfo& info, const ConfigNode& head) {
  ModelArgs args;
  args.inputs.channels = info.channels > 0 ? info.channels : 1;
  args.inputs.height = info.height;
  args.inputs.width = info.width;
  args.inputs.length = info.length;
  args.inputs.vocabulary = info.vocabulary;
  args.inputs.horizon = info.horizon;
  args.outputs = info.outputs();
  args.head = head;
  return args;
}

Network build_model(const ConfigNode& model, const ConfigNode& head, const DatasetInfo& info) {
  return model_registry().create(model, model_args_for(info, head));
}

}  // namespace blocklab
