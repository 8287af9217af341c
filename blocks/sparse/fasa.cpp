#include "blocks/sparse/fasa.h"

#include "blocks/common/grid_image.h"

#include <cmath>
#include <numeric>

#include "blocks/common/init.h"
#include "registry/config_error.h"

namespace blocklab {

namespace {

namespace F = torch::nn::functional;

// A depthwise 3x3 convolution with bias, padding 1 (FaViT's local convs).
torch::nn::Conv2d fasa_depthwise3x3(std::int64_t channels) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 3).padding(1).groups(channels));
}

// The channel ratios of the groups (favit.py: mul).
std::vector<std::int64_t> fasa_ratios(std::int64_t sr) {
  return sr > 1 ? std::vector<std::int64_t>{2, 7, 7} : std::vector<std::int64_t>{1, 7};
}

// softmax(q k^T scale) v over one key set shared by every query: q [B, h, N, d], k, v [B, h, M, d].
torch::Tensor fasa_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
  return torch::matmul(torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * scale, -1), v);
}

}  // namespace

FasaSeparableConvImpl::FasaSeparableConvImpl(std::int64_t channels) {
  depth_conv = register_module("depth_conv", fasa_depthwise3x3(channels));
  point_conv = register_module("point_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 1)));
}

torch::Tensor FasaSeparableConvImpl::forward(const torch::Tensor& x) {
  return point_conv->forward(depth_conv->forward(x));
}

FasaAttentionImpl::FasaAttentionImpl(std::int64_t dim, const FasaOptions& options) : options_(options) {
  const auto ratios = fasa_ratios(options.sr());
  const auto unit = dim / std::accumulate(ratios.begin(), ratios.end(), std::int64_t{0});
  for (const auto r : ratios) widths_.push_back(unit * r);
  const auto c0 = widths_[0], h = options.heads();
  const bool bias = options.qkv_bias();
  q = register_module("q", make_linear(dim, dim, bias));
  kv_g = register_module("kv_g", make_linear(c0, 2 * c0, bias));
  sr = register_module("sr", torch::nn::Conv2d(torch::nn::Conv2dOptions(c0, c0, options.sr()).stride(options.sr())));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c0})));
  local_conv_g = register_module("local_conv_g", fasa_depthwise3x3(c0));
  kv_l = register_module("kv_l", FasaSeparableConv(dim - c0));
  fcs = register_module("fcs", torch::nn::ModuleList());
  single_heads = register_module("single_heads", torch::nn::ModuleList());
  local_convs = register_module("local_convs", torch::nn::ModuleList());
  for (std::size_t i = 1; i < widths_.size(); ++i) {
    const auto d = widths_[i] / h;
    fcs->push_back(make_linear(d, d, bias));
    single_heads->push_back(make_linear(d, 2 * d, bias));
    local_convs->push_back(fasa_depthwise3x3(widths_[i]));
  }
  proj = register_module("proj", make_linear(dim, dim, /*bias=*/true));
}

MixerCapabilities FasaAttentionImpl::capabilities() const {
  MixerCapabilities c;
  c.needs_grid = true;
  return c;
}

std::int64_t FasaAttentionImpl::group_offset(std::int64_t group) const {
  return std::accumulate(widths_.begin(), widths_.begin() + group, std::int64_t{0});
}

std::int64_t FasaAttentionImpl::window_on(std::int64_t group, std::int64_t height, std::int64_t width) const {
  return std::min(options_.window(), (std::min(height, width) - 1) / dilation(group) + 1);
}

std::pair<torch::Tensor, torch::Tensor> FasaAttentionImpl::coarse_keys_values(const torch::Tensor& grid0) {
  const auto s = options_.sr(), c0 = widths_[0];
  // An extent below sr is zero-padded up to sr (bottom, right); larger ones are floored by the conv.
  const auto padded = F::pad(grid0, F::PadFuncOptions({0, std::max<std::int64_t>(0, s - grid0.size(3)), 0,
                                                       std::max<std::int64_t>(0, s - grid0.size(2))}));
  const auto reduced = sr->forward(padded);  // [B, C_0, H / sr, W / sr]
  const auto kv = kv_g->forward(norm->forward(image_to_grid_tokens(reduced)));
  const auto k = kv.narrow(2, 0, c0), v = kv.narrow(2, c0, c0);
  const auto v_grid = grid_tokens_to_image(v, reduced.size(2), reduced.size(3));
  return {k, v + image_to_grid_tokens(local_conv_g->forward(v_grid))};
}

torch::Tensor FasaAttentionImpl::pool_windows(const torch::Tensor& kv, std::int64_t group) const {
  const auto b = kv.size(0), height = kv.size(2), width = kv.size(3), h = options_.heads();
  const auto delta = dilation(group), ws = window_on(group, height, width);
  const auto stride = delta * (ws - 1) + 1;
  const auto pad_b = (stride - height % stride) % stride, pad_r = (stride - width % stride) % stride;
  const auto padded = F::pad(kv, F::PadFuncOptions({0, pad_r, 0, pad_b}).mode(torch::kReflect));
  // [B, C_i ws^2, nW], rows (channel, in-window position) -> [B, h, d, ws^2, nW]
  const auto windows = F::unfold(padded, F::UnfoldFuncOptions({ws, ws}).dilation(delta).stride(stride))
                           .view({b, h, kv.size(1) / h, ws * ws, -1});
  if (options_.pool_mode() == "mean_over_windows") return windows.mean(-1).transpose(-2, -1);
  // official_flat: per position the (window, channel) entries flattened window-major, d bins of nW.
  const auto d = kv.size(1) / h, nw = windows.size(-1);
  return windows.permute({0, 1, 3, 4, 2}).reshape({b, h, ws * ws, d, nw}).mean(-1);
}

std::pair<torch::Tensor, torch::Tensor> FasaAttentionImpl::dilated_keys_values(const torch::Tensor& kv,
                                                                               std::int64_t group) {
  const auto b = kv.size(0), h = options_.heads(), width_i = kv.size(1), d = width_i / h;
  const auto ws = window_on(group, kv.size(2), kv.size(3));
  const auto pooled = pool_windows(kv, group);  // [B, h, ws^2, d]
  const auto& fc = fcs[group - 1]->as<torch::nn::Linear>();
  const auto& single = single_heads[group - 1]->as<torch::nn::Linear>();
  const auto kv2 = single->forward(fc->forward(pooled));
  const auto k = kv2.narrow(-1, 0, d), v = kv2.narrow(-1, d, d);
  // v + DWConv3x3 over the C_i = (h, d) channels on the ws x ws grid of positions.
  const auto v_grid = v.transpose(2, 3).reshape({b, width_i, ws, ws});
  const auto conv = local_convs[group - 1]->as<torch::nn::Conv2d>()->forward(v_grid);
  return {k, v + conv.view({b, h, d, ws * ws}).transpose(2, 3)};
}

torch::Tensor FasaAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, kKey, ": has no causal form; use it in a non-causal model");
  TORCH_CHECK(ctx.has_grid() && x.size(1) == ctx.prefix_tokens + ctx.grid_height * ctx.grid_width, kKey,
              ": needs prefix + H x W grid tokens, got ", x.size(1), " tokens for a ", ctx.grid_height, "x",
              ctx.grid_width, " grid and ", ctx.prefix_tokens, " prefix tokens");
  const auto b = x.size(0), n = x.size(1), h = options_.heads();
  const auto grid = grid_tokens_to_image(x.narrow(1, ctx.prefix_tokens, n - ctx.prefix_tokens), ctx.grid_height,
                                         ctx.grid_width);  // [B, C, H, W]
  const auto queries = q->forward(x);                      // every token, prefix ones too
  const auto c0 = widths_[0];
  std::vector<torch::Tensor> outputs;
  {
    const auto [k, v] = coarse_keys_values(grid.narrow(1, 0, c0));
    outputs.push_back(fasa_attend(queries.narrow(2, 0, c0), k, v, 1.0 / std::sqrt(double(c0))));
  }
  const auto kv = kv_l->forward(grid.narrow(1, c0, grid.size(1) - c0));
  for (std::int64_t i = 1; i < std::int64_t(widths_.size()); ++i) {
    const auto width_i = widths_[i], d = width_i / h, offset = group_offset(i);
    const auto [k, v] = dilated_keys_values(kv.narrow(1, offset - c0, width_i), i);
    const auto qi = queries.narrow(2, offset, width_i).view({b, n, h, d}).transpose(1, 2);
    outputs.push_back(fasa_attend(qi, k, v, 1.0 / std::sqrt(double(d))).transpose(1, 2).reshape({b, n, width_i}));
  }
  return proj->forward(torch::cat(outputs, 2));
}

const OptionsSchema<FasaOptions>& fasa_schema() {
  static const auto schema = [] {
    OptionsSchema<FasaOptions> s;
    BLOCKLAB_OPTION(s, heads, "heads of the dilated groups; group 0 has one (default 2)").min = 1;
    BLOCKLAB_OPTION(s, sr,
                    "spatial reduction of group 0 (conv kernel = stride) and dilation of group 2; groups "
                    "[2, 7, 7] / 16 of the channels, or [1, 7] / 8 at sr = 1 (default 2)")
        .min = 1;
    BLOCKLAB_OPTION(s, window,
                    "window side ws of the dilated groups: ws^2 pooled keys (default 7; clamped on grids "
                    "smaller than the dilated window)")
        .min = 1;
    s.choice(
        "pool_mode", {"mean_over_windows", "official_flat"},
        "pooling of each in-window position over the windows: the mean (default) or the official code's "
        "flatten + AdaptiveAvgPool (mixes channels across windows)",
        [](FasaOptions& o, const std::string& v) { o.pool_mode(v); },
        [](const FasaOptions& o) { return o.pool_mode(); });
    BLOCKLAB_OPTION(s, qkv_bias, "biases of q, kv_g and the per-group Linears (default true, as FaViT's models)");
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_fasa(const ConfigNode& params, const MixerArgs& args) {
  const auto options = bind_options(fasa_schema(), params);
  const auto ratios = fasa_ratios(options.sr());
  const auto total = std::accumulate(ratios.begin(), ratios.end(), std::int64_t{0});
  if (args.dim % total != 0)
    config_fail(params, "sr",
                "the width " + std::to_string(args.dim) + " must be a multiple of " + std::to_string(total) +
                    " (channel groups " + (options.sr() > 1 ? "[2, 7, 7]" : "[1, 7]") + ")");
  if ((args.dim / total * 7) % options.heads() != 0)
    config_fail(params, "heads",
                "heads must divide the dilated groups' width " + std::to_string(args.dim / total * 7) + ", got " +
                    std::to_string(options.heads()));
  return std::make_shared<FasaAttentionImpl>(args.dim, options);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(FasaAttentionImpl::kKey)
                      .summary("FaViT factorization self-attention: channel groups; group 0 attends to a "
                               "strided-conv reduced grid, the others to ws^2 keys pooled over dilated windows")
                      .paper("Factorization Vision Transformer: Modeling Long Range Dependency with Local Window "
                             "Cost (Qin et al., 2023), arXiv:2312.08614")
                      .equation("o_0 = softmax(q_0 k_g^T / sqrt(C_0)) v_g, [k_g, v_g] = LN(Conv_sr(x_0)) W; o_i = "
                                "softmax(q_i k_i^T / sqrt(d)) v_i, [k_i, v_i] = W(mean_w unfold_{ws, delta_i}(kv)); "
                                "out = [o_0, o_1, o_2] W_proj")
                      .schema(fasa_schema().schema())
                      .example("{heads: 2, sr: 2, window: 3}"),
                  make_fasa);

}  // namespace
}  // namespace blocklab
