// Autoformer's feed-forward network and encoder layer (autoformer_layers.h).
#include "blocks/forecast/autoformer_layers.h"
#include "blocks/forecast/series_decomp.h"

namespace blocklab {

AutoformerFfnImpl::AutoformerFfnImpl(std::int64_t dim, std::int64_t ffn_dim, double drop) : drop_(drop) {
  // Conv1d(kernel 1, no bias) in the code: the same map and the same default init as a Linear.
  fc1 = register_module("fc1", torch::nn::Linear(torch::nn::LinearOptions(dim, ffn_dim).bias(false)));
  fc2 = register_module("fc2", torch::nn::Linear(torch::nn::LinearOptions(ffn_dim, dim).bias(false)));
}

torch::Tensor AutoformerFfnImpl::forward(const torch::Tensor& x) {
  const torch::Tensor h = torch::dropout(torch::gelu(fc1->forward(x)), drop_, is_training());
  return torch::dropout(fc2->forward(h), drop_, is_training());
}

AutoformerEncoderLayerImpl::AutoformerEncoderLayerImpl(const AutoformerLayerOptions& o) : options_(o) {
  correlation = register_module("correlation", AutoCorrelation(o.dim, o.heads, o.factor));
  ffn = register_module("ffn", AutoformerFfn(o.dim, o.ffn_dim, o.drop));
}

torch::Tensor AutoformerEncoderLayerImpl::forward(const torch::Tensor& x) {
  const torch::Tensor attended = x + torch::dropout(correlation->forward(x, x, x), options_.drop, is_training());
  const torch::Tensor s = series_decomp(attended, options_.kernel).seasonal;
  return series_decomp(s + ffn->forward(s), options_.kernel).seasonal;
}

}  // namespace blocklab
