#include "blocks/common/ffn.h"

#include <cmath>

#include "registry/suggest.h"

namespace blocklab {
namespace {

torch::Tensor gelu(const torch::Tensor& x) { return torch::gelu(x); }
torch::Tensor relu(const torch::Tensor& x) { return torch::relu(x); }
torch::Tensor silu(const torch::Tensor& x) { return torch::silu(x); }
torch::Tensor sigmoid(const torch::Tensor& x) { return torch::sigmoid(x); }
torch::Tensor identity(const torch::Tensor& x) { return x; }

}  // namespace

std::int64_t hidden_width(double ratio, std::int64_t dim) {
  return std::max<std::int64_t>(1, std::llround(ratio * static_cast<double>(dim)));
}

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names{"gelu", "relu", "silu", "sigmoid", "none"};
  return names;
}

ActivationFn activation_by_name(const std::string& name) {
  if (name == "gelu") return gelu;
  if (name == "relu") return relu;
  if (name == "silu") return silu;
  if (name == "sigmoid") return sigmoid;
  if (name == "none") return identity;
  std::vector<std::string> hints;
  const std::string dym = did_you_mean(name, activation_names());
  if (!dym.empty()) hints.push_back(dym);
  hints.push_back("valid values: " + join_names(activation_names()));
  throw ConfigError("unknown activation '" + name + "'", Source{}, "activation", hints);
}

}  // namespace blocklab
