#include "blocks/sparse/sg_former.h"

#include "blocks/common/grid_image.h"

#include <cmath>

#include "blocks/attention/parts/local_patterns.h"
#include "blocks/local/local_attention.h"
#include "registry/config_error.h"

namespace blocklab {

std::vector<double> sg_former_fractions(std::int64_t sr) {
  if (sr >= 4) return {0.25, 0.5, 0.25};
  return {0.5, 0.5};
}

std::vector<std::int64_t> sg_former_group_sizes(std::int64_t sr) {
  if (sr >= 8) return {196, 56, 28};
  if (sr >= 4) return {49, 14, 7};
  return {2, 1};
}

torch::Tensor sg_former_global_term(const torch::Tensor& weights, std::int64_t reduced_h, std::int64_t reduced_w) {
  return weights.mean(1).mean(1).view({weights.size(0), reduced_h, reduced_w});
}

torch::Tensor sg_former_upsample(const torch::Tensor& m, std::int64_t sr, std::int64_t height, std::int64_t width) {
  return m.repeat_interleave(sr, 1).repeat_interleave(sr, 2).narrow(1, 0, height).narrow(2, 0, width);
}

torch::Tensor sg_former_local_term(const torch::Tensor& weights, const LocalGroups& windows, std::int64_t keys) {
  const auto per_key = weights.mean(1).mean(2).flatten(1);  // [B, G m]: mean over heads and queries
  const auto index = windows.key_index.to(weights.device()).flatten().expand({weights.size(0), -1});
  return torch::zeros({weights.size(0), keys}, weights.options()).scatter_add(1, index, per_key);
}

namespace {

// The grid tokens [B, H W, C] as the image [B, C, H, W], zero-padded at the bottom and right to
// a multiple of `multiple`.
torch::Tensor sg_former_padded_image(const torch::Tensor& grid, std::int64_t height, std::int64_t width,
                                     std::int64_t multiple) {
  const auto image = grid_tokens_to_image(grid, height, width);
  const auto pad_h = (multiple - height % multiple) % multiple, pad_w = (multiple - width % multiple) % multiple;
  return torch::constant_pad_nd(image, {0, pad_w, 0, pad_h}, 0.0);
}

torch::Tensor sg_former_merge(const torch::Tensor& o) { return o.transpose(1, 2).flatten(2); }  // [B,h,N,d]->[B,N,hd]

}  // namespace

SgFormerAttentionImpl::SgFormerAttentionImpl(std::int64_t dim, const SgFormerOptions& options)
    : options_(options), dim_(dim), head_dim_(dim / options.heads()), scale_(1.0 / std::sqrt(double(head_dim_))) {
  const auto linear = [&](std::int64_t in, std::int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(options.qkv_bias()));
  };
  if (hybrid()) {
    q1 = register_module("q1", linear(dim, dim / 2));
    q2 = register_module("q2", linear(dim, dim / 2));
    reduce =
        register_module("sr", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, options.sr()).stride(options.sr())));
    reduce_norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  } else {
    q = register_module("q", linear(dim, dim));
    const auto sizes = options.group_sizes();
    for (std::size_t i = 0; i < sizes.size(); ++i)
      aggregators.push_back(register_module("f" + std::to_string(i + 1), torch::nn::Linear(sizes[i], 1)));
  }
  kv1 = register_module("kv1", linear(dim, dim));
  kv2 = register_module("kv2", linear(dim, dim));
  lepe_linear = register_module("lepe_linear", torch::nn::Linear(dim, dim));
  lepe_conv = register_module(
      "lepe_conv",
      torch::nn::Conv2d(
          torch::nn::Conv2dOptions(dim, dim, options.lepe_kernel()).padding(options.lepe_kernel() / 2).groups(dim)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

MixerCapabilities SgFormerAttentionImpl::capabilities() const {
  MixerCapabilities c;
  c.needs_grid = true;  // no probe record: the maps are over reduced, windowed or aggregated keys
  return c;
}

torch::Tensor SgFormerAttentionImpl::heads_of(const torch::Tensor& t) const {
  return t.unflatten(2, {-1, head_dim_}).transpose(1, 2);
}

std::pair<torch::Tensor, torch::Tensor> SgFormerAttentionImpl::split_kv(const torch::Tensor& kv) const {
  const auto half = kv.size(2) / 2;  // [k | v], as the code's reshape(B, N, 2, h/2, d)
  return {heads_of(kv.narrow(2, 0, half)), heads_of(kv.narrow(2, half, half))};
}

torch::Tensor SgFormerAttentionImpl::lepe(const torch::Tensor& x_grid, const MixerContext& ctx) {
  const auto image = lepe_linear->forward(x_grid).transpose(1, 2).unflatten(2, {ctx.grid_height, ctx.grid_width});
  return image_to_grid_tokens(lepe_conv->forward(image));
}

torch::Tensor SgFormerAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(ctx.has_grid(), kKey, ": needs a token grid");
  TORCH_CHECK(!ctx.causal, kKey, ": has no causal form; use it in a non-causal model");
  return hybrid() ? forward_hybrid(x, ctx).first : forward_reallocation(x, ctx);
}

// Global half: q1 over [prefix; x_r], x_r = GELU(LN(Conv_sr(x))); `weights` gets A1 [B, h/2, N, P + N_r].
torch::Tensor SgFormerAttentionImpl::global_half(const torch::Tensor& x, const MixerContext& ctx,
                                                 torch::Tensor* weights) {
  const auto prefix = ctx.prefix_tokens, grid = ctx.grid_height * ctx.grid_width;
  const auto image = sg_former_padded_image(x.narrow(1, prefix, grid), ctx.grid_height, ctx.grid_width, options_.sr());
  const auto reduced = torch::gelu(reduce_norm->forward(image_to_grid_tokens(reduce->forward(image))));
  const auto [k, v] = split_kv(kv1->forward(torch::cat({x.narrow(1, 0, prefix), reduced}, 1)));
  const auto a = torch::softmax(torch::matmul(heads_of(q1->forward(x)) * scale_, k.transpose(-2, -1)), -1);
  if (weights) *weights = a;
  return sg_former_merge(torch::matmul(a, v));
}

// Local half: window attention (local_core) on the grid padded to a multiple of the window.
torch::Tensor SgFormerAttentionImpl::local_half(const torch::Tensor& x, const MixerContext& ctx, SgSignificance* sig) {
  const auto window_h = fitted_window(ctx.grid_height), window_w = fitted_window(ctx.grid_width);
  const auto pad = [](std::int64_t extent, std::int64_t w) { return (w - extent % w) % w; };
  return with_padded_grid(
      x, ctx, pad(ctx.grid_height, window_h), pad(ctx.grid_width, window_w),
      [&](const torch::Tensor& padded, const MixerContext& padded_ctx) {
        const auto height = padded_ctx.grid_height, width = padded_ctx.grid_width, prefix = padded_ctx.prefix_tokens;
        const auto pattern = with_prefix(window_pattern(height, width, window_h, window_w), prefix);
        const auto [k, v] = split_kv(kv2->forward(padded));
        std::vector<torch::Tensor> weights;
        const auto o = local_attend(heads_of(q2->forward(padded)), k, v, pattern, {}, scale_, &weights);
        if (sig) {
          torch::NoGradGuard no_grad;
          const auto keys = sg_former_local_term(weights.at(0).detach(), pattern.parts.at(0), pattern.keys);
          sig->local_padded = keys.narrow(1, prefix, height * width).view({-1, height, width});
        }
        return sg_former_merge(o);
      });
}

std::pair<torch::Tensor, SgSignificance> SgFormerAttentionImpl::forward_hybrid(const torch::Tensor& x,
                                                                               const MixerContext& ctx) {
  const auto prefix = ctx.prefix_tokens, height = ctx.grid_height, width = ctx.grid_width, grid = height * width;
  torch::Tensor a1;
  SgSignificance sig;
  const auto o = torch::cat({global_half(x, ctx, &a1), local_half(x, ctx, &sig)}, 2);  // [B, N, C]
  const auto mixed =
      torch::cat({o.narrow(1, 0, prefix), o.narrow(1, prefix, grid) + lepe(x.narrow(1, prefix, grid), ctx)}, 1);
  {
    torch::NoGradGuard no_grad;
    const auto sr = options_.sr(), reduced_h = (height + sr - 1) / sr, reduced_w = (width + sr - 1) / sr;
    sig.global_reduced = sg_former_global_term(
        a1.detach().narrow(2, prefix, grid).narrow(3, prefix, reduced_h * reduced_w), reduced_h, reduced_w);
    sig.map = sg_former_upsample(sig.global_reduced, sr, height, width) +
              sig.local_padded.narrow(1, 0, height).narrow(2, 0, width);
  }
  return {proj->forward(mixed), sig};
}

// The reallocation's own significance: its first h/2 heads' queries over the sr-average-pooled
// grid's keys (W_kv1's key rows), the global term upsampled.
torch::Tensor SgFormerAttentionImpl::own_significance(const torch::Tensor& x, const MixerContext& ctx) {
  torch::NoGradGuard no_grad;
  const auto prefix = ctx.prefix_tokens, height = ctx.grid_height, width = ctx.grid_width, grid = height * width;
  const auto sr = options_.sr();
  const auto x_grid = x.narrow(1, prefix, grid).detach();
  const auto pooled = torch::avg_pool2d(sg_former_padded_image(x_grid, height, width, sr), sr, sr);
  const auto k = heads_of(kv1->forward(image_to_grid_tokens(pooled)).narrow(2, 0, dim_ / 2));
  const auto q_half = heads_of(q->forward(x_grid)).narrow(1, 0, options_.heads() / 2);
  const auto a = torch::softmax(torch::matmul(q_half * scale_, k.transpose(-2, -1)), -1);
  return sg_former_upsample(sg_former_global_term(a, pooled.size(2), pooled.size(3)), sr, height, width);
}

torch::Tensor SgFormerAttentionImpl::aggregate(const torch::Tensor& x_grid, const torch::Tensor& sig,
                                               bool column_major) {
  const auto batch = x_grid.size(0), tokens = x_grid.size(1), channels = x_grid.size(2);
  const auto height = sig.size(1), width = sig.size(2);
  const auto xs = column_major
                      ? x_grid.view({batch, height, width, channels}).transpose(1, 2).reshape({batch, tokens, channels})
                      : x_grid;
  const auto s = column_major ? sig.transpose(1, 2).reshape({batch, tokens}) : sig.reshape({batch, tokens});
  const auto order = std::get<1>(s.sort(/*stable=*/true, -1, /*descending=*/false));  // ascending significance
  const auto sorted = xs.gather(1, order.unsqueeze(-1).expand({batch, tokens, channels}));
  std::vector<torch::Tensor> out;
  double cumulative = 0.0;
  std::int64_t start = 0;
  const auto& fractions = options_.fractions();
  for (std::size_t i = 0; i < fractions.size(); ++i) {
    cumulative += fractions[i];
    const auto end = i + 1 == fractions.size() ? tokens : std::int64_t(std::floor(tokens * cumulative + 1e-9));
    const auto n = end - start, g = options_.group_sizes()[i];
    if (n > 0) {  // fraction i: zero-padded to a multiple of g, groups of g -> Linear(g -> 1)
      const auto groups = (n + g - 1) / g;
      const auto part = torch::constant_pad_nd(sorted.narrow(1, start, n), {0, 0, 0, groups * g - n}, 0.0);
      out.push_back(aggregators[i]->forward(part.view({batch, groups, g, channels}).transpose(2, 3)).squeeze(-1));
    }
    start = end;
  }
  return torch::cat(out, 1);  // [B, T, C]
}

torch::Tensor SgFormerAttentionImpl::forward_reallocation(const torch::Tensor& x, const MixerContext& ctx) {
  const auto prefix = ctx.prefix_tokens, grid = ctx.grid_height * ctx.grid_width;
  const auto sig = own_significance(x, ctx);
  const auto x_grid = x.narrow(1, prefix, grid), x_prefix = x.narrow(1, 0, prefix);
  const auto [k1, v1] = split_kv(kv1->forward(torch::cat({x_prefix, aggregate(x_grid, sig, false)}, 1)));
  const auto [k2, v2] = split_kv(kv2->forward(torch::cat({x_prefix, aggregate(x_grid, sig, true)}, 1)));
  const auto k = torch::cat({k1, k2}, 1), v = torch::cat({v1, v2}, 1);  // heads [0, h/2): row-major; rest column
  const auto a = torch::softmax(torch::matmul(heads_of(q->forward(x)) * scale_, k.transpose(-2, -1)), -1);
  const auto o = sg_former_merge(torch::matmul(a, v));
  return proj->forward(torch::cat({o.narrow(1, 0, prefix), o.narrow(1, prefix, grid) + lepe(x_grid, ctx)}, 1));
}

const OptionsSchema<SgFormerOptions>& sg_former_schema() {
  static const auto schema = [] {
    OptionsSchema<SgFormerOptions> s;
    BLOCKLAB_OPTION(s, heads, "attention heads h, even: h/2 global and h/2 local (hybrid) or row/column (default 4)")
        .min = 2;
    s.choice(
        "role", {"hybrid", "reallocation"},
        "hybrid: global (sr-reduced keys) + 7x7-window heads, the paper's odd blocks; reallocation: keys "
        "aggregated from significance-sorted tokens, the even blocks, with its OWN significance (default hybrid)",
        [](SgFormerOptions& o, const std::string& v) { o.role(v); }, [](const SgFormerOptions& o) { return o.role(); });
    BLOCKLAB_OPTION(s, sr, "spatial reduction sr of the global keys (paper: 8, 4, 2 by stage; default 2)").min = 1;
    BLOCKLAB_OPTION(s, window, "local window side M of the hybrid role (default 7)").min = 1;
    BLOCKLAB_OPTION(s, fractions,
                    "reallocation: fractions of the significance-sorted tokens, summing to 1 ([] = by sr: [1/4, 1/2, "
                    "1/4] for sr >= 4, [1/2, 1/2] else; default [])");
    BLOCKLAB_OPTION(s, group_sizes,
                    "reallocation: tokens aggregated into one per fraction ([] = by sr: 8: [196, 56, 28], 4: [49, 14, "
                    "7], else [2, 1]; default [])");
    BLOCKLAB_OPTION(s, qkv_bias, "bias on the query/key/value projections (default true)");
    BLOCKLAB_OPTION(s, lepe_kernel, "kernel of the LePE depth-wise conv, odd (SG-Former: 3; default 3)").min = 1;
    return s;
  }();
  return schema;
}

namespace {

void sg_former_check(SgFormerOptions& o, const ConfigNode& params, std::int64_t dim) {
  if (o.heads() % 2 != 0)
    config_fail(params, "heads", "heads must be even (two halves), got " + std::to_string(o.heads()));
  if (dim % o.heads() != 0)
    config_fail(params, "heads",
                "heads must divide the width " + std::to_string(dim) + ", got " + std::to_string(o.heads()));
  if (o.lepe_kernel() % 2 == 0) config_fail(params, "lepe_kernel", "lepe_kernel must be odd (the conv keeps the grid)");
  if (o.fractions().empty()) o.fractions(sg_former_fractions(o.sr()));
  if (o.group_sizes().empty()) o.group_sizes(sg_former_group_sizes(o.sr()));
  if (o.fractions().size() != o.group_sizes().size())
    config_fail(params, "group_sizes", "group_sizes needs one size per fraction");
  double total = 0.0;
  for (const auto f : o.fractions()) {
    if (f <= 0.0) config_fail(params, "fractions", "fractions must be positive");
    total += f;
  }
  if (std::abs(total - 1.0) > 1e-6) config_fail(params, "fractions", "fractions must sum to 1");
  for (const auto g : o.group_sizes())
    if (g < 1) config_fail(params, "group_sizes", "group sizes must be at least 1");
}

TokenMixer make_sg_former(const ConfigNode& params, const MixerArgs& args) {
  auto options = bind_options(sg_former_schema(), params);
  sg_former_check(options, params, args.dim);
  return std::make_shared<SgFormerAttentionImpl>(args.dim, options);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(SgFormerAttentionImpl::kKey)
                      .summary("SG-Former attention: role hybrid = h/2 heads over sr-reduced keys + h/2 heads in "
                               "7x7 windows (+ significance map); role reallocation = keys aggregated from tokens "
                               "sorted by significance (its OWN coarse significance, not the previous block's); LePE")
                      .paper("SG-Former: Self-guided Transformer with Evolving Token Reallocation (Ren et al., "
                             "2023), arXiv:2308.12216")
                      .equation("hybrid: W_o([softmax(q1 k_r^T/sqrt(d)) v_r, win-softmax(q2 k2^T/sqrt(d)) v2] + "
                                "LePE); realloc: W_o(softmax(q K_s^T/sqrt(d)) V_s + LePE), K_s, V_s from "
                                "Linear(g->1) over sorted groups")
                      .schema(sg_former_schema().schema())
                      .example("{heads: 2, sr: 2, window: 3}"),
                  make_sg_former);

}  // namespace
}  // namespace blocklab
