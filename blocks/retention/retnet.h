// retention/retnet: multi-scale retention (RetNet).
//
// Paper: "Retentive Network: A Successor to Transformer for Large Language Models", Sun et al.,
// 2023, arXiv:2307.08621, eqs. (5)-(8); official code microsoft/torchscale (retnet).
//   Q = rot(X W_Q), K = rot(X W_K) / sqrt(d_k), V = X W_V   (rot: eq. (3)'s e^{i n theta}, with
//                            torchscale's theta_i = 10000^(-i/(d/2-1)) on channel pairs (2i, 2i+1))
//   Retention(X) = (Q K^T ⊙ D) V,  D_nm = gamma^(n - m) for n >= m, else 0      (parallel, eq. (5))
//   S_n = gamma S_{n-1} + K_n^T V_n,  Retention(X_n) = Q_n S_n                  (recurrent, eq. (6))
//   chunkwise: the same sum by chunks (eq. (7)), here the linear core's chunked form
//   gamma_h = 1 - 2^(-5-h), h = 0..H-1 (one decay per head, "multi-scale")
//   Y = GroupNorm_H(Concat(head_1..head_H)),  MSR(X) = (swish(X W_G) ⊙ Y) W_O     (eq. (8))
//   norm: rms replaces the GroupNorm by torchscale's current one, an RMSNorm of each head
//   without scale (no mean subtracted, no parameters); the differential test uses it.
// The value and gate width is value_factor x C (the paper's 2d). No normaliser: retention is
// unnormalised; the GroupNorm scales each head (torchscale's extra rescalings of the parallel
// form cancel in the GroupNorm, which normalises each head per token, so they are left out).
// Causal only.
//
// Shape contract: x [B, N, C] -> [B, N, C]; C % heads == 0, the head width even (rotary).
#pragma once

#include <vector>

#include "blocks/common/linear_mixer.h"

namespace blocklab {

struct RetNetOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(double, value_factor) = 2.0;
  TORCH_ARG(std::vector<double>, gammas) = {};  // empty: 1 - 2^(-5-h)
  TORCH_ARG(bool, rotary) = true;
  TORCH_ARG(std::string, norm) = "group";  // group (eq. (8)) | rms (torchscale)
  TORCH_ARG(double, norm_eps) = 1e-6;
  TORCH_ARG(std::string, form) = "chunked";
  TORCH_ARG(std::int64_t, chunk) = 64;
};

class RetNetImpl : public LinearMixerImpl {
 public:
  static constexpr const char* kKey = "retention/retnet";
  RetNetImpl(std::int64_t dim, const RetNetOptions& options = {});

  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, g{nullptr}, out{nullptr};
  torch::nn::GroupNorm norm{nullptr};  // norm: group only

 protected:
  torch::Tensor log_decay() const override { return log_gammas_; }
  LinearTerms terms(const torch::Tensor& x, const MixerContext& ctx) override;
  torch::Tensor output(const torch::Tensor& o, const torch::Tensor& x) override;
  StateDims state_dims() const override { return {heads_, key_dim_, value_dim_}; }

 private:
  std::int64_t heads_, key_dim_, value_dim_;
  bool rotary_;
  double norm_eps_;
  torch::Tensor log_gammas_;  // [h] buffer
};
TORCH_MODULE(RetNet);

const OptionsSchema<RetNetOptions>& retnet_schema();

}  // namespace blocklab
