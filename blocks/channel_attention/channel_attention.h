// Channel attention: a registry kind of its own (`blocklab list channel-attention`), modules that
// reweight (or, for the CAB and DaViT entries, transform) the channels of a feature map, used
// inside convolutional blocks (block resnet's `attention`) and on the token grid of any stage.
//
// Shape contract: a feature map x [B, C, H, W] -> [B, C, H, W]. On tokens, attend_grid applies
// one to the body tokens of an H x W grid [B, P + H*W, C] and leaves the P prefix tokens alone.
// What a module computes per channel (and, for ELA and ULSAM, per position) is in its file; the
// gates it applies are returned by its own `gates` accessor for tests and analysis.
#pragma once

#include <torch/torch.h>

#include "blocks/interfaces.h"

namespace blocklab {

struct ChannelAttentionArgs {
  std::int64_t channels = 0;  // C of the feature maps it will see
};

class ChannelAttentionImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;  // [B, C, H, W] -> [B, C, H, W]
};
using ChannelAttention = std::shared_ptr<ChannelAttentionImpl>;
using ChannelAttentionRegistry = Registry<ChannelAttention, const ChannelAttentionArgs&>;
ChannelAttentionRegistry& channel_attention_registry();

// `attention` on the grid tokens of x [B, P + H*W, C] (ctx's grid and prefix), prefix tokens kept;
// refuses a causal context (it pools over the whole grid).
torch::Tensor attend_grid(ChannelAttentionImpl& attention, const torch::Tensor& x, const MixerContext& ctx,
                          const char* who);

// The global average pool of x [B, C, H, W] -> [B, C] (the squeeze of SE, ECA, CAB).
inline torch::Tensor global_average(const torch::Tensor& x) { return x.mean({2, 3}); }

// x [B, C, H, W] scaled by per-channel gates [B, C].
inline torch::Tensor scale_channels(const torch::Tensor& x, const torch::Tensor& gates) {
  return x * gates.unsqueeze(-1).unsqueeze(-1);
}

}  // namespace blocklab
