#include "blocks/channel_attention/davit.h"

#include "blocks/common/grid_image.h"

namespace blocklab {

DavitChannelMapImpl::DavitChannelMapImpl(DavitChannelAttention a) {
  attention = register_module("attention", std::move(a));
}

torch::Tensor DavitChannelMapImpl::forward(const torch::Tensor& x) {
  const auto tokens = image_to_grid_tokens(x);  // [B, H W, C]
  return grid_tokens_to_image(attention->forward(tokens, MixerContext{}), x.size(2), x.size(3));
}

namespace {

BLOCKLAB_REGISTER(channel_attention_registry(),
                  BLOCKLAB_ENTRY(DavitChannelMapImpl::kKey)
                      .summary("DaViT's channel group attention (attention/davit-channel) on a feature map: the "
                               "positions are the tokens of its per-group d x d channel attention")
                      .paper("DaViT: Dual Attention Vision Transformers (Ding et al., 2022), arXiv:2204.03645")
                      .equation("per group i over the H W positions: A_i = softmax(k_i^T v_i / sqrt(d)), o_i = q_i "
                                "A_i^T; out = [o_i] W_proj")
                      .schema(davit_channel_schema().schema())
                      .example("{heads: 4}"),
                  [](const ConfigNode& params, const ChannelAttentionArgs& args) -> ChannelAttention {
                    return std::make_shared<DavitChannelMapImpl>(make_davit_channel_attention(params, args.channels));
                  });

}  // namespace
}  // namespace blocklab
