#include "blocks/conv/hyena.h"

#include "blocks/common/multi_head.h"

namespace blocklab {

HyenaImpl::HyenaImpl(std::int64_t dim, std::int64_t max_tokens, const HyenaOptions& o)
    : dim_(dim), order_(o.order()), direct_(o.conv() == "direct") {
  in_proj = register_module("in_proj", torch::nn::Linear(dim, (order_ + 1) * dim));
  out_proj = register_module("out_proj", torch::nn::Linear(dim, dim));
  short_conv = register_module("short_conv", ShortConv((order_ + 1) * dim, o.short_taps(), /*causal=*/true));
  filter = register_module("filter", HyenaFilter((order_ - 1) * dim, max_tokens, hyena_filter_options(o)));
  skip = register_parameter("skip", torch::randn({(order_ - 1) * dim}));
}

MixerCapabilities HyenaImpl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;  // causal only
  c.variable_lengths = true;
  return c;
}

torch::Tensor HyenaImpl::filters(std::int64_t n) {
  return filter->filter(n).view({n, dim_, order_ - 1}).permute({2, 0, 1});
}

torch::Tensor HyenaImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const auto n = x.size(1);
  const auto z = short_conv->forward(in_proj->forward(zero_padding(x, ctx)));  // Algorithm 2
  const auto parts = z.split(dim_, -1);                                        // x_0 .. x_{N-1}, v
  const auto h = filters(n);                                                   // [N-1, n, C]
  const auto beta = skip.view({dim_, order_ - 1});
  auto v = parts[order_];
  for (std::int64_t j = 0; j + 1 < order_; ++j) {  // Algorithm 1's recurrence (the code's order)
    v = v * parts[order_ - 1 - j];
    v = implicit_long_conv(v, h[j], {}, direct_) + beta.select(1, j) * v;
  }
  return out_proj->forward(v * parts[0]);
}

torch::Tensor HyenaImpl::mixing_matrix(const torch::Tensor& x) {
  const auto n = x.size(1);
  const auto parts = short_conv->forward(in_proj->forward(x)).split(dim_, -1);
  const auto gate = [&](std::int64_t i) { return torch::diag_embed(parts[i].transpose(1, 2)); };  // [B, C, n, n]
  const auto h = filters(n);
  const auto beta = skip.view({dim_, order_ - 1});
  auto m = gate(order_ - 1);
  for (std::int64_t j = 0; j + 1 < order_; ++j) {
    const auto s = long_conv_matrix(h[j], {}) + torch::diag_embed(beta.select(1, j).unsqueeze(1).expand({dim_, n}));
    m = torch::matmul(s, m);
    m = torch::matmul(gate(j + 2 < order_ ? order_ - 2 - j : 0), m);
  }
  return m;
}

const OptionsSchema<HyenaOptions>& hyena_schema() {
  static const auto schema = [] {
    OptionsSchema<HyenaOptions> s;
    BLOCKLAB_OPTION(s, order, "Hyena order N: N + 1 projections, N - 1 long convolutions (default 2)").min = 2;
    BLOCKLAB_OPTION(s, short_taps, "taps of the causal short depthwise convolution (default 3)").min = 1;
    declare_hyena_filter_options(s);
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_hyena(const ConfigNode& params, const MixerArgs& args) {
  const auto o = bind_options(hyena_schema(), params);
  check_hyena_filter_options(params, hyena_filter_options(o), HyenaImpl::kKey);
  const auto max_tokens = longest_sequence(
      args, params, "type", 1,
      std::string(HyenaImpl::kKey) + ": the implicit filter is built for the longest sequence, but max_tokens is " +
          std::to_string(args.max_tokens),
      "build it inside a model (which sets max_tokens) or pass MixerArgs with max_tokens >= 1");
  return std::make_shared<HyenaImpl>(args.dim, max_tokens, o);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(HyenaImpl::kKey)
                      .summary("Hyena: gated implicit long convolutions (FFN-generated, windowed filters), causal")
                      .paper("Hyena Hierarchy (Poli et al., 2023), arXiv:2302.10866")
                      .equation("x_0..x_{N-1}, v = ShortConv(x W_in); v <- h_j * (v ⊙ x_{N-1-j}) + beta_j ⊙ (v ⊙ "
                                "x_{N-1-j}); y = (v ⊙ x_0) W_out, h_j = window ⊙ FFN(pos)")
                      .schema(hyena_schema().schema())
                      .example("{filter_width: 16}"),
                  make_hyena);

}  // namespace
}  // namespace blocklab
