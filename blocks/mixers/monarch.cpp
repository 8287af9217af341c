#include "blocks/mixers/monarch.h"

#include "blocks/common/multi_head.h"

namespace blocklab {

MonarchMixerImpl::MonarchMixerImpl(std::int64_t dim, std::int64_t max_tokens, const MonarchMixerOptions& o)
    : dim_(dim), bidirectional_(o.bidirectional()), direct_(o.conv() == "direct") {
  in_proj = structured_linear(o.projection(), dim, 3 * dim, o.nblocks(), true);
  out_proj = structured_linear(o.projection(), dim, dim, o.nblocks(), true);
  register_module("in_proj", in_proj.ptr());
  register_module("out_proj", out_proj.ptr());
  short_conv = register_module("short_conv", ShortConv(3 * dim, o.short_taps(), /*causal=*/true));
  const auto filter_options = hyena_filter_options(o);
  const std::int64_t mlps = bidirectional_ ? 2 : 1;
  filter = register_module("filter", HyenaFilter(dim, max_tokens, filter_options, mlps));
  skip = register_parameter("skip", torch::randn({dim}));
  if (o.residual_long_conv()) {
    residual_filter = register_module("residual_filter", HyenaFilter(dim, max_tokens, filter_options, mlps));
    residual_skip = register_parameter("residual_skip", torch::randn({dim}));
  }
}

MixerCapabilities MonarchMixerImpl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;  // honours ctx.causal (drops the reverse filters); always causal when not bidirectional
  c.variable_lengths = true;
  return c;
}

torch::Tensor MonarchMixerImpl::long_conv(const torch::Tensor& v, HyenaFilter& f, const torch::Tensor& beta,
                                          bool causal, const MixerContext& ctx) {
  const auto n = v.size(1);
  const auto h_rev = causal ? torch::Tensor() : f->filter(n, 1);
  const auto u = zero_padding(v, ctx);
  return implicit_long_conv(u, f->filter(n, 0), h_rev, direct_) + beta * u;
}

torch::Tensor MonarchMixerImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const bool causal = ctx.causal || !bidirectional_;
  const auto z = short_conv->forward(in_proj.forward(x)).split(dim_, -1);  // x1, x2, v
  auto y = z[1] * long_conv(z[0] * z[2], filter, skip, causal, ctx);
  if (residual_filter) y = y + long_conv(x, residual_filter, residual_skip, causal, ctx);
  return out_proj.forward(y);
}

std::pair<torch::Tensor, torch::Tensor> MonarchMixerImpl::conv_matrices(std::int64_t n, bool causal) {
  causal = causal || !bidirectional_;
  const auto matrix = [&](HyenaFilter& f, const torch::Tensor& beta) {
    const auto t = long_conv_matrix(f->filter(n, 0), causal ? torch::Tensor() : f->filter(n, 1));
    return t + torch::diag_embed(beta.unsqueeze(1).expand({dim_, n}));
  };
  return {matrix(filter, skip), residual_filter ? matrix(residual_filter, residual_skip) : torch::Tensor()};
}

const OptionsSchema<MonarchMixerOptions>& monarch_mixer_schema() {
  static const auto schema = [] {
    OptionsSchema<MonarchMixerOptions> s;
    BLOCKLAB_OPTION(s, bidirectional,
                    "reverse filters that read the future (M2-BERT; dropped under causal) "
                    "(default true)");
    BLOCKLAB_OPTION(s, residual_long_conv, "add a second long convolution of the input u (default true)");
    s.choice(
        "projection", {"dense", "monarch", "blockdiag"},
        "W_in and W_out: dense (the released M2-BERT), monarch (P L P^T R P) or blockdiag (default dense)",
        [](MonarchMixerOptions& o, const std::string& v) { o.projection(v); },
        [](const MonarchMixerOptions& o) { return o.projection(); });
    BLOCKLAB_OPTION(s, nblocks, "blocks of the monarch/blockdiag projections, <= dim (default 4)").min = 1;
    BLOCKLAB_OPTION(s, short_taps, "taps of the causal short depthwise convolution (default 3)").min = 1;
    declare_hyena_filter_options(s);
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_monarch_mixer(const ConfigNode& params, const MixerArgs& args) {
  const auto o = bind_options(monarch_mixer_schema(), params);
  check_hyena_filter_options(params, hyena_filter_options(o), MonarchMixerImpl::kKey);
  if (o.projection() != "dense" && o.nblocks() > args.dim)
    config_fail(params, "nblocks",
                std::string(MonarchMixerImpl::kKey) + ": nblocks " + std::to_string(o.nblocks()) + " exceeds dim " +
                    std::to_string(args.dim),
                {"use nblocks <= dim, e.g. about sqrt(dim) for the square Monarch matrix"});
  const auto max_tokens =
      longest_sequence(args, params, "type", 1,
                       std::string(MonarchMixerImpl::kKey) +
                           ": the implicit filter is built for the longest sequence, but max_tokens is " +
                           std::to_string(args.max_tokens),
                       "build it inside a model (which sets max_tokens) or pass MixerArgs with max_tokens >= 1");
  return std::make_shared<MonarchMixerImpl>(args.dim, max_tokens, o);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(MonarchMixerImpl::kKey)
                      .summary("Monarch Mixer (M2) sequence mixer: gated bidirectional implicit long convolutions")
                      .paper("Monarch Mixer (Fu et al., 2023), arXiv:2310.12109")
                      .equation("x1, x2, v = ShortConv(u W_in); y = x2 ⊙ (h * (x1 ⊙ v) + beta ⊙ x1 ⊙ v) + h2 * u + "
                                "beta2 ⊙ u; out = y W_out (h two-sided unless causal)")
                      .schema(monarch_mixer_schema().schema())
                      .example("{filter_width: 16, projection: monarch}"),
                  make_monarch_mixer);

}  // namespace
}  // namespace blocklab
