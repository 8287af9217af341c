// channel/davit: DaViT's channel group attention (attention/davit-channel, its math and options)
// on a feature map: the H W positions are its tokens, so in a convolutional stage it mixes the
// channels of every position through one d x d attention per channel group from sums over the
// whole map (Ding et al. 2022, arXiv:2204.03645, §3.2).
#pragma once

#include "blocks/attention/davit_channel.h"
#include "blocks/channel_attention/channel_attention.h"

namespace blocklab {

class DavitChannelMapImpl : public ChannelAttentionImpl {
 public:
  static constexpr const char* kKey = "channel/davit";
  explicit DavitChannelMapImpl(DavitChannelAttention attention);
  torch::Tensor forward(const torch::Tensor& x) override;

  DavitChannelAttention attention{nullptr};
};
TORCH_MODULE(DavitChannelMap);

}  // namespace blocklab
