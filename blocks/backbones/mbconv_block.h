// mbconv: MaxViT's MBConv block, an inverted-bottleneck convolution with squeeze-excitation on
// the patch grid, as its own residual block (a layer of a stack, chosen per layer with
// `block: {type: mbconv}`; it has no token mixer or channel mixer of its own config).
//
// Papers: "MaxViT: Multi-Axis Vision Transformer" (Tu et al. 2022, arXiv:2204.01697, §3.2: each
// MaxViT block starts with an MBConv with squeeze-excitation and pre-normalisation), after
// "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (Sandler et al. 2018,
// arXiv:1801.04381) and "Squeeze-and-Excitation Networks" (Hu et al. 2018, arXiv:1709.01507).
// Read against timm's maxxvit.py MbConvBlock (MaxViT's defaults: expansion 4 of the output width,
// SE width 1/4 of the output width with SiLU, BatchNorm, GELU):
//   h = GELU(BN(Conv1x1_{C -> eC}(BN(x))))          (pre-norm, then expansion)
//   h = GELU(BN(DWConv_kxk(h)))                       (depth-wise, padding k / 2)
//   h = h * sigmoid(W_2 SiLU(W_1 mean_{HW}(h)))       (squeeze-excitation, W_1: eC -> C / 4)
//   x = x + drop_path(Conv1x1_{eC -> C}(h))           (projection with bias)
// Prefix (class) tokens pass through unchanged: MaxViT has none, and the block only sees the grid.
//
// Shape contract: x [B, P + H*W, C] with ctx's H x W grid -> the same. Not causal (a convolution
// sees both sides): it refuses ctx.causal.
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct MBConvBlockOptions {
  TORCH_ARG(std::int64_t, expansion) = 4;  // hidden width = expansion x C (default 4)
  TORCH_ARG(std::int64_t, kernel) = 3;     // depth-wise kernel, odd (default 3)
  TORCH_ARG(double, se_ratio) = 0.25;      // squeeze-excitation width / C (default 0.25; 0: no SE)
};

class MBConvBlockImpl : public BlockImpl {
 public:
  static constexpr const char* kKey = "mbconv";
  MBConvBlockImpl(std::int64_t dim, double drop_path, const MBConvBlockOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;

  torch::nn::BatchNorm2d pre_norm{nullptr}, norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d expand{nullptr}, depthwise{nullptr}, project{nullptr};
  torch::nn::Conv2d se_reduce{nullptr}, se_expand{nullptr};  // absent when se_ratio is 0

 private:
  torch::Tensor branch(const torch::Tensor& image);  // [B, C, H, W] -> [B, C, H, W]
  double drop_path_;
};
TORCH_MODULE(MBConvBlock);

const OptionsSchema<MBConvBlockOptions>& mbconv_block_schema();

}  // namespace blocklab
