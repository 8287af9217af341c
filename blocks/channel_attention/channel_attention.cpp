#include "blocks/channel_attention/channel_attention.h"

#include "blocks/common/grid_mixer.h"

namespace blocklab {

ChannelAttentionRegistry& channel_attention_registry() {
  static ChannelAttentionRegistry registry(
      "channel-attention", "channel attention on feature maps [B,C,H,W] or grid tokens (SE, ECA, ELA, ULSAM, ...)");
  return registry;
}

torch::Tensor attend_grid(ChannelAttentionImpl& attention, const torch::Tensor& x, const MixerContext& ctx,
                          const char* who) {
  const auto image = grid_body_image(x, ctx, who);  // refuses causal use: it pools over the whole grid
  return keep_prefix_tokens(x, ctx.prefix_tokens, image_to_grid_tokens(attention.forward(image)));
}

}  // namespace blocklab
