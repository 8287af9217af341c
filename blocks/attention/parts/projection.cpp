#include "blocks/attention/parts/projection.h"

#include "blocks/common/rotary.h"

namespace blocklab {

QkvProjection::QkvProjection(torch::nn::Module& owner, std::int64_t dim, const ProjectionConfig& c)
    : heads_(c.heads),
      kv_heads_(c.kv_heads > 0 ? c.kv_heads : c.heads),
      head_dim_(c.head_dim > 0 ? c.head_dim : dim / c.heads),
      rotary_(c.rotary),
      rotary_base_(c.rotary_base) {
  TORCH_CHECK(heads_ % kv_heads_ == 0, "attention: kv_heads ", kv_heads_, " must divide heads ", heads_);
  const auto out = (heads_ + 2 * kv_heads_) * head_dim_;
  qkv = owner.register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, out).bias(c.qkv_bias)));
  if (c.qk_norm) {
    const auto norm = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({head_dim_}).eps(1e-6)); };
    q_norm = owner.register_module("q_norm", norm());
    k_norm = owner.register_module("k_norm", norm());
  }
}

std::array<torch::Tensor, 3> QkvProjection::split(const torch::Tensor& x) {
  const auto b = x.size(0), n = x.size(1), d = head_dim_;
  const auto y = qkv->forward(x);
  // [B, N, heads d] -> [B, heads, N, d]: views, the kernels take strided inputs.
  const auto heads_of = [&](std::int64_t from, std::int64_t count) {
    return y.narrow(-1, from * d, count * d).view({b, n, count, d}).transpose(1, 2);
  };
  auto q = heads_of(0, heads_), k = heads_of(heads_, kv_heads_), v = heads_of(heads_ + kv_heads_, kv_heads_);
  if (kv_heads_ != heads_) {  // GQA: kv head g serves query heads [g h/kv, (g+1) h/kv)
    const auto repeat = [&](const torch::Tensor& t) {
      return t.unsqueeze(2).expand({b, kv_heads_, heads_ / kv_heads_, n, d}).reshape({b, heads_, n, d});
    };
    k = repeat(k);
    v = repeat(v);
  }
  return {q, k, v};
}

std::pair<torch::Tensor, torch::Tensor> QkvProjection::position(const torch::Tensor& q, const torch::Tensor& k,
                                                                const MixerContext& ctx) {
  auto qq = q_norm ? q_norm->forward(q) : q, kk = k_norm ? k_norm->forward(k) : k;
  if (rotary_ == "none") return {qq, kk};
  const auto n = q.size(-2);
  const auto angles = rotary_ == "1d" ? rotary_angles_1d(ctx.token_positions(n, q.device()), head_dim_, rotary_base_)
                                      : rotary_angles_2d(n, ctx, head_dim_, rotary_base_, q.device());
  return {apply_rotary(qq, angles), apply_rotary(kk, angles)};
}

}  // namespace blocklab
