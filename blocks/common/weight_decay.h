// Which parameters take no weight decay, declared by the modules that own them (as timm's
// per-model no_weight_decay()), instead of guessed from names or ranks by the training loop.
//
// Rule: every parameter of rank <= 1 (biases, norm scales and shifts, gates, temperatures)
// takes no decay, and so does every parameter a module lists in no_weight_decay(): position
// tables, relative-position embeddings, class tokens. Everything else is decayed.
#pragma once

#include <torch/torch.h>

#include <set>
#include <string>
#include <vector>

namespace blocklab {

// A module with parameters of rank >= 2 that must not be decayed mixes this in.
class DeclaresNoWeightDecay {
 public:
  virtual ~DeclaresNoWeightDecay() = default;
  // Names of the module's own parameters (as it registered them), never of its children.
  virtual std::vector<std::string> no_weight_decay() const = 0;
};

// The full names (as model.named_parameters() gives them) of the parameters without decay.
// Throws std::logic_error when a module declares a name it has no parameter for.
std::set<std::string> no_weight_decay_names(const torch::nn::Module& model);

}  // namespace blocklab
