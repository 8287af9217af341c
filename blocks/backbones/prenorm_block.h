// prenorm: the pre-norm residual block of ViT / GPT-2.
//
// Papers: "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2020, arXiv:2010.11929, eq. 2-3)
// after "On Layer Normalization in the Transformer Architecture" (Xiong et al., 2020,
// arXiv:2002.04745); LayerScale from "Going deeper with Image Transformers" (CaiT, Touvron
// et al., 2021, arXiv:2103.17239, §2.2); stochastic depth from "Deep Networks with Stochastic
// Depth" (Huang et al., 2016, arXiv:1603.09382):
//   x = x + drop_path(gamma_1 * mixer(LN(x)))
//   x = x + drop_path(gamma_2 * channel(LN(x)))
// gamma_i are per-channel LayerScale vectors initialised to layer_scale (absent when 0).
// attention (optional): a channel attention (blocks/channel_attention/) on the token mixer's
// output over the grid tokens, before the residual addition (where SE-Net puts it in a residual
// branch): x = x + drop_path(gamma_1 * attention(mixer(LN(x)))). It pools over the whole grid, so
// a block with one has no recurrent form.
// norm: layernorm (default; eps 1e-6 as in the reference ViT code), srms (TransNormerLLM's
// SRMSNorm without parameters, Qin et al. 2023, arXiv:2307.14995, §3.4; common/srms_norm.h),
// repbn or prepbn (SLAB's re-parameterisable BatchNorm and its progressive schedule from LN over
// norm_steps training forwards, Guo et al. 2024, arXiv:2405.11582; common/rep_batch_norm.h).
// depth_scale: inv_sqrt is LayerNorm Scaling ("The Curse of Depth in Large Language Models", Sun
// et al. 2025, arXiv:2502.05795): both norms' outputs are scaled by 1/sqrt(l) in the block
// of 1-based depth l = layer + 1, so deep pre-norm blocks stop collapsing to the identity; no
// parameters. It needs the layer index, so it applies to blocks built from BlockArgs.
//
// Shape contract: x [B, N, C] -> [B, N, C].
#pragma once

#include "blocks/channel_attention/channel_attention.h"
#include "blocks/common/rep_batch_norm.h"
#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct PrenormBlockOptions {
  TORCH_ARG(double, layer_scale) = 0.0;             // LayerScale init value (default 0 = no LayerScale)
  TORCH_ARG(std::string, norm) = "layernorm";       // layernorm | srms | repbn | prepbn
  TORCH_ARG(std::int64_t, norm_steps) = 60000;      // prepbn: training forwards from LN to RepBN
  TORCH_ARG(std::string, depth_scale) = "none";     // none | inv_sqrt (LayerNorm Scaling; default none)
  TORCH_ARG(ConfigNode, attention) = ConfigNode();  // channel attention on the mixer's output (default none)
};

class PrenormBlockImpl : public BlockImpl {
 public:
  // From parts built elsewhere; `drop_path` is this block's stochastic depth rate.
  PrenormBlockImpl(std::int64_t dim, TokenMixer mixer, ChannelMixer channel, double drop_path,
                   const PrenormBlockOptions& options = {});
  // Builds the mixer and channel mixer from args.mixer / args.channel through the registries.
  PrenormBlockImpl(const BlockArgs& args, const PrenormBlockOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // The recurrent form, when the mixer has one: the same two residual branches on one token,
  //   y_t = x_t + g1 * mixer.step(LN(x_t)),  out_t = y_t + g2 * channel(LN(y_t)).
  bool recurrent() const override { return mixer->capabilities().recurrent && !attention; }
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;
  double drop_path() const { return drop_path_; }

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};               // norm: layernorm
  RepBatchNorm rep_norm1{nullptr}, rep_norm2{nullptr};               // norm: repbn (registered as norm1, norm2)
  ProgressiveRepBatchNorm prep_norm1{nullptr}, prep_norm2{nullptr};  // norm: prepbn (the same)
  TokenMixer mixer;
  ChannelMixer channel;
  torch::Tensor gamma1, gamma2;  // LayerScale [C]; undefined when layer_scale == 0
  ChannelAttention attention;    // on the mixer's output; null when none

 private:
  // The block's first (which = 1) or second norm of x; SRMSNorm when no norm module is set.
  torch::Tensor normed(int which, const torch::Tensor& x);
  // x + drop_path(gamma * branch) (gamma when LayerScale is on).
  torch::Tensor residual(const torch::Tensor& x, torch::Tensor branch, const torch::Tensor& gamma) const;
  double drop_path_;
  double norm_scale_ = 1.0;  // depth_scale: 1/sqrt(layer + 1) with inv_sqrt
};
TORCH_MODULE(PrenormBlock);

const OptionsSchema<PrenormBlockOptions>& prenorm_block_schema();

}  // namespace blocklab
