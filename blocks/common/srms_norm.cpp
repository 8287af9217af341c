#include "blocks/common/srms_norm.h"

namespace blocklab {

torch::Tensor srms_norm(const torch::Tensor& x, double eps) {
  const bool low = x.scalar_type() == torch::kHalf || x.scalar_type() == torch::kBFloat16;
  const auto y = low ? x.to(torch::kFloat32) : x;
  const auto out = y * torch::rsqrt(y.pow(2).mean(-1, true) + eps);
  return low ? out.to(x.scalar_type()) : out;
}

}  // namespace blocklab
