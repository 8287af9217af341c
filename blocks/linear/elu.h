// linear/elu: linear attention with the elu + 1 feature map.
//
// Paper: "Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
// Katharopoulos et al., 2020, arXiv:2006.16236, eqs. (4)-(7):
//   V'_i = phi(Q_i)^T sum_j phi(K_j) V_j^T / (phi(Q_i)^T sum_j phi(K_j)),  phi(x) = elu(x) + 1
// causal (eq. (8): sums over j <= i) and non-causal; the causal form is an RNN (eqs. (16)-(20))
// with state S_i = S_{i-1} + phi(K_i) V_i^T, Z_i = Z_{i-1} + phi(K_i). Heads and W_Q, W_K,
// W_V, W_O as in multi-head attention (the official fast-transformers code: eps 1e-6).
//
// Shape contract: x [B, N, C] -> [B, N, C]; C % heads == 0 unless head_dim is given.
#pragma once

#include "blocks/attention/parts/output.h"
#include "blocks/attention/parts/projection.h"
#include "blocks/common/linear_mixer.h"

namespace blocklab {

struct EluLinearOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(std::int64_t, head_dim) = 0;  // width d of each head (default 0 = dim / heads)
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(double, proj_drop) = 0.0;
  TORCH_ARG(double, eps) = 1e-6;
  TORCH_ARG(std::string, form) = "chunked";
  TORCH_ARG(std::int64_t, chunk) = 64;
};

class EluLinearImpl : public LinearMixerImpl {
 public:
  static constexpr const char* kKey = "linear/elu";
  EluLinearImpl(std::int64_t dim, const EluLinearOptions& options = {});

 protected:
  LinearTerms terms(const torch::Tensor& x, const MixerContext& ctx) override;
  torch::Tensor output(const torch::Tensor& o, const torch::Tensor& x) override;
  StateDims state_dims() const override;

 private:
  QkvProjection projection_;
  OutputProjection output_;
};
TORCH_MODULE(EluLinear);

const OptionsSchema<EluLinearOptions>& elu_linear_schema();

}  // namespace blocklab
