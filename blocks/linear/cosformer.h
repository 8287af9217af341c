// linear/cosformer: ReLU features with cos-based re-weighting (cosFormer).
//
// Paper: "cosFormer: Rethinking Softmax in Attention", Qin et al., 2022, arXiv:2202.08791,
// eqs. (9)-(11); official code OpenNLPLab/cosFormer (catalog_002 B-23):
//   s(q_i, k_j) = phi(q_i) . phi(k_j) cos(pi/2 (i - j) / M),  phi = ReLU
//   decomposed (eq. (10)): cos(a - b) = cos a cos b + sin a sin b, so with
//     q_i' = [phi(q_i) cos(pi i / 2M) || phi(q_i) sin(pi i / 2M)]  (the same for k_j)
//   s = q_i' . k_j' and O_i = sum_j s_ij v_j / sum_j s_ij: linear attention on features of
//   width 2d, causal (sums over j <= i) or not.
// M: the official code takes the current sequence length; here M is fixed (max_length, by
// default the longest sequence the model sees), so that the recurrent form for generation
// equals the forward and no weight depends on how many tokens follow. Positions must stay
// below M (then |i - j| < M and every cosine is positive).
//
// Shape contract: x [B, N, C] -> [B, N, C]; C % heads == 0; N <= max_length.
#pragma once

#include "blocks/attention/parts/output.h"
#include "blocks/attention/parts/projection.h"
#include "blocks/common/linear_mixer.h"

namespace blocklab {

struct CosformerOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(double, proj_drop) = 0.0;
  TORCH_ARG(std::int64_t, max_length) = 0;  // M; 0: the model's longest sequence
  TORCH_ARG(double, eps) = 1e-6;
  TORCH_ARG(std::string, form) = "chunked";
  TORCH_ARG(std::int64_t, chunk) = 64;
};

class CosformerImpl : public LinearMixerImpl {
 public:
  static constexpr const char* kKey = "linear/cosformer";
  // max_length must be positive here (the registry resolves 0 to the model's longest sequence).
  CosformerImpl(std::int64_t dim, const CosformerOptions& options);

  // phi(x) re-weighted: [phi(x) cos(pi p / 2M) || phi(x) sin(pi p / 2M)] for x [B, h, N, d].
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& positions) const;

 protected:
  LinearTerms terms(const torch::Tensor& x, const MixerContext& ctx) override;
  torch::Tensor output(const torch::Tensor& o, const torch::Tensor& x) override;
  StateDims state_dims() const override;

 private:
  std::int64_t max_length_;
  QkvProjection projection_;
  OutputProjection output_;
};
TORCH_MODULE(Cosformer);

const OptionsSchema<CosformerOptions>& cosformer_schema();

}  // namespace blocklab
