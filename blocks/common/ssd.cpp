#include "blocks/common/ssd.h"

#include <algorithm>

#include "blocks/attention/parts/linear_core.h"

namespace blocklab {

namespace {

// The linear core's terms: q = C, k = dt B per head [B, H, L, N], v = x [B, H, L, P], log a [B, H, L].
struct SsdTerms {
  torch::Tensor q, k, v, log_decay;
};

SsdTerms terms(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& B,
               const torch::Tensor& C) {
  TORCH_CHECK(x.dim() == 4 && dt.dim() == 3 && A.dim() == 1 && B.dim() == 3 && C.sizes() == B.sizes(),
              "ssd: x [B, L, H, P], dt [B, L, H], A [H], B and C [B, L, N]");
  const auto heads = x.size(2);
  const auto dt_h = dt.transpose(1, 2);  // [B, H, L]
  return {C.unsqueeze(1).expand({-1, heads, -1, -1}).contiguous(), B.unsqueeze(1) * dt_h.unsqueeze(-1),
          x.transpose(1, 2).contiguous(), dt_h * A.unsqueeze(-1).unsqueeze(0)};
}

}  // namespace

torch::Tensor ssd(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& B,
                  const torch::Tensor& C, const std::string& form, std::int64_t chunk) {
  const auto t = terms(x, dt, A, B, C);
  // A sequence shorter than a chunk is one chunk of its own length: padding it to Mamba-2's 256
  // would cost (256 / L)^2 times the quadratic part for nothing.
  const auto y = form == "parallel"
                     ? linear_parallel(t.q, t.k, t.v, t.log_decay, /*causal=*/true)
                     : linear_chunked(t.q, t.k, t.v, t.log_decay, /*causal=*/true, std::min(chunk, x.size(1)));
  return y.transpose(1, 2);
}

torch::Tensor ssd_matrix(const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& B,
                         const torch::Tensor& C) {
  const auto dt_h = dt.transpose(1, 2);
  const auto k = B.unsqueeze(1) * dt_h.unsqueeze(-1);
  return linear_weights(C.unsqueeze(1).expand_as(k), k, dt_h * A.unsqueeze(-1).unsqueeze(0), /*causal=*/true);
}

std::pair<torch::Tensor, torch::Tensor> ssd_step(const torch::Tensor& x_t, const torch::Tensor& dt_t,
                                                 const torch::Tensor& A, const torch::Tensor& B_t,
                                                 const torch::Tensor& C_t, const torch::Tensor& state) {
  const auto heads = x_t.size(1);
  const auto k = B_t.unsqueeze(1) * dt_t.unsqueeze(-1);  // [B, H, N]
  return linear_recurrent_step(C_t.unsqueeze(1).expand({-1, heads, -1}), k, x_t, state, dt_t * A.unsqueeze(0));
}

}  // namespace blocklab
