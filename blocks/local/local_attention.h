// The shared part of the local attentions (wave 4): a multi-head attention (projection, output;
// blocks/common/multi_head.h) whose core is the local core (blocks/attention/parts/local_core.h)
// instead of the dense one. A block supplies its key set over the body tokens (body_pattern)
// and, if it has one, its relative position bias (body_biases); the base adds the prefix
// tokens as global tokens (with_prefix), caches the pattern per layout, and gives the probe
// the dense map at the token positions.
//
// Shape contract: x [B, N, C] -> [B, N, C]; N = prefix + grid_height * grid_width (a plain
// sequence is the grid 1 x N when the block allows sequences). No attention mask (masks need the
// dense N x N path); no key padding (ctx.lengths).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "blocks/attention/parts/local_core.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

class LocalAttentionImpl : public MultiHeadAttentionImpl {
 public:
  LocalAttentionImpl(std::string key, std::int64_t dim, const MultiHeadConfig& config);

  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const MixerContext& ctx) override;
  // Weights normalised (per query over its keys); causal when the block's pattern is; a grid
  // unless the block takes sequences.
  MixerCapabilities core_capabilities() const override;
  MixerCapabilities capabilities() const override;

  // The full pattern (prefix tokens included) the mixer uses for ctx and n tokens (tests).
  LocalPattern pattern(const MixerContext& ctx, std::int64_t tokens);
  // The biases of that pattern, one per part, for the queries q [B, h, N, d] (tests compare
  // against the oracle with them).
  std::vector<torch::Tensor> biases(const MixerContext& ctx, const torch::Tensor& q);
  // Keys and values in the pattern's key layout (prefix, then body_keys_values) from q, k, v
  // [B, h, N, d] (after the projection's positions).
  std::pair<torch::Tensor, torch::Tensor> pattern_keys_values(const MixerContext& ctx, const torch::Tensor& q,
                                                              const torch::Tensor& k, const torch::Tensor& v);

 protected:
  // The key set over the body tokens, a height x width grid (a sequence: 1 x N).
  virtual LocalPattern body_pattern(std::int64_t height, std::int64_t width, bool causal) const = 0;
  // One bias per part of `body` (the pattern over that grid; broadcastable to [B, h, G, b, m]
  // each) or none. q_body [B, h, height * width, d]: the grid's queries (content-dependent
  // relative logits, HaloNet's).
  virtual std::vector<torch::Tensor> body_biases(const LocalPattern& body, std::int64_t height, std::int64_t width,
                                                 bool causal, const torch::Tensor& q_body) {
    return {};
  }
  // The grid's keys or values [B, h, height * width, d] in the layout body_pattern indexes
  // (default: as they are; HaloNet: zero-padded by the halo).
  virtual torch::Tensor body_keys(const torch::Tensor& body, std::int64_t height, std::int64_t width) const {
    return body;
  }
  // The keys and values in that layout from the grid's queries, keys and values (default:
  // body_keys of each; Combiner appends segment summaries, which need the queries).
  virtual std::pair<torch::Tensor, torch::Tensor> body_keys_values(const torch::Tensor& q, const torch::Tensor& k,
                                                                   const torch::Tensor& v, std::int64_t height,
                                                                   std::int64_t width) {
    return {body_keys(k, height, width), body_keys(v, height, width)};
  }
  // The probe's map over the tokens' own keys from the weights over the pattern's keys,
  // [B, h, N_q, N_k] (default: the token keys' columns; padding keys left out).
  virtual torch::Tensor token_weights(const torch::Tensor& over_keys, const LocalPattern& full, std::int64_t prefix) {
    return full.keys == full.queries ? over_keys : over_keys.index_select(-1, full.token_keys);
  }
  virtual bool supports_causal() const { return false; }
  virtual bool takes_sequences() const { return false; }

 private:
  struct Layout {
    std::int64_t height = 0, width = 0, prefix = 0;
    bool causal = false;
    torch::Device device = torch::kCPU;
    LocalPattern body, full;
  };
  const Layout& layout(const MixerContext& ctx, std::int64_t tokens, const torch::Device& device);

  std::optional<Layout> cached_;
  double attn_drop_;
};

// f applied to x with its grid zero-padded by pad_h rows at the bottom and pad_w columns at the
// right (the prefix tokens kept in front), its output cropped back to the grid (Swin v1's and
// BiFormer's auto_pad: the padded tokens take part in the attention).
torch::Tensor with_padded_grid(const torch::Tensor& x, const MixerContext& ctx, std::int64_t pad_h, std::int64_t pad_w,
                               const std::function<torch::Tensor(const torch::Tensor&, const MixerContext&)>& f);

// A registry factory for a local attention: bind the options, the block's own checks and fixed
// values (`adjust`), no mask (it needs the dense N x N path), build Impl(dim, options, config,
// extra...).
template <class Impl, class O, class... Extra>
TokenMixer make_local_attention(const std::string& key, const OptionsSchema<O>& schema, const ConfigNode& params,
                                const MixerArgs& args, const std::common_type_t<std::function<void(O&)>>& adjust,
                                const Extra&... extra) {
  auto options = bind_options(schema, params);
  if (adjust) adjust(options);
  const auto config = multi_head_config(options, params, args);
  if (!config.mask.is_null())
    config_fail(params, "mask", key + " takes no attention mask (masks need the dense N x N path)");
  return std::make_shared<Impl>(args.dim, options, config, extra...);
}
// The same for the block registered as Impl::kKey.
template <class Impl, class O>
TokenMixer make_local_attention(const OptionsSchema<O>& schema, const ConfigNode& params, const MixerArgs& args,
                                const std::common_type_t<std::function<void(O&)>>& adjust = {}) {
  return make_local_attention<Impl>(Impl::kKey, schema, params, args, adjust);
}

}  // namespace blocklab
