// local/neighborhood: neighborhood attention, each token attending to its kernel x kernel
// nearest neighbours (NATTEN semantics: windows shifted, not truncated, at the borders;
// dilation; causal), with NAT's relative position bias.
//
// Papers: "Neighborhood Attention Transformer", Hassani et al. 2023, arXiv:2204.07143 (§3.1,
// eq. (2)-(3)); "Dilated Neighborhood Attention Transformer", Hassani & Shi 2022,
// arXiv:2209.15001 (§3.1); the operator of SHI-Labs/NATTEN (catalog_000_001 0-27).
//   NA(x_i) = softmax_j(q_i k_{rho_j(i)}^T / sqrt(d) + B(i, rho_j(i))) v_{rho_j(i)},
// rho_j(i) the j-th of the k^2 neighbours of i (k per axis on a sequence), B a learned bias per
// head and relative offset, a (2k - 1) x (2k - 1) table (trunc-normal, std 0.02).
// On a grid or sequence smaller than the kernel, the kernel is the largest odd size that fits
// and the dilation at most extent / kernel (as DiNAT's models clamp it).
//
// Shape contract: x [B, N, C] -> [B, N, C]; prefix + grid tokens, or a plain sequence (1-D).
// Honours ctx.causal (NATTEN's causal windows: the kernel tokens up to i on each axis).
#pragma once

#include "blocks/local/local_attention.h"

namespace blocklab {

struct NeighborhoodAttentionOptions : MultiHeadOptions<NeighborhoodAttentionOptions> {
  TORCH_ARG(std::int64_t, kernel) = 7;    // neighbourhood size per axis (odd; NAT: 7)
  TORCH_ARG(std::int64_t, dilation) = 1;  // DiNAT's dilation (1: NAT)
  TORCH_ARG(bool, rel_bias) = true;       // NAT's relative position bias
};

class NeighborhoodAttentionImpl : public LocalAttentionImpl {
 public:
  static constexpr const char* kKey = "local/neighborhood";
  NeighborhoodAttentionImpl(std::int64_t dim, const NeighborhoodAttentionOptions& options,
                            const MultiHeadConfig& config);
  const NeighborhoodAttentionOptions& options() const { return options_; }

  torch::Tensor rpb{nullptr};  // [h, 2k - 1, 2k - 1], offset (dy, dx) at (dy + k - 1, dx + k - 1)

 protected:
  LocalPattern body_pattern(std::int64_t height, std::int64_t width, bool causal) const override;
  std::vector<torch::Tensor> body_biases(const LocalPattern& body, std::int64_t height, std::int64_t width, bool causal,
                                         const torch::Tensor& q_body) override;
  bool supports_causal() const override { return true; }
  bool takes_sequences() const override { return true; }

 private:
  // The kernel and dilation used on a height x width grid: the kernel that fits the smaller
  // axis of more than one token (odd unless causal), then the dilation that fits it.
  std::pair<std::int64_t, std::int64_t> fitted(std::int64_t height, std::int64_t width, bool causal) const;

  NeighborhoodAttentionOptions options_;
};
TORCH_MODULE(NeighborhoodAttention);

const OptionsSchema<NeighborhoodAttentionOptions>& neighborhood_attention_schema();

}  // namespace blocklab
