#include "blocks/attention/softmax.h"

namespace blocklab {

SoftmaxAttentionImpl::SoftmaxAttentionImpl(std::int64_t dim, const SoftmaxAttentionOptions& options)
    : SoftmaxAttentionImpl(dim, options, multi_head_config(options)) {}

SoftmaxAttentionImpl::SoftmaxAttentionImpl(std::int64_t dim, const SoftmaxAttentionOptions& options,
                                           const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options) {}

const OptionsSchema<SoftmaxAttentionOptions>& softmax_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<SoftmaxAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, fused,
                    "use a fused kernel (default true: small_attention on CPU up to 200 tokens, else SDPA); false "
                    "computes softmax(QK^T/sqrt(d))V explicitly");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(SoftmaxAttentionImpl::kKey)
                      .summary("multi-head scaled dot-product self-attention")
                      .paper("Attention Is All You Need (Vaswani et al., 2017), arXiv:1706.03762")
                      .equation("softmax(Q K^T / sqrt(d)) V per head, heads concatenated and projected by W_O")
                      .schema(softmax_attention_schema().schema())
                      .example("{heads: 2}"),
                  [](const ConfigNode& params, const MixerArgs& args) {
                    return make_attention<SoftmaxAttentionImpl>(softmax_attention_schema(), params, args);
                  });

}  // namespace
}  // namespace blocklab
