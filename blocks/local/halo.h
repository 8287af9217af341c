// local/halo: HaloNet's blocked local self-attention: the grid cut into block x block query
// blocks, each attending to the (block + 2 halo)^2 window around it on the zero-padded grid,
// with factorised relative logits.
//
// Paper: "Scaling Local Self-Attention for Parameter Efficient Visual Backbones", Vaswani et al.
// 2021, arXiv:2103.12731, §2.2 (no official code; timm's HaloAttn is the reference in practice,
// catalog_000_001 0-19):
//   s_ij = q_i . k_j / sqrt(d) + q_i . r^h_{dy} + q_i . r^w_{dx},   o_i = sum_j softmax_j(s_ij) v_j
// over the window of i's block, (dy, dx) the position of key j in the window relative to query i
// in its block, r^h, r^w [2 W - 1, d] (W = block + 2 halo, trunc-normal with std d^-1/2). The
// padding keys are zeros and stay in the softmax (their logit is the relative term only), as
// in timm. q, k, v without bias (timm's qkv_bias = False).
// A grid side below the block makes the block that side; the grid must be a multiple of it.
//
// Shape contract: x [B, N, C] -> [B, N, C]; N = prefix + grid tokens (prefix tokens are global
// tokens: local_core.h, with_prefix; they see the real tokens only). Not causal.
#pragma once

#include "blocks/local/local_attention.h"

namespace blocklab {

struct HaloAttentionOptions : MultiHeadOptions<HaloAttentionOptions> {
  HaloAttentionOptions() { qkv_bias(false); }
  TORCH_ARG(std::int64_t, block) = 8;  // query block side b (HaloNet: 8)
  TORCH_ARG(std::int64_t, halo) = 3;   // halo h around each block (HaloNet: 3)
  TORCH_ARG(bool, rel_pos) = true;     // the factorised relative logits
};

class HaloAttentionImpl : public LocalAttentionImpl {
 public:
  static constexpr const char* kKey = "local/halo";
  HaloAttentionImpl(std::int64_t dim, const HaloAttentionOptions& options, const MultiHeadConfig& config);
  const HaloAttentionOptions& options() const { return options_; }

  torch::Tensor height_rel{nullptr}, width_rel{nullptr};  // [2 W - 1, d]: offset o at row o + W - 1

  // The probe's map covers the tokens' keys only: the zero padding keys also take weight, so
  // rows near the border sum to less than 1 (unnormalised weights).
  MixerCapabilities core_capabilities() const override;

 protected:
  LocalPattern body_pattern(std::int64_t height, std::int64_t width, bool causal) const override;
  std::vector<torch::Tensor> body_biases(const LocalPattern& body, std::int64_t height, std::int64_t width, bool causal,
                                         const torch::Tensor& q_body) override;
  torch::Tensor body_keys(const torch::Tensor& body, std::int64_t height, std::int64_t width) const override;

 private:
  std::int64_t fitted_block(std::int64_t height, std::int64_t width) const;

  HaloAttentionOptions options_;
};
TORCH_MODULE(HaloAttention);

const OptionsSchema<HaloAttentionOptions>& halo_attention_schema();

}  // namespace blocklab
