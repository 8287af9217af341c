#include "blocks/sparse/landmark.h"

#include "blocks/attention/parts/core.h"
#include "blocks/local/local_attention.h"
#include "blocks/probe.h"
#include "registry/config_error.h"

namespace blocklab {

LandmarkAttentionImpl::LandmarkAttentionImpl(std::int64_t dim, const LandmarkAttentionOptions& options,
                                             const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options), attn_drop_(config.attn_drop) {}

MixerCapabilities LandmarkAttentionImpl::core_capabilities() const {
  MixerCapabilities c;
  c.causal = true;  // always: the grouped softmax is over the past, whatever ctx.causal says
  c.weights = MixerCapabilities::Weights::normalised;
  return c;
}

torch::Tensor LandmarkAttentionImpl::block_queries(const torch::Tensor& q, const torch::Tensor& kb,
                                                   const torch::Tensor& vb, std::int64_t c) {
  const auto l = options_.block(), span = l + 1;
  const auto drop = [&](const torch::Tensor& w) {
    return attn_drop_ > 0.0 ? torch::dropout(w, attn_drop_, is_training()) : w;
  };
  // The block's own regular tokens, causally (query r sees key t <= r; the landmark row sees all).
  const auto own_k = kb.select(2, c).narrow(2, 0, l), own_v = vb.select(2, c).narrow(2, 0, l);
  const auto position = torch::arange(span, q.options().dtype(torch::kLong));
  const auto future = position.narrow(0, 0, l).view({1, -1}) > position.view({-1, 1});  // [l + 1, l]
  const auto own = torch::matmul(q * scale(), own_k.transpose(-2, -1)).masked_fill(future, kMinusInf);
  if (c == 0) return torch::matmul(drop(torch::softmax(own, -1)), own_v);
  // Earlier blocks b < c: the softmax inside each block's regular tokens, o_b [B, h, c, l + 1, e].
  const auto prev_k = kb.narrow(2, 0, c).narrow(3, 0, l), prev_v = vb.narrow(2, 0, c).narrow(3, 0, l);
  const auto inside = torch::softmax(torch::matmul(q.unsqueeze(2) * scale(), prev_k.transpose(-2, -1)), -1);
  const auto per_block = torch::matmul(drop(inside), prev_v);
  // The main group: the earlier landmarks L_b and the own regular tokens, one softmax (eq. (1)).
  const auto landmarks = kb.narrow(2, 0, c).select(3, l);  // [B, h, c, d]
  const auto main =
      drop(torch::softmax(torch::cat({torch::matmul(q * scale(), landmarks.transpose(-2, -1)), own}, -1), -1));
  const auto gate = main.narrow(-1, 0, c).transpose(-2, -1).unsqueeze(-1);  // p^main_{i, L_b}: [B, h, c, l + 1, 1]
  return torch::matmul(main.narrow(-1, c, l), own_v) + (gate * per_block).sum(2);
}

torch::Tensor LandmarkAttentionImpl::grouped_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                       const torch::Tensor& v) {
  const auto tokens = q.size(2), span = options_.block() + 1, blocks = (tokens + span - 1) / span;
  // Zero tokens after the last one complete its block; causality keeps them unseen.
  const auto blocked = [&](const torch::Tensor& x) {
    return torch::constant_pad_nd(x, {0, 0, 0, blocks * span - tokens}).unflatten(2, {blocks, span});
  };
  const auto qb = blocked(q), kb = blocked(k), vb = blocked(v);
  std::vector<torch::Tensor> outputs;
  for (std::int64_t c = 0; c < blocks; ++c) outputs.push_back(block_queries(qb.select(2, c), kb, vb, c));
  return torch::cat(outputs, 2).narrow(2, 0, tokens);
}

torch::Tensor LandmarkAttentionImpl::attend(const torch::Tensor& q_in, const torch::Tensor& k_in,
                                            const torch::Tensor& v, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.lengths.defined(), key(), ": takes no key padding (ctx.lengths)");
  const auto [q, k] = queries_keys(q_in, k_in, ctx);
  if (capturing(ctx.probe)) {
    // The map is linear in the values: the identity's outputs are the implied p [B, h, N, N].
    torch::NoGradGuard no_grad;
    const auto tokens = q.size(2);
    ctx.probe->record(
        ctx.layer, key(),
        grouped_attention(q, k, torch::eye(tokens, v.options()).expand({q.size(0), q.size(1), tokens, tokens})));
  }
  return grouped_attention(q, k, v);
}

const OptionsSchema<LandmarkAttentionOptions>& landmark_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<LandmarkAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, block,
                    "l: regular tokens per block; the token at every position p with p % (l + 1) == l is that "
                    "block's landmark (default 50, the paper's mem_freq)")
        .min = 1;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mixer_registry(),
    BLOCKLAB_ENTRY(LandmarkAttentionImpl::kKey)
        .summary("Landmark Attention (causal only): grouped softmax over the own block's tokens and the earlier "
                 "blocks' landmarks, each landmark's weight spread over its block by a softmax inside it; the token "
                 "at every position p % (block + 1) == block is a landmark (no token is inserted)")
        .paper("Landmark Attention: Random-Access Infinite Context Length for Transformers (Mohtashami & Jaggi, "
               "2023), arXiv:2305.16300")
        .equation("p_ij = softmax_{G(i)}(s)_ij for j in i's block; p_{i,L_b} softmax_{j' in b}(s_ij')_j for j in an "
                  "earlier block b; 0 for landmarks; G(i) = own block's regular j <= i u {L_b : b < blk(i)}")
        .schema(landmark_attention_schema().schema())
        .example("{heads: 2, block: 3}"),
    [](const ConfigNode& params, const MixerArgs& args) {
      return make_local_attention<LandmarkAttentionImpl>(landmark_attention_schema(), params, args);
    });

}  // namespace
}  // namespace blocklab
