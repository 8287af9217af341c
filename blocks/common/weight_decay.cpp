#include "blocks/common/weight_decay.h"

#include <stdexcept>

namespace blocklab {

std::set<std::string> no_weight_decay_names(const torch::nn::Module& model) {
  std::set<std::string> names;
  for (const auto& item : model.named_parameters())
    if (item.value().dim() <= 1) names.insert(item.key());
  for (const auto& item : model.named_modules("", /*include_self=*/true)) {
    const auto* declares = dynamic_cast<const DeclaresNoWeightDecay*>(item.value().get());
    if (!declares) continue;
    const auto own = item.value()->named_parameters(/*recurse=*/false);
    for (const std::string& name : declares->no_weight_decay()) {
      if (!own.contains(name))
        throw std::logic_error(item.value()->name() + " declares '" + name + "' without weight decay, but has no such parameter");
      names.insert(item.key().empty() ? name : item.key() + "." + name);
    }
  }
  return names;
}

}  // namespace blocklab
