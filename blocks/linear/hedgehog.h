// linear/hedgehog: linear attention with learnable spiky feature maps (Hedgehog).
//
// Paper: "The Hedgehog & the Porcupine: Expressive Linear Attentions with Softmax Mimicry",
// Zhang et al., 2024, arXiv:2402.04347 (§4); feature maps as in the authors' later code
// (HazyResearch/lolcats feature_map.py) and flash-linear-attention's HedgehogFeatureMap
// (catalog_002 B-44). Per head, separate maps for q and k, z = x W + b (W: d x d', identity
// init as fla):
//   exp           phi(x) = [exp(z) || exp(-z)]                   (the paper's form)
//   softmax_dim   phi(x) = [softmax(z) || softmax(-z)]           (default; numerically stable)
//   joint_softmax phi(x) = softmax([z || -z])                    (one softmax over 2 d')
// then normalised linear attention o_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j),
// causal or not, recurrent with a 2d' x d state.
// Attention distillation (distill_weight > 0): in training, the mixer adds
//   distill_weight * mean_{b,h,i} ( -sum_j A^soft_ij log A^hh_ij )
// to the loss (blocks/auxiliary_loss.h), A^soft = softmax(q k^T / sqrt(d)) on the same q, k
// (the teacher, no gradient; causal when the call is), A^hh the normalised Hedgehog weights:
// the paper's softmax-mimicry objective, O(N^2) while it is on.
//
// Shape contract: x [B, N, C] -> [B, N, C]; C % heads == 0.
#pragma once

#include "blocks/attention/parts/output.h"
#include "blocks/attention/parts/projection.h"
#include "blocks/auxiliary_loss.h"
#include "blocks/common/linear_mixer.h"

namespace blocklab {

struct HedgehogOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(std::int64_t, feature_dim) = 0;  // d' (0 = the head width d)
  TORCH_ARG(std::string, feature_map) = "softmax_dim";
  TORCH_ARG(double, distill_weight) = 0.0;
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(double, proj_drop) = 0.0;
  TORCH_ARG(double, eps) = 1e-6;
  TORCH_ARG(std::string, form) = "chunked";
  TORCH_ARG(std::int64_t, chunk) = 64;
};

class HedgehogImpl : public LinearMixerImpl, public AuxiliaryLoss {
 public:
  static constexpr const char* kKey = "linear/hedgehog";
  HedgehogImpl(std::int64_t dim, const HedgehogOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  torch::Tensor take_auxiliary_loss() override;

  // phi of x [B, h, N, d] with a map's weight [h, d, d'] and bias [h, d'] -> [B, h, N, 2d'].
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) const;
  // -sum_j A^soft log A^hh averaged over rows, from raw q, k [B, h, N, d].
  torch::Tensor distillation_loss(const torch::Tensor& q, const torch::Tensor& k, bool causal) const;

  torch::Tensor q_map_weight, q_map_bias, k_map_weight, k_map_bias;

 protected:
  LinearTerms terms(const torch::Tensor& x, const MixerContext& ctx) override;
  torch::Tensor output(const torch::Tensor& o, const torch::Tensor& x) override;
  StateDims state_dims() const override;

 private:
  HedgehogOptions options_;
  QkvProjection projection_;
  OutputProjection output_;
  std::int64_t feature_dim_;
  torch::Tensor pending_loss_;
};
TORCH_MODULE(Hedgehog);

const OptionsSchema<HedgehogOptions>& hedgehog_schema();

}  // namespace blocklab
