// attention/davit-channel: DaViT's channel group attention. The tokens of the attention are the
// channels: each of h groups of d = C / h channels forms a d x d attention over its channels from
// sums over every token, which then mixes the channels of each token. Tokens interact only
// through that global d x d map: the cost is linear in N (O(N d^2) per group), no N x N exists.
//
// Paper: "DaViT: Dual Attention Vision Transformers", Ding et al. 2022, ECCV, arXiv:2204.03645,
// §3.2 ("Channel group attention"); read against dingmyu/davit timm/models/davit.py
// (ChannelAttention) and timm 1.0's timm.models.davit (ChannelAttention, ChannelAttentionV2).
//   [q, k, v] = x W_qkv (+ b), split into h groups of d channels: q_i, k_i, v_i [N, d]
//   roles official (the official code, timm's ChannelAttention; default):
//     A_i = softmax_row(s k_i^T v_i)   [d, d],   o_i = q_i A_i^T
//   roles paper (§3.2: A_group = softmax(Q_i^T K_i / sqrt(C_g)) V_i^T, transposed back; timm's
//   ChannelAttentionV2, Florence-2's DaViT):
//     A_i = softmax_row(s q_i^T k_i)   [d, d],   o_i = v_i A_i^T
//   s = d^-1/2 (scale head: the paper's 1/sqrt(C_g) and both official codes) or N^-1/2 (scale
//   tokens: ChannelAttentionV2's dynamic_scale); out = [o_1 .. o_h] W_proj + b_proj.
// The paper's formula and the official code differ only in which projection plays which role
// (the same qkv Linear, rows permuted), so `roles: official` loads timm/official DaViT weights.
//
// Prefix tokens (class, registers) are ordinary tokens: they enter the sums over tokens and are
// mixed like the others; no grid is needed (the mixer has no spatial structure). Not causal (the
// map sums over every token; the paper has no causal form). Its attention maps are over channels,
// not tokens, so it records nothing to the probe (capabilities: weights none); channel_maps()
// returns them.
//
// Shape contract: x [B, N, C] -> [B, N, C], heads divides C.
#pragma once

#include <string>

#include "blocks/common/options.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct DavitChannelOptions {
  TORCH_ARG(std::int64_t, heads) = 8;          // channel groups h (d = C / h channels each)
  TORCH_ARG(bool, qkv_bias) = true;            // bias of the qkv Linear (DaViT's models: true)
  TORCH_ARG(std::string, roles) = "official";  // official: softmax(k^T v) applied to q | paper: softmax(q^T k) to v
  TORCH_ARG(std::string, scale) = "head";      // head: d^-1/2 | tokens: N^-1/2 (ChannelAttentionV2)
};

class DavitChannelAttentionImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "attention/davit-channel";
  DavitChannelAttentionImpl(std::int64_t dim, const DavitChannelOptions& options);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override { return {}; }
  const DavitChannelOptions& options() const { return options_; }

  // The channel attention maps A [B, h, d, d] (rows sum to 1) of x [B, N, C].
  torch::Tensor channel_maps(const torch::Tensor& x);

  torch::nn::Linear qkv{nullptr};   // C -> 3C, rows q | k | v, groups contiguous in each
  torch::nn::Linear proj{nullptr};  // C -> C, with bias

 private:
  // x -> q, k, v [B, h, N, d].
  std::vector<torch::Tensor> project(const torch::Tensor& x);
  // The maps from the projections, and the side they are applied to (q for official, v for paper).
  std::pair<torch::Tensor, torch::Tensor> maps_and_values(const std::vector<torch::Tensor>& qkv_heads);

  DavitChannelOptions options_;
  std::int64_t dim_;
};
TORCH_MODULE(DavitChannelAttention);

const OptionsSchema<DavitChannelOptions>& davit_channel_schema();
// Validated options (heads divides dim) and the module: the mixer's factory and channel/davit's.
DavitChannelAttention make_davit_channel_attention(const ConfigNode& params, std::int64_t dim);

}  // namespace blocklab
