// linear/slab: SLAB's simplified linear attention (SLA).
//
// Paper: "SLAB: Efficient Transformers with Simplified Linear Attention and Progressive
// Re-parameterized Batch Normalization", Guo et al., 2024, arXiv:2405.11582, §3.2; official code
// xinghaochen/SLAB slab_swin.py (SimplifiedLinearAttention; catalog_003_004 D26/C22):
//   q, k, v = x W_qkv + b;  k <- k + P (P [N, C] learnable, zero init);  q, k <- ReLU(q), ReLU(k)
//   o_i = q_i (sum_j k_j^T v_j) / (q_i . sum_j k_j + 1e-6)          per head (non-causal)
//   o <- o + DWC(v)   a depthwise k x k convolution over the token grid, the same d-channel
//                     filter for every head (grid tokens only; prefix tokens get none)
//   out = Concat(heads) W_o + b
// A row whose ReLU(q_i) is all zero gets exactly 0 from the attention (the paper's kernel has
// no floor). Needs the grid (the convolution); not causal. The norm of the SLAB block is the
// prenorm option norm: prepbn (blocks/common/rep_batch_norm.h).
//
// Shape contract: x [B, N, C] -> [B, N, C]; C % heads == 0; N <= the model's longest sequence.
#pragma once

#include "blocks/attention/parts/output.h"
#include "blocks/attention/parts/projection.h"
#include "blocks/common/linear_mixer.h"

namespace blocklab {

struct SlabOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(std::int64_t, kernel) = 5;  // depthwise convolution on v (0 = none)
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(double, proj_drop) = 0.0;
  TORCH_ARG(double, eps) = 1e-6;
  TORCH_ARG(std::string, form) = "chunked";
  TORCH_ARG(std::int64_t, chunk) = 64;
};

class SlabImpl : public LinearMixerImpl {
 public:
  static constexpr const char* kKey = "linear/slab";
  // `max_tokens`: the longest sequence (rows of the key position table P).
  SlabImpl(std::int64_t dim, std::int64_t max_tokens, const SlabOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // Not causal, not recurrent, needs the grid; normalised weights to the probe.
  MixerCapabilities capabilities() const override;

  torch::Tensor key_positions;     // P [max_tokens, C]
  torch::nn::Conv2d dwc{nullptr};  // d -> d, groups d

 protected:
  LinearTerms terms(const torch::Tensor& x, const MixerContext& ctx) override;
  torch::Tensor output(const torch::Tensor& o, const torch::Tensor& x) override;
  StateDims state_dims() const override;

 private:
  // DWC(v) on the grid tokens of v [B, h, N, d]; zeros on the prefix tokens.
  torch::Tensor local_term(const torch::Tensor& v, const MixerContext& ctx);

  QkvProjection projection_;
  OutputProjection output_;
};
TORCH_MODULE(Slab);

const OptionsSchema<SlabOptions>& slab_schema();

}  // namespace blocklab
