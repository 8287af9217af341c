#include "blocks/common/multi_head.h"

#include <cmath>
#include <limits>

#include "blocks/common/small_attention.h"

namespace blocklab {

void check_heads(std::int64_t dim, std::int64_t heads, const ConfigNode& params) {
  if (heads >= 1 && dim % heads == 0) return;
  std::string valid;
  for (std::int64_t h = 1; h <= dim && h <= 64; ++h)
    if (dim % h == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(h);
  config_fail(params, "heads",
              "heads must divide the embedding width: dim " + std::to_string(dim) + " is not divisible by heads " +
                  std::to_string(heads),
              {"heads that divide " + std::to_string(dim) + ": " + valid});
}

torch::Tensor causal_mask(std::int64_t tokens, const torch::Device& device) {
  return torch::ones({tokens, tokens}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(1);
}

MultiHeadAttentionImpl::MultiHeadAttentionImpl(std::string key, std::int64_t dim, const MultiHeadConfig& config)
    : key_(std::move(key)), dim_(dim), config_(config) {
  check_heads(dim, config.heads);
  scale_ = 1.0 / std::sqrt(static_cast<double>(head_dim()));
  qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(config.qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
  if (!config.mask.is_null())
    mask = register_module("mask", mask_registry().create(config.mask, MaskArgs{config.heads, dim, config.max_tokens}));
}

std::array<torch::Tensor, 3> MultiHeadAttentionImpl::project(const torch::Tensor& x) {
  const auto b = x.size(0), n = x.size(1);
  // [B,N,3C] -> [B,N,3,h,d] -> [3,B,h,N,d]: views, the kernels take strided inputs.
  const auto qkv_heads = qkv->forward(x).reshape({b, n, 3, heads(), head_dim()}).permute({2, 0, 3, 1, 4});
  const auto parts = qkv_heads.unbind(0);
  return {parts[0], parts[1], parts[2]};
}

torch::Tensor MultiHeadAttentionImpl::merge(const torch::Tensor& o) {
  const auto b = o.size(0), n = o.size(2);
  auto out = proj->forward(o.transpose(1, 2).reshape({b, n, dim_}));
  if (config_.proj_drop > 0.0) out = torch::dropout(out, config_.proj_drop, is_training());
  return out;
}

torch::Tensor MultiHeadAttentionImpl::scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext&) {
  // Scaled dot product, Vaswani et al. 2017 eq. (1): q k^T / sqrt(d). Scaling q is cheaper.
  return torch::matmul(q * scale_, k.transpose(-2, -1));
}

torch::Tensor MultiHeadAttentionImpl::normalise(const torch::Tensor& s, const MixerContext&) {
  return torch::softmax(s, -1);
}

torch::Tensor MultiHeadAttentionImpl::weights(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx) {
  auto s = scores(q, k, ctx);
  const auto n = s.size(-1);
  if (const auto bias = score_bias(n, ctx); bias.defined()) s = s + bias.to(s.dtype());
  if (mask) s = mask->on_logits(s, ctx);
  // Decoder masking (§3.2.3): -inf above the diagonal, so token i sees tokens j <= i only.
  if (ctx.causal) s = s.masked_fill(causal_mask(n, s.device()), -std::numeric_limits<double>::infinity());
  return mask ? mask->on_weights(normalise(s, ctx), ctx) : normalise(s, ctx);
}

torch::Tensor MultiHeadAttentionImpl::attend_reference(const torch::Tensor& q, const torch::Tensor& k,
                                                       const torch::Tensor& v, const MixerContext& ctx) {
  auto w = weights(q, k, ctx);
  if (capturing(ctx.probe)) ctx.probe->record(ctx.layer, key_, w);
  if (config_.attn_drop > 0.0) w = torch::dropout(w, config_.attn_drop, is_training());
  return torch::matmul(w, v);
}

torch::Tensor MultiHeadAttentionImpl::attend_fused(const torch::Tensor& q, const torch::Tensor& k,
                                                   const torch::Tensor& v, const MixerContext& ctx) {
  const double p = is_training() ? config_.attn_drop : 0.0;
  const auto bias = score_bias(q.size(-2), ctx);
  // CPU, float32/float64, N <= kSmallAttentionMaxTokens (200; the crossover with SDPA's flash
  // kernel is measured between 197 and 256 tokens, see small_attention.h), no bias and no
  // attention dropout: small_attention. Otherwise (CUDA, long sequences, biases, dropout) SDPA.
  if (!bias.defined() && p == 0.0 && q.size(-2) <= kSmallAttentionMaxTokens && small_attention_supports(q, k, v))
    return small_attention(q, k, v, scale_, ctx.causal);
  if (!bias.defined()) return at::scaled_dot_product_attention(q, k, v, {}, p, ctx.causal, scale_);
  // SDPA takes either is_causal or a mask: fold the causal mask into the additive bias.
  auto mask = bias.to(q.dtype());
  if (ctx.causal)
    mask = mask.masked_fill(causal_mask(q.size(-2), q.device()), -std::numeric_limits<double>::infinity());
  return at::scaled_dot_product_attention(q, k, v, mask, p, false, scale_);
}

MixerCapabilities MultiHeadAttentionImpl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;
  c.weights = MixerCapabilities::Weights::normalised;
  c.needs_grid = mask && mask->needs_grid();
  return c;
}

torch::Tensor MultiHeadAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == dim_, key_, ": expected x [B, N, ", dim_, "], got ", x.sizes());
  const auto [q, k, v_projected] = project(x);
  const auto v = values(v_projected, ctx);
  const bool fused = fused_path(ctx) && !capturing(ctx.probe) && !mask;
  return merge(fused ? attend_fused(q, k, v, ctx) : attend_reference(q, k, v, ctx));
}

}  // namespace blocklab
