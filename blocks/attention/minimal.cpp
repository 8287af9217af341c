#include "blocks/attention/minimal.h"

#include "blocks/common/multi_head.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

MinimalAttentionImpl::Mode minimal_mode(const std::string& mode) {
  if (mode == "wqk") return MinimalAttentionImpl::Mode::wqk;
  if (mode == "wqk_novo") return MinimalAttentionImpl::Mode::wqk_novo;
  TORCH_CHECK(mode == "symmetric", MinimalAttentionImpl::kKey, ": mode must be wqk, wqk_novo or symmetric, got ", mode);
  return MinimalAttentionImpl::Mode::symmetric;
}

std::int64_t minimal_head_dim(std::int64_t dim, std::int64_t heads) {
  TORCH_CHECK(heads >= 1 && dim % heads == 0, MinimalAttentionImpl::kKey, ": heads ", heads, " must divide the width ",
              dim);
  return dim / heads;
}

}  // namespace

MinimalAttentionImpl::MinimalAttentionImpl(std::int64_t dim, const MinimalAttentionOptions& o,
                                           const ConfigNode& mask_config, std::int64_t max_tokens)
    : DenseCore(*this, kKey, minimal_head_dim(dim, o.heads()), o.attn_drop()),
      dim_(dim),
      heads_(o.heads()),
      head_dim_(dim / o.heads()),
      rank_(o.qk_rank()),
      mode_(minimal_mode(o.mode())),
      fused_(o.fused()) {
  const auto h = heads_, d = head_dim_, r = rank_;
  TORCH_CHECK(r >= 0 && r <= (mode_ == Mode::wqk ? dim : d), kKey, ": qk_rank ", r, " must be in [0, ",
              mode_ == Mode::wqk ? dim : d, "]");
  TORCH_CHECK(mode_ != Mode::symmetric || r == 0, kKey, ": qk_rank applies to wqk and wqk_novo, not symmetric");
  TORCH_CHECK(mode_ != Mode::wqk_novo || o.proj_drop() == 0.0, kKey, ": wqk_novo has no W_O for proj_drop");
  switch (mode_) {
    case Mode::wqk:  // W^h (or [U | V]) as one bias-free Linear, so ViT's init reaches it
      qk = register_module("qk",
                           torch::nn::Linear(torch::nn::LinearOptions(dim, r == 0 ? h * dim : 2 * h * r).bias(false)));
      break;
    case Mode::wqk_novo:
      if (r == 0) {
        qk_weight = register_parameter("qk_weight", torch::eye(d).repeat({h, 1, 1}));  // W^h = I
      } else {
        const auto first = torch::eye(d).narrow(1, 0, r).repeat({h, 1, 1});  // U^h = V^h = I[:, :r]
        qk_u = register_parameter("qk_u", first.clone());
        qk_v = register_parameter("qk_v", first.clone());
      }
      break;
    case Mode::symmetric: {
      const auto index = torch::tril_indices(d, d);
      // L^h = I: the identity's lower triangle, row by row.
      tril = register_parameter("tril", torch::eye(d).index({index[0], index[1]}).unsqueeze(0).repeat({h, 1}));
      break;
    }
  }
  if (mode_ != Mode::wqk_novo) {
    value = register_module("value", torch::nn::Linear(torch::nn::LinearOptions(dim, dim).bias(o.v_bias())));
    output_.emplace(*this, dim, dim, /*gate=*/false, o.proj_drop());
    proj = output_->proj;
  }
  if (!mask_config.is_null())
    mask = register_module("mask", mask_registry().create(mask_config, MaskArgs{h, dim, max_tokens}));
}

MixerCapabilities MinimalAttentionImpl::capabilities() const {
  MixerCapabilities c = core_capabilities();
  c.needs_grid = mask && mask->needs_grid();
  return c;
}

torch::Tensor MinimalAttentionImpl::split_heads(const torch::Tensor& t) const {
  return t.reshape({t.size(0), t.size(1), heads_, head_dim_}).transpose(1, 2);
}

torch::Tensor MinimalAttentionImpl::lower_factor() const {
  TORCH_CHECK(tril.defined(), kKey, ": lower_factor is symmetric's");
  const auto d = head_dim_;
  const auto index = torch::tril_indices(d, d, 0, torch::TensorOptions(torch::kLong).device(tril.device()));
  const auto flat = index[0] * d + index[1];
  return torch::zeros({heads_, d * d}, tril.options()).index_copy(1, flat, tril).view({heads_, d, d});
}

std::pair<torch::Tensor, torch::Tensor> MinimalAttentionImpl::score_factors(const torch::Tensor& x) {
  const auto b = x.size(0), n = x.size(1);
  if (mode_ == Mode::wqk) {
    const auto y = qk->forward(x);
    if (rank_ == 0) {
      // S^h = (X W^h) X^T: the query side is X W^h [B, h, N, C], the key side X itself.
      return {y.view({b, n, heads_, dim_}).transpose(1, 2), x.unsqueeze(1).expand({b, heads_, n, dim_})};
    }
    // W^h = U^h V^h^T: an ordinary query/key projection of width r.
    const auto part = [&](std::int64_t from) {
      return y.narrow(-1, from * heads_ * rank_, heads_ * rank_).view({b, n, heads_, rank_}).transpose(1, 2);
    };
    return {part(0), part(1)};
  }
  const auto xh = split_heads(x);  // the head's channel slice X_h [B, h, N, d]
  if (mode_ == Mode::symmetric) {
    const auto f = torch::matmul(xh, lower_factor());  // X_h L^h: S^h = f f^T / sqrt(d), symmetric PSD
    return {f, f};
  }
  if (rank_ == 0) return {torch::matmul(xh, qk_weight), xh};  // (X_h W^h) X_h^T
  return {torch::matmul(xh, qk_u), torch::matmul(xh, qk_v)};  // (X_h U^h) (X_h V^h)^T
}

torch::Tensor MinimalAttentionImpl::logits(const torch::Tensor& x) {
  const auto factors = score_factors(x);
  return scores(factors.first, factors.second, MixerContext{});
}

torch::Tensor MinimalAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == dim_, kKey, ": expected x [B, N, ", dim_, "], got ", x.sizes());
  const auto factors = score_factors(x);
  if (mode_ == Mode::wqk_novo) {
    // out_h = A^h X_h: no W_V, no W_O; each head's slice goes back to its channels.
    const auto o = attend(factors.first, factors.second, split_heads(x), ctx);
    return o.transpose(1, 2).reshape({x.size(0), x.size(1), dim_});
  }
  const auto o = attend(factors.first, factors.second, split_heads(value->forward(x)), ctx);
  return output_->merge(o, x, is_training());
}

const OptionsSchema<MinimalAttentionOptions>& minimal_attention_schema() {
  static const auto schema = [] {
    using O = MinimalAttentionOptions;
    OptionsSchema<O> s;
    s.choice(
        "mode", {"wqk", "wqk_novo", "symmetric"},
        "wqk: one C x C matrix W^h per head instead of W_Q W_K^T, V and O kept (default); wqk_novo: W^h on the "
        "head's channel slice, no W_V and no W_O (out = A X); symmetric: W^h = L^h L^h^T, L^h lower triangular "
        "d x d on the head's slice, V and O kept",
        [](O& o, const std::string& v) { o.mode(v); }, [](const O& o) { return o.mode(); });
    BLOCKLAB_OPTION(s, heads, "attention heads h (default 4); dim must be divisible by h").min = 1;
    BLOCKLAB_OPTION(s, qk_rank,
                    "rank r of W^h = U^h V^h^T (wqk: U, V in R^{C x r}; wqk_novo: R^{d x r}); 0 = the full matrix "
                    "(default 0)")
        .min = 0;
    BLOCKLAB_OPTION(s, v_bias, "bias on W_V (wqk, symmetric; default true)");
    rate(BLOCKLAB_OPTION(s, attn_drop, "dropout on the attention weights (default 0)"));
    rate(BLOCKLAB_OPTION(s, proj_drop, "dropout after W_O (wqk, symmetric; default 0)"));
    BLOCKLAB_OPTION(s, fused,
                    "fused softmax kernel on the q/k factors when the probe is off (default true); false computes "
                    "the weights explicitly");
    s.component("mask", "mask", "", "attention mask on the logits or weights, e.g. {type: mask/alibi} (default none)");
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_minimal_attention(const ConfigNode& params, const MixerArgs& args) {
  const auto o = bind_options(minimal_attention_schema(), params);
  check_heads(args.dim, o.heads(), params);
  const auto d = args.dim / o.heads();
  if (o.mode() == "symmetric" && o.qk_rank() > 0)
    config_fail(params, "qk_rank",
                "qk_rank: symmetric factors W^h = L^h L^h^T with a full lower-triangular L^h; a rank applies to wqk "
                "and wqk_novo only",
                {"qk_rank: 0", "mode: wqk"});
  const auto width = o.mode() == "wqk" ? args.dim : d;
  if (o.qk_rank() > width)
    config_fail(params, "qk_rank",
                "qk_rank: " + o.mode() + " factors a " + std::to_string(width) + " x " + std::to_string(width) +
                    " matrix; rank " + std::to_string(o.qk_rank()) + " exceeds it",
                {"qk_rank: 0 (the full matrix)", "qk_rank <= " + std::to_string(width)});
  if (o.mode() == "wqk_novo" && o.proj_drop() > 0.0)
    config_fail(params, "proj_drop", "proj_drop: wqk_novo has no output projection W_O to drop after",
                {"proj_drop: 0", "mode: wqk"});
  ConfigNode mask;
  if (const ConfigNode* m = params.is_map() ? params.find("mask") : nullptr; m && !m->is_null()) mask = *m;
  return std::make_shared<MinimalAttentionImpl>(args.dim, o, mask, args.max_tokens);
}

BLOCKLAB_REGISTER(
    mixer_registry(),
    BLOCKLAB_ENTRY(MinimalAttentionImpl::kKey)
        .summary("minimal attention: W_Q W_K^T collapsed to one W^h per head (wqk), also without W_V and W_O "
                 "(wqk_novo), or a symmetric PSD similarity L L^T (symmetric)")
        .paper("Reducing the Transformer Architecture to a Minimum (Bermeitinger et al., 2024), arXiv:2410.13732")
        .equation("A^h = softmax(X W^h X^T / sqrt(d)); wqk: Concat(A^h X W_V^h) W_O; wqk_novo: A^h X_h; symmetric: "
                  "W^h = L^h L^h^T on X_h, V and O kept")
        .schema(minimal_attention_schema().schema())
        .example("{heads: 2, mode: symmetric}"),
    make_minimal_attention);

}  // namespace
}  // namespace blocklab
