#include "blocks/attention/parts/output.h"

namespace blocklab {

OutputProjection::OutputProjection(torch::nn::Module& owner, std::int64_t inner, std::int64_t dim, bool gate_heads,
                                   double proj_drop)
    : proj_drop_(proj_drop) {
  proj = owner.register_module("proj", torch::nn::Linear(inner, dim));
  if (gate_heads) gate = owner.register_module("gate", torch::nn::Linear(dim, inner));
}

torch::Tensor OutputProjection::merge(const torch::Tensor& o, const torch::Tensor& x, bool training) {
  const auto b = o.size(0), n = o.size(2);
  auto heads = o.transpose(1, 2).reshape({b, n, o.size(1) * o.size(3)});
  if (gate) {
    TORCH_CHECK(x.defined(), "attention: the output gate needs the attention's input");
    heads = heads * torch::sigmoid(gate->forward(x));  // Qiu et al. 2025, eq. (5), G1 position
  }
  auto out = proj->forward(heads);
  if (proj_drop_ > 0.0) out = torch::dropout(out, proj_drop_, training);
  return out;
}

}  // namespace blocklab
