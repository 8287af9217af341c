// sparse/biformer: bi-level routing attention (BRA). The grid is cut into S x S regions; a
// region-level affinity routes each region to the top-k regions, and its tokens attend to the
// tokens of those regions only; plus a local positional term (LePE) on the values.
//
// Paper: "BiFormer: Vision Transformer with Bi-Level Routing Attention", Zhu et al. 2023,
// arXiv:2303.08810, §3.2 (eq. (1)-(4)); read against rayleizhu/BiFormer ops/bra_legacy.py
// (catalog_002 B-54).
//   Q^r, K^r = mean over each region of q, k        [B, S^2, C] (all heads together)
//   A^r      = Q^r (K^r)^T scale,  I^r = topk_k(A^r) (no gradient, shared by the heads)
//   O_i      = softmax(q_i K_g^T scale) V_g + LePE(V)_i,  K_g, V_g the tokens of I^r(region(i))
// scale = C^{-1/2} with the full width C (qk_dim), not the head width, as the code does
// (qk_scale: head uses d^{-1/2}). LePE is a depth-wise conv (kernel 5 in BiFormer's models) on v
// laid out as the image.
// As BiFormer's auto_pad: a grid that is not a multiple of S is zero-padded at the bottom and
// right before the projection and cropped after; S is at most the grid's side. Prefix tokens
// (class, registers) are global: they attend to every token and every region sees them.
//
// Shape contract: x [B, N, C] -> [B, N, C]; N = prefix + grid tokens. Not causal.
#pragma once

#include <string>

#include "blocks/attention/parts/routed_core.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

struct BiLevelRoutingOptions : MultiHeadOptions<BiLevelRoutingOptions> {
  TORCH_ARG(std::int64_t, regions) = 7;      // S: regions per side (BiFormer: n_win = 7)
  TORCH_ARG(std::int64_t, topk) = 4;         // regions each region attends to (BiFormer-T stage 3: 4)
  TORCH_ARG(std::int64_t, lepe_kernel) = 5;  // LePE depth-wise kernel (0: none)
  TORCH_ARG(std::string, qk_scale) = "dim";  // dim: C^{-1/2} (the code); head: d^{-1/2}
};

class BiLevelRoutingAttentionImpl : public MultiHeadAttentionImpl {
 public:
  static constexpr const char* kKey = "sparse/biformer";
  BiLevelRoutingAttentionImpl(std::int64_t dim, const BiLevelRoutingOptions& options, const MultiHeadConfig& config);
  const BiLevelRoutingOptions& options() const { return options_; }

  // Pads the grid to a multiple of the regions, attends, crops.
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const MixerContext& ctx) override;
  MixerCapabilities core_capabilities() const override;
  MixerCapabilities capabilities() const override;

  // The routed groups for queries and keys q, k [B, h, N, d] on the (padded) grid of ctx: the
  // regions (first) and, with prefix tokens, the prefix queries over every key (second).
  std::vector<RoutedGroups> groups(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx) const;
  double routing_scale() const { return routing_scale_; }

  torch::nn::Conv2d lepe{nullptr};  // depth-wise, C -> C

 private:
  std::int64_t regions_per_side(std::int64_t extent) const { return std::min(options_.regions(), extent); }

  BiLevelRoutingOptions options_;
  double routing_scale_;
  double attn_drop_;
};
TORCH_MODULE(BiLevelRoutingAttention);

const OptionsSchema<BiLevelRoutingOptions>& bi_level_routing_schema();

}  // namespace blocklab
