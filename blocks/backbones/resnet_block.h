// resnet: ResNet's basic block on the patch grid, with an optional channel attention on the
// residual branch, where SE-Net, ECA-Net and ULSAM put theirs (after the branch's last BatchNorm,
// before the addition); the block of the small CNN (model=resnet_small) that hosts the channel
// attention table. A layer of any stack with a grid: `block: {type: resnet, attention: ...}`.
//
// Papers: "Deep Residual Learning for Image Recognition" (He et al. 2016, arXiv:1512.03385, §3.3,
// the basic block of ResNet-18/34); the attention's place from "Squeeze-and-Excitation Networks"
// (Hu et al. 2018, arXiv:1709.01507, Fig. 3) and ECA-Net (arXiv:1910.03151, Fig. 2):
//   h = ReLU(BN(Conv3x3(x)));  h = BN(Conv3x3(h));  h = attention(h)  (when set)
//   out = ReLU(x + drop_path(h))
// Convolutions without bias, BatchNorm after each. zero_init_last (timm's ResNet default, after
// Goyal et al. 2017, arXiv:1706.02677): the last BN's scale starts at 0, every block at identity.
// Prefix (class) tokens pass through unchanged; not causal (it refuses ctx.causal).
//
// Shape contract: x [B, P + H*W, C] with ctx's H x W grid -> the same.
#pragma once

#include "blocks/channel_attention/channel_attention.h"
#include "registry/options_schema.h"

namespace blocklab {

struct ResNetBlockOptions {
  TORCH_ARG(std::int64_t, kernel) = 3;              // convolution kernel, odd (default 3)
  TORCH_ARG(bool, zero_init_last) = true;           // the last BN's scale starts at 0 (default true)
  TORCH_ARG(ConfigNode, attention) = ConfigNode();  // channel attention on the branch (default none)
};

class ResNetBlockImpl : public BlockImpl {
 public:
  static constexpr const char* kKey = "resnet";
  ResNetBlockImpl(std::int64_t dim, double drop_path, const ResNetBlockOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d norm1{nullptr}, norm2{nullptr};
  ChannelAttention attention;  // null when none

 private:
  torch::Tensor branch(const torch::Tensor& image);  // [B, C, H, W] -> [B, C, H, W]
  double drop_path_;
};
TORCH_MODULE(ResNetBlock);

}  // namespace blocklab
