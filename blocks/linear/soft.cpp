#include "blocks/linear/soft.h"

#include <cmath>

#include "blocks/common/init.h"
#include "blocks/common/multi_head.h"
#include "blocks/common/options.h"

namespace blocklab {

torch::Tensor soft_gaussian_kernel(const torch::Tensor& a, const torch::Tensor& b) {
  // |a_i - b_j|^2 = |a_i|^2 + |b_j|^2 - 2 a_i . b_j (as the official subtraction kernel),
  // clamped at 0 against rounding, so that kappa <= 1.
  const auto squared =
      a.square().sum(-1, true) + b.square().sum(-1).unsqueeze(-2) - 2.0 * a.matmul(b.transpose(-1, -2));
  return torch::exp(-0.5 * squared.clamp_min(0.0));
}

torch::Tensor soft_newton_inverse(const torch::Tensor& k2, std::int64_t iterations) {
  const auto m = k2.size(-1);
  const auto p = k2 + kSoftRidge * torch::eye(m, k2.options());  // P = K2 + 0.01 I
  // alpha = 0.9 * 2 / (max row sum of K2)^2, one per matrix: then |1 - alpha lambda^2| < 1 for
  // every eigenvalue lambda of P, and the residual I - V_t P squares at every step.
  const auto alpha = (1.8 / k2.sum(-1).amax(-1).square()).unsqueeze(-1).unsqueeze(-1);
  auto v = alpha * p;
  for (std::int64_t t = 0; t < iterations; ++t) v = 2.0 * v - v.matmul(p).matmul(v);
  return v;
}

namespace {

// Newton-Schulz forward, the exact inverse's backward (SOFT/kernel/inverse.py, _NewtonInverseKernel).
class NewtonInverseFunction : public torch::autograd::Function<NewtonInverseFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& k2,
                               std::int64_t iterations) {
    auto inverse = soft_newton_inverse(k2, iterations);  // autograd is off inside forward
    ctx->save_for_backward({inverse});
    return inverse;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const torch::Tensor none;
    if (!grads[0].defined()) return {none, none};
    // d(P^-1) = -P^-1 dP P^-1, so dL/dP = -P^-T G P^-T, with V for P^-1 (and dP = dK2).
    const auto inverse_t = ctx->get_saved_variables()[0].transpose(-1, -2);
    return {-inverse_t.matmul(grads[0]).matmul(inverse_t), none};
  }
};

// [B, N, h d] -> [B, h, N, d]
torch::Tensor split_heads(const torch::Tensor& t, std::int64_t heads) {
  return t.view({t.size(0), t.size(1), heads, -1}).transpose(1, 2);
}

}  // namespace

torch::Tensor soft_pinv(const torch::Tensor& k2, std::int64_t iterations) {
  return NewtonInverseFunction::apply(k2, iterations);
}

SoftImpl::SoftImpl(std::int64_t dim, const SoftOptions& options)
    : options_(options), heads_(options.heads()), head_dim_(heads_ > 0 ? dim / heads_ : 0) {
  TORCH_CHECK(heads_ >= 1 && dim % heads_ == 0, kKey, ": heads must divide dim, got dim ", dim, " and heads ", heads_);
  const auto s = options.ratio(), k = options.local_kernel();
  TORCH_CHECK(s >= 1, kKey, ": ratio (the landmark stride) must be at least 1, got ", s);
  TORCH_CHECK(k == 0 || (k > 0 && k % 2 == 1), kKey, ": local_kernel must be odd or 0 (no local term), got ", k);
  TORCH_CHECK(options.newton_iterations() >= 1, kKey, ": newton_iterations must be at least 1, got ",
              options.newton_iterations());
  TORCH_CHECK(options.normalisation() == "none" || options.normalisation() == "symmetric", kKey,
              ": normalisation must be none or symmetric, got ", options.normalisation());
  const auto d = head_dim_;
  query = register_module("query", torch::nn::Linear(torch::nn::LinearOptions(dim, dim).bias(options.qkv_bias())));
  value = register_module("value", torch::nn::Linear(torch::nn::LinearOptions(dim, dim).bias(options.qkv_bias())));
  landmark = register_module("landmark", torch::nn::Conv2d(torch::nn::Conv2dOptions(d, d, s).stride(s).bias(false)));
  landmark_norm = register_module("landmark_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-5)));
  if (k > 0)
    local = register_module(
        "local",
        torch::nn::Conv2d(torch::nn::Conv2dOptions(heads_, heads_, k).padding(k / 2).groups(heads_).bias(false)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
  // The official model's init: timm's for the Linears and LayerNorms, PyTorch's default for the convs.
  init_vit_weights(*this);
}

MixerCapabilities SoftImpl::capabilities() const {
  MixerCapabilities c;
  c.weights = MixerCapabilities::Weights::unnormalised;  // K1 pinv(K2) K1^T: no row normalisation
  c.needs_grid = true;                                   // landmarks are pooled over the patch grid
  return c;
}

void SoftImpl::check_layout(const torch::Tensor& x, const MixerContext& ctx) const {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == heads_ * head_dim_, kKey, ": expected x [B, N, ", heads_ * head_dim_,
              "], got ", x.sizes());
  TORCH_CHECK(!ctx.causal, kKey, ": not causal (every token sees the landmarks of the whole grid)");
  TORCH_CHECK(ctx.has_grid(), kKey, ": needs the tokens of an image grid (its landmarks pool s x s patches), got ",
              x.size(1), " tokens without a grid");
  TORCH_CHECK(ctx.prefix_tokens >= 0 && ctx.prefix_tokens + ctx.grid_height * ctx.grid_width == x.size(1), kKey,
              ": the context's grid ", ctx.grid_height, "x", ctx.grid_width, " with ", ctx.prefix_tokens,
              " prefix tokens does not match ", x.size(1), " tokens");
}

torch::Tensor SoftImpl::landmarks(const torch::Tensor& q, const MixerContext& ctx) {
  const auto b = q.size(0), d = q.size(3), height = ctx.grid_height, width = ctx.grid_width;
  const auto s = options_.ratio();
  // Grid queries [B, h, H W, d] -> [B h, d, H, W]: the heads share the landmark conv.
  auto grid =
      q.narrow(2, ctx.prefix_tokens, height * width).reshape({b * heads_, height, width, d}).permute({0, 3, 1, 2});
  // Zero padding at the bottom and right to multiples of s (at most s - 1 rows and columns).
  const auto pad_h = (s - height % s) % s, pad_w = (s - width % s) % s;
  if (pad_h > 0 || pad_w > 0) grid = torch::constant_pad_nd(grid, {0, pad_w, 0, pad_h}, 0.0);
  // Conv2d(d -> d, s x s, stride s): one landmark per s x s patch, row-major -> [B, h, m, d].
  const auto pooled = landmark->forward(grid).flatten(2).transpose(1, 2).reshape({b, heads_, -1, d});
  return torch::gelu(landmark_norm->forward(pooled));  // GELU(LN_d(.)), exact GELU as nn.GELU
}

torch::Tensor SoftImpl::landmark_inverse(const torch::Tensor& k2) const {
  const auto inverse = soft_pinv(k2, options_.newton_iterations());
  if (options_.normalisation() == "none") return inverse;
  // Symmetric normalisation (arXiv:2207.03341): D pinv(K2) D, D = diag(rowsum(K2))^(-1/2).
  const auto d = k2.sum(-1).rsqrt();
  return d.unsqueeze(-1) * inverse * d.unsqueeze(-2);
}

torch::Tensor SoftImpl::local_term(const torch::Tensor& v, const MixerContext& ctx) {
  const auto b = v.size(0), d = v.size(3), prefix = ctx.prefix_tokens;
  const auto height = ctx.grid_height, width = ctx.grid_width, cells = height * width;
  // Grid values [B, h, H W, d] -> [B d, h, H, W]: each head a channel, its d widths in the batch.
  const auto grid = v.narrow(2, prefix, cells).permute({0, 3, 1, 2}).reshape({b * d, heads_, height, width});
  // One k x k filter per head (groups = h), "same" padding; back to [B, h, H W, d].
  const auto mixed = local->forward(grid).reshape({b, d, heads_, cells}).permute({0, 2, 3, 1});
  return prefix > 0 ? torch::constant_pad_nd(mixed, {0, 0, prefix, 0}, 0.0) : mixed;  // none at prefix tokens
}

SoftTerms SoftImpl::terms(const torch::Tensor& x, const MixerContext& ctx) {
  check_layout(x, ctx);
  SoftTerms t;
  // Q = X W_q + b, V = X W_v + b; K = Q; Q <- Q / d^(1/4).
  t.queries = split_heads(query->forward(x), heads_) / std::pow(static_cast<double>(head_dim_), 0.25);
  t.values = split_heads(value->forward(x), heads_);
  t.landmarks = landmarks(t.queries, ctx);
  t.k1 = soft_gaussian_kernel(t.queries, t.landmarks);    // [B, h, N, m]
  t.k2 = soft_gaussian_kernel(t.landmarks, t.landmarks);  // [B, h, m, m]
  t.inverse = landmark_inverse(t.k2);
  return t;
}

torch::Tensor SoftImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const SoftTerms t = terms(x, ctx);
  const auto k1_t = t.k1.transpose(-1, -2);
  // X = K1 (pinv(K2) (K1^T V)), right to left: O(N m d).
  auto mixed = t.k1.matmul(t.inverse.matmul(k1_t.matmul(t.values)));
  if (local) mixed = mixed + local_term(t.values, ctx);
  if (capturing(ctx.probe)) ctx.probe->record(ctx.layer, kKey, t.k1.matmul(t.inverse).matmul(k1_t));
  // Heads merged, W_o, dropout.
  const auto merged = mixed.transpose(1, 2).reshape({x.size(0), x.size(1), heads_ * head_dim_});
  return torch::dropout(proj->forward(merged), options_.proj_drop(), is_training());
}

const OptionsSchema<SoftOptions>& soft_schema() {
  static const auto schema = [] {
    using O = SoftOptions;
    OptionsSchema<O> s;
    BLOCKLAB_OPTION(s, heads, "attention heads h (default 4); dim must be divisible by h").min = 1;
    BLOCKLAB_OPTION(s, ratio,
                    "landmark stride s: one landmark per s x s patch of the grid (zero-padded at the bottom and "
                    "right), m = ceil(H/s) ceil(W/s) (default 2)")
        .min = 1;
    BLOCKLAB_OPTION(s, local_kernel,
                    "k of the depthwise k x k conv of the values added to the output, one filter per head; odd, "
                    "0 = no local term (default 3)")
        .min = 0;
    BLOCKLAB_OPTION(s, newton_iterations, "Newton-Schulz steps for pinv(K2 + 0.01 I) (default 20)").min = 1;
    s.choice(
        "normalisation", {"none", "symmetric"},
        "none: K1 pinv(K2) K1^T V (SOFT); symmetric: pinv(K2) replaced by D pinv(K2) D, D = diag(rowsum(K2))^-1/2 "
        "(the normalised SOFT) (default none)",
        [](O& o, const std::string& v) { o.normalisation(v); }, [](const O& o) { return o.normalisation(); });
    BLOCKLAB_OPTION(s, qkv_bias, "bias on the query and value projections (default true)");
    rate(BLOCKLAB_OPTION(s, proj_drop, "dropout after the output projection (default 0)"));
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(SoftImpl::kKey)
                      .summary("SOFT: softmax-free Gaussian-kernel attention, linear through s x s conv landmarks and "
                               "a Newton-Schulz pseudo-inverse, plus a depthwise local conv of the values")
                      .paper("SOFT: Softmax-free Transformer with Linear Complexity (Lu et al., 2021), "
                             "arXiv:2110.11945")
                      .equation("K1 pinv(K2) (K1^T V) + DWConv_k(V), K1 = exp(-|q_i - l_j|^2 / 2), "
                                "K2 = exp(-|l_i - l_j|^2 / 2), q = (x W_q + b) / d^(1/4) (keys = queries), "
                                "l = GELU(LN(Conv_s(q)))")
                      .schema(soft_schema().schema())
                      .example("{heads: 2}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto options = bind_options(soft_schema(), params);
                    check_heads(args.dim, options.heads(), params);
                    const auto k = options.local_kernel();
                    if (k % 2 == 0 && k != 0)
                      config_fail(
                          params, "local_kernel",
                          "local_kernel must be odd (its padding k/2 keeps the grid) or 0 (no local term), got " +
                              std::to_string(k),
                          {"local_kernel: 3, 5, 7, 9 (the SOFT stages use 9, 5, 3)"});
                    return std::make_shared<SoftImpl>(args.dim, options);
                  });

}  // namespace
}  // namespace blocklab
