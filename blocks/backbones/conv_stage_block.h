// block/van and block/cas-vit: the stage blocks of VAN and CAS-ViT, MetaFormers on the patch grid
// with BatchNorm in place of LayerNorm and a convolutional MLP, around any grid token mixer
// (conv/lka in VAN, mixer/cas-additive in CAS-ViT; the config's mixer). One class, two presets.
//
// VAN: "Visual Attention Network" (Guo et al., CVM 2023, arXiv:2202.09741, §3.3), read against
// VAN-Classification models/van.py (Block, Mlp):
//   x = x + drop_path(g1 ⊙ mixer(BN(x)));  x = x + drop_path(g2 ⊙ MLP(BN(x)))
//   MLP = Conv1x1(C -> rC) -> DWConv3x3 -> GELU -> Conv1x1(rC -> C)   (all with bias)
//   LayerScale g1, g2 start at 0.01.
// CAS-ViT: "CAS-ViT: Convolutional Additive Self-attention Vision Transformers for Efficient
// Mobile Applications" (Zhang et al., 2024, arXiv:2408.03703, §3), read against
// classification/model/rcvit.py (AdditiveBlock, LocalIntegration, Mlp):
//   x = x + LI(x),  LI = Conv1x1 -> BN -> DWConv3x3 -> GELU -> Conv1x1   (width C, with bias)
//   x = x + drop_path(mixer(BN(x)));  x = x + drop_path(MLP(BN(x))),  MLP = Conv1x1 -> GELU -> Conv1x1
//   no LayerScale.
// The MLP is part of the block (its depth-wise convolution needs the grid), so the config's
// channel mixer is not used. The mixer sees the grid tokens only; prefix (class) tokens pass
// through unchanged. Not causal (it refuses ctx.causal).
//
// Shape contract: x [B, P + H*W, C] with ctx's H x W grid -> the same.
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct ConvStageBlockOptions {
  TORCH_ARG(double, mlp_ratio) = 4.0;          // MLP hidden width r C (VAN-B0: 8, 8, 4, 4 by stage; CAS-ViT: 4)
  TORCH_ARG(bool, mlp_dwconv) = false;         // a depth-wise 3 x 3 conv inside the MLP (VAN: true)
  TORCH_ARG(bool, local_integration) = false;  // CAS-ViT's local integration unit first (CAS-ViT: true)
  TORCH_ARG(double, layer_scale) = 0.0;        // LayerScale init (VAN: 0.01; 0 = off)
};
// The presets: block/van and block/cas-vit differ only in their defaults.
struct VanBlockOptions : ConvStageBlockOptions {
  VanBlockOptions() {
    mlp_dwconv(true);
    layer_scale(0.01);
  }
};
struct CasVitBlockOptions : ConvStageBlockOptions {
  CasVitBlockOptions() { local_integration(true); }
};

class ConvStageBlockImpl : public BlockImpl {
 public:
  // `key`: the registry key it was built as (block/van or block/cas-vit), for messages.
  ConvStageBlockImpl(const BlockArgs& args, const ConvStageBlockOptions& options, std::string key = "block/van");
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;

  torch::nn::Sequential local_integration{nullptr};  // null unless local_integration
  torch::nn::BatchNorm2d norm1{nullptr}, norm2{nullptr};
  TokenMixer mixer;
  torch::nn::Sequential mlp{nullptr};
  torch::Tensor gamma1, gamma2;  // LayerScale [C, 1, 1]; undefined when layer_scale == 0

 private:
  // x + drop_path(gamma ⊙ branch) on images [B, C, H, W].
  torch::Tensor residual(const torch::Tensor& x, torch::Tensor branch, const torch::Tensor& gamma) const;
  double drop_path_;
  std::string key_;
};
TORCH_MODULE(ConvStageBlock);

}  // namespace blocklab
