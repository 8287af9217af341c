#include "blocks/conv/hyena_2d.h"

#include <algorithm>
#include <cmath>

#include "blocks/common/long_conv.h"

namespace blocklab {

torch::Tensor hyena_offset_features(const torch::Tensor& offsets, std::int64_t extent, std::int64_t emb_dim) {
  const auto bands = (emb_dim - 1) / 2;
  const auto d = offsets.to(torch::kFloat64).unsqueeze(1);  // [K, 1]
  const auto t = d / static_cast<double>(std::max<std::int64_t>(extent - 1, 1));
  const auto w = 2.0 * M_PI * d / static_cast<double>(extent);
  const auto f = torch::linspace(1e-4, static_cast<double>(bands - 1), bands, torch::kFloat64).unsqueeze(0);
  return torch::cat({t, torch::cos(f * w), -torch::sin(f * w)}, 1);  // as hyena_positional_features
}

HyenaFilter2dImpl::HyenaFilter2dImpl(std::int64_t channels, const HyenaFilterOptions& o)
    : emb_dim_(o.emb_dim()), shift_(o.window_shift()) {
  mlp = register_module("mlp", ImplicitFilterMlp(2 * o.emb_dim(), channels, o));
  decay = register_buffer("decay", hyena_decay_rates(channels, o));
}

torch::Tensor HyenaFilter2dImpl::filter(std::int64_t height, std::int64_t width, bool full) {
  const auto offsets = [&](std::int64_t extent) {
    return full ? torch::arange(-(extent - 1), extent, torch::kLong) : torch::arange(extent, torch::kLong);
  };
  const auto rows = offsets(height), cols = offsets(width);
  const auto kh = rows.size(0), kw = cols.size(0);
  const auto opts = decay.options();
  const auto zr = hyena_offset_features(rows, height, emb_dim_).to(opts);  // [Kh, e]
  const auto zc = hyena_offset_features(cols, width, emb_dim_).to(opts);   // [Kw, e]
  const auto z =
      torch::cat({zr.unsqueeze(1).expand({kh, kw, emb_dim_}), zc.unsqueeze(0).expand({kh, kw, emb_dim_})}, -1);
  // Window: the product of the two axes' exponential decays (|t| of the offset), plus the shift.
  const auto tr = zr.select(1, 0).abs().view({kh, 1, 1}), tc = zc.select(1, 0).abs().view({1, kw, 1});
  const auto window = torch::exp(-tr * decay) * torch::exp(-tc * decay) + shift_;
  return mlp->forward(z) * window;
}

torch::Tensor conv_2d(const torch::Tensor& u, const torch::Tensor& k, std::int64_t from_h, std::int64_t from_w,
                      bool direct) {
  const auto h = u.size(1), w = u.size(2), kh = k.size(0), kw = k.size(1);
  if (direct) {
    auto y = torch::zeros_like(u * k[0][0]);
    for (std::int64_t a = 0; a < kh; ++a)
      for (std::int64_t b = 0; b < kw; ++b) {
        const auto sh = a - from_h, sw = b - from_w;  // y[i, j] += k[a, b] u[i - sh, j - sw]
        const auto rows = h - std::abs(sh), cols = w - std::abs(sw);
        if (rows <= 0 || cols <= 0) continue;
        y.narrow(1, std::max<std::int64_t>(sh, 0), rows)
            .narrow(2, std::max<std::int64_t>(sw, 0), cols)
            .add_(k[a][b] *
                  u.narrow(1, std::max<std::int64_t>(-sh, 0), rows).narrow(2, std::max<std::int64_t>(-sw, 0), cols));
      }
    return y;
  }
  // Sizes where no entry of the window aliases (as fft_conv, per axis).
  const auto ph = power_of_two_at_least(std::max(h + kh - 1 - from_h, from_h + h));
  const auto pw = power_of_two_at_least(std::max(w + kw - 1 - from_w, from_w + w));
  const auto spectrum = torch::fft::rfftn(u, {ph, pw}, {1, 2}) * torch::fft::rfftn(k, {ph, pw}, {0, 1});
  return torch::fft::irfftn(spectrum, {ph, pw}, {1, 2}).narrow(1, from_h, h).narrow(2, from_w, w);
}

Hyena2dImpl::Hyena2dImpl(std::int64_t dim, const Hyena2dOptions& o)
    : dim_(dim), order_(o.order()), full_(o.span() == "full"), direct_(o.conv() == "direct") {
  const auto inner = (order_ + 1) * dim;
  in_proj = register_module("in_proj", torch::nn::Linear(dim, inner));
  out_proj = register_module("out_proj", torch::nn::Linear(dim, dim));
  short_conv = register_module("short_conv",
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(inner, inner, 3).padding(1).groups(inner)));
  filter = register_module("filter", HyenaFilter2d((order_ - 1) * dim, hyena_filter_options(o)));
  skip = register_parameter("skip", torch::randn({(order_ - 1) * dim}));
}

MixerCapabilities Hyena2dImpl::capabilities() const {
  MixerCapabilities c;
  c.needs_grid = true;
  return c;
}

torch::Tensor Hyena2dImpl::filters(std::int64_t height, std::int64_t width) {
  const auto h = filter->filter(height, width, full_);  // [Kh, Kw, (N-1) C], the code's '(o d)' layout
  return h.view({h.size(0), h.size(1), order_ - 1, dim_}).permute({2, 0, 1, 3});
}

torch::Tensor Hyena2dImpl::grid_conv(const torch::Tensor& v, const torch::Tensor& h) const {
  const auto from_h = full_ ? v.size(1) - 1 : 0, from_w = full_ ? v.size(2) - 1 : 0;
  return conv_2d(v, h, from_h, from_w, direct_);
}

torch::Tensor Hyena2dImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const auto b = x.size(0), n = x.size(1), gh = ctx.grid_height, gw = ctx.grid_width, prefix = ctx.prefix_tokens;
  TORCH_CHECK(ctx.has_grid() && prefix + gh * gw == n, kKey, ": needs a token grid (got ", n, " tokens, ", prefix,
              " prefix and a ", gh, "x", gw, " grid)");
  const auto as_grid = [&](const torch::Tensor& t) { return t.narrow(1, prefix, gh * gw).unflatten(1, {gh, gw}); };
  auto z = in_proj->forward(x);
  const auto local = short_conv->forward(as_grid(z).permute({0, 3, 1, 2})).permute({0, 2, 3, 1}).flatten(1, 2);
  z = torch::cat({z.narrow(1, 0, prefix), local}, 1);  // the prefix skips the 3x3 convolution
  const auto parts = z.split(dim_, -1);                // x_0 .. x_{N-1}, v
  const auto h = filters(gh, gw);
  const auto beta = skip.view({order_ - 1, dim_});
  auto v = parts[order_];
  for (std::int64_t j = 0; j + 1 < order_; ++j) {
    v = v * parts[order_ - 1 - j];
    const auto grid = as_grid(v);
    auto mixed = grid_conv(grid, h[j]).flatten(1, 2);
    if (prefix > 0) mixed = torch::cat({grid.mean({1, 2}, true).squeeze(1).expand({b, prefix, dim_}), mixed}, 1);
    v = mixed + beta[j] * v;
  }
  return out_proj->forward(v * parts[0]);
}

const OptionsSchema<Hyena2dOptions>& hyena_2d_schema() {
  static const auto schema = [] {
    OptionsSchema<Hyena2dOptions> s;
    BLOCKLAB_OPTION(s, order, "Hyena order N: N + 1 projections, N - 1 2-D long convolutions (default 2)").min = 2;
    s.choice(
        "span", {"full", "quadrant"},
        "filter offsets: full (every direction, non-causal) or quadrant (the code's fftconv2d) (default full)",
        [](Hyena2dOptions& o, const std::string& v) { o.span(v); }, [](const Hyena2dOptions& o) { return o.span(); });
    declare_hyena_filter_options(s);
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_hyena_2d(const ConfigNode& params, const MixerArgs& args) {
  const auto o = bind_options(hyena_2d_schema(), params);
  check_hyena_filter_options(params, hyena_filter_options(o), Hyena2dImpl::kKey);
  return std::make_shared<Hyena2dImpl>(args.dim, o);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(Hyena2dImpl::kKey)
                      .summary("Hyena N-D on a patch grid: gated 2-D implicit long convolutions by 2-D FFT")
                      .paper("Multi-Dimensional Hyena for Spatial Inductive Bias (Zimerman & Wolf, 2023), "
                             "arXiv:2309.13600")
                      .equation("x_0..x_{N-1}, v = DWConv3x3(x W_in); v <- h_j ** (v ⊙ x_{N-1-j}) + beta_j ⊙ (v ⊙ "
                                "x_{N-1-j}); y = (v ⊙ x_0) W_out, h_j = window ⊙ FFN([z(d_r); z(d_c)])")
                      .schema(hyena_2d_schema().schema())
                      .example("{filter_width: 16}"),
                  make_hyena_2d);

}  // namespace
}  // namespace blocklab
