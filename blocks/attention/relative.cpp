#include "blocks/attention/relative.h"

#include <cmath>

#include "blocks/common/relative_positions.h"

namespace blocklab {

RelativeAttentionImpl::RelativeAttentionImpl(std::int64_t dim, const RelativeAttentionOptions& options)
    : RelativeAttentionImpl(dim, options, multi_head_config(options)) {}

RelativeAttentionImpl::RelativeAttentionImpl(std::int64_t dim, const RelativeAttentionOptions& options,
                                             const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options) {
  const auto m = options.max_relative_position();
  TORCH_CHECK(m >= 1, kKey, ": max_relative_position must be >= 1, got ", m);
  // tensor2tensor initialises the relative embeddings N(0, d^-1/2).
  rel_embeddings =
      register_parameter("rel_embeddings", torch::randn({options.shared_heads() ? 1 : heads(), 2 * m - 1, head_dim()}) *
                                               (1.0 / std::sqrt(static_cast<double>(head_dim()))));
}

torch::Tensor RelativeAttentionImpl::relative_logits(const torch::Tensor& q, bool causal) const {
  const auto l = q.size(-2);
  const auto e = relative_window(rel_embeddings, l, 1);  // [h|1, 2L-1, d], offsets -(L-1)..(L-1)
  if (causal) {
    // Fig. 1: offsets -(L-1)..0 only, Q E^T [B,h,L,L], then the causal skew.
    return skew_causal(torch::matmul(q, e.narrow(1, 0, l).transpose(-2, -1)));
  }
  return skew_bidirectional(torch::matmul(q, e.transpose(-2, -1)));  // [B,h,L,2L-1] -> [B,h,L,L]
}

torch::Tensor RelativeAttentionImpl::scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx) {
  // Music Transformer §3: (Q K^T + S_rel) / sqrt(d); scaling q once serves both terms.
  const auto qs = q * scale();
  return torch::matmul(qs, k.transpose(-2, -1)) + relative_logits(qs, ctx.causal);
}

const OptionsSchema<RelativeAttentionOptions>& relative_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<RelativeAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, max_relative_position,
                    "M: relative offsets -(M-1)..(M-1) get learned embeddings, longer ones zero (default 0 = the "
                    "longest sequence the model sees)")
        .min = 0;
    BLOCKLAB_OPTION(s, shared_heads, "one relative embedding table for all heads (default false: one per head)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mixer_registry(),
    BLOCKLAB_ENTRY(RelativeAttentionImpl::kKey)
        .summary("relative-position self-attention with the memory-efficient skew (Music Transformer)")
        .paper("Music Transformer (Huang et al., 2018), arXiv:1809.04281")
        .equation("softmax((Q K^T + skew(Q E_r^T)) / sqrt(d)) V, skew(Q E_r^T)[i,j] = q_i . E_{j-i}")
        .schema(relative_attention_schema().schema())
        .example("{heads: 2}"),
    [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
      auto options = bind_options(relative_attention_schema(), params);
      if (options.max_relative_position() == 0)
        options.max_relative_position(longest_sequence(
            args, params, "max_relative_position", 1,
            "attention/relative needs the longest sequence length to size its relative embeddings, and the enclosing "
            "model gave none",
            "set max_relative_position, e.g. max_relative_position: 64"));
      return std::make_shared<RelativeAttentionImpl>(args.dim, options, multi_head_config(options, params, args));
    });

}  // namespace
}  // namespace blocklab
