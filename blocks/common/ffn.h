// Feed-forward helpers shared by the channel mixers (mlp, glu, ...): activations by name and
// the hidden width.
//
// A block stores its activation as a string option (a schema choice); it resolves the name
// once at construction to a plain function, so forward pays no lookup.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "registry/options_schema.h"

namespace blocklab {

using ActivationFn = torch::Tensor (*)(const torch::Tensor&);

// The activations we know: gelu (exact, erf form, as torch.nn.GELU()), relu, silu, sigmoid, none
// (the identity: a bilinear GLU, e.g. TransNormerLLM's SGLU).
const std::vector<std::string>& activation_names();
// The function for `name`; throws ConfigError listing the valid names when unknown.
ActivationFn activation_by_name(const std::string& name);

// Hidden width round(ratio * dim), at least 1.
std::int64_t hidden_width(double ratio, std::int64_t dim);

// Declares the string option `activation` of Options O as a choice among `choices`.
template <class O>
ParamSpec& declare_activation(OptionsSchema<O>& schema, std::vector<std::string> choices, const std::string& doc) {
  return schema.choice(
      "activation", std::move(choices), doc, [](O& o, const std::string& v) { o.activation(v); },
      [](const O& o) { return o.activation(); });
}

}  // namespace blocklab
