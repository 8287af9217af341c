#include "blocks/attention/parts/dense_core.h"

#include <cmath>
#include <limits>

#include "blocks/common/small_attention.h"

namespace blocklab {

namespace {}  // namespace

torch::Tensor causal_mask(std::int64_t tokens, const torch::Device& device) {
  return torch::ones({tokens, tokens}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(1);
}

torch::Tensor padding_mask(const torch::Tensor& lengths, std::int64_t tokens, const torch::Device& device) {
  const auto index = torch::arange(tokens, torch::TensorOptions(torch::kLong).device(device));
  return (index.view({1, tokens}) >= lengths.to(device, torch::kLong).view({-1, 1})).view({-1, 1, 1, tokens});
}

DenseCore::DenseCore(const torch::nn::Module& owner, std::string key, std::int64_t head_dim, double attn_drop)
    : owner_(owner),
      key_(std::move(key)),
      scale_(1.0 / std::sqrt(static_cast<double>(head_dim))),
      attn_drop_(attn_drop) {}

MixerCapabilities DenseCore::core_capabilities() const {
  MixerCapabilities c;
  c.causal = true;
  c.weights = MixerCapabilities::Weights::normalised;
  c.variable_lengths = true;
  return c;
}

torch::Tensor DenseCore::scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext&) {
  // Scaled dot product, Vaswani et al. 2017 eq. (1): q k^T / sqrt(d). Scaling q is cheaper.
  return torch::matmul(q * scale_, k.transpose(-2, -1));
}

torch::Tensor DenseCore::normalise(const torch::Tensor& s, const MixerContext&) { return torch::softmax(s, -1); }

torch::Tensor DenseCore::weights(const torch::Tensor& q_in, const torch::Tensor& k_in, const MixerContext& ctx) {
  const auto [q, k] = queries_keys(q_in, k_in, ctx);
  auto s = scores(q, k, ctx);
  const auto n = s.size(-1);
  if (const auto bias = score_bias(n, ctx); bias.defined()) s = s + bias.to(s.dtype());
  if (mask) s = mask->on_logits(s, ctx);
  // Decoder masking (§3.2.3): -inf above the diagonal, so token i sees tokens j <= i only.
  if (ctx.causal) s = s.masked_fill(causal_mask(n, s.device()), kMinusInf);
  if (ctx.lengths.defined()) s = s.masked_fill(padding_mask(ctx.lengths, n, s.device()), kMinusInf);
  return mask ? mask->on_weights(normalise(s, ctx), ctx) : normalise(s, ctx);
}

torch::Tensor DenseCore::attend_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                          const MixerContext& ctx) {
  auto w = weights(q, k, ctx);
  if (capturing(ctx.probe)) ctx.probe->record(ctx.layer, key_, w);
  if (attn_drop_ > 0.0) w = torch::dropout(w, attn_drop_, owner_.is_training());
  return torch::matmul(w, v);
}

torch::Tensor DenseCore::additive_bias(std::int64_t n, const MixerContext& ctx, const torch::Tensor& like) {
  auto bias = score_bias(n, ctx);
  if (bias.defined()) bias = bias.to(like.dtype());
  if (mask && mask->mode() == AttentionMaskImpl::Mode::AddLogits) {
    const auto m = mask->matrix(n, ctx).to(like.dtype());
    bias = bias.defined() ? bias + m : m;
  }
  if (ctx.lengths.defined()) {
    const auto zero = torch::zeros({1, 1, 1, n}, like.options());
    bias = (bias.defined() ? bias : zero).masked_fill(padding_mask(ctx.lengths, n, like.device()), kMinusInf);
  }
  return bias;
}

torch::Tensor DenseCore::attend_fused(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v,
                                      const MixerContext& ctx) {
  const auto [q, k] = queries_keys(q_in, k_in, ctx);
  const double p = owner_.is_training() ? attn_drop_ : 0.0;
  const auto n = q.size(-2);
  const auto bias = additive_bias(n, ctx, q);
  // CPU, float32/float64, N <= kSmallAttentionMaxTokens (200; the crossover with SDPA's flash
  // kernel is measured between 197 and 256 tokens, see small_attention.h), no attention
  // dropout: small_attention, with the bias. Otherwise (CUDA, long sequences, dropout) SDPA.
  if (p == 0.0 && n <= kSmallAttentionMaxTokens && small_attention_supports(q, k, v))
    return small_attention(q, k, v, scale_, ctx.causal, bias);
  if (!bias.defined()) return at::scaled_dot_product_attention(q, k, v, {}, p, ctx.causal, scale_);
  // SDPA takes either is_causal or a mask: fold the causal mask into the additive bias.
  auto attn_mask = bias;
  if (ctx.causal) attn_mask = attn_mask.masked_fill(causal_mask(n, q.device()), kMinusInf);
  return at::scaled_dot_product_attention(q, k, v, attn_mask, p, false, scale_);
}

torch::Tensor DenseCore::attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v_projected,
                                const MixerContext& ctx) {
  const auto v = values(v_projected, ctx);
  const bool additive = !mask || mask->mode() == AttentionMaskImpl::Mode::AddLogits;
  const bool fused = fused_path(ctx) && !capturing(ctx.probe) && additive;
  return fused ? attend_fused(q, k, v, ctx) : attend_reference(q, k, v, ctx);
}

}  // namespace blocklab
