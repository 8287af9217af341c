#include "blocks/mixers/ponet.h"

#include <cmath>
#include <limits>

#include "blocks/attention/parts/dense_core.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

constexpr double kPadFill = -1e4;  // the official code's fill for padded tokens before max pooling

}  // namespace

PoNetMixerImpl::PoNetMixerImpl(std::int64_t dim, const PoNetOptions& o) : heads_(o.heads()), segments_(o.segments()) {
  in_proj = register_module("in_proj", torch::nn::Linear(dim, 5 * dim));
  out_proj = register_module("out_proj", torch::nn::Linear(dim, dim));
}

MixerCapabilities PoNetMixerImpl::capabilities() const {
  MixerCapabilities c;
  c.variable_lengths = true;
  return c;
}

PoNetMixerImpl::Parts PoNetMixerImpl::project(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, kKey, ": no causal form (the global pooling and the segment maxima read later tokens)");
  const auto b = x.size(0), n = x.size(1);
  const auto parts = in_proj->forward(x).chunk(5, -1);
  Parts p{split_heads(parts[0]), split_heads(parts[1]), split_heads(parts[2]), parts[3], parts[4], {}};
  if (ctx.lengths.defined()) {
    p.padded = padding_mask(ctx.lengths, n, x.device()).view({b, n});
    p.local = p.local.masked_fill(p.padded.unsqueeze(-1), kPadFill);
    p.segment = p.segment.masked_fill(p.padded.unsqueeze(-1), kPadFill);
  }
  return p;
}

torch::Tensor PoNetMixerImpl::global_weights(const Parts& p) const {
  const auto d = p.q.size(-1);
  torch::Tensor q_bar;
  if (p.padded.defined()) {
    const auto valid = p.padded.logical_not().unsqueeze(1).unsqueeze(-1).to(p.q.dtype());  // [B, 1, N, 1]
    q_bar = (p.q * valid).sum(2) / valid.sum(2);
  } else {
    q_bar = p.q.mean(2);  // [B, h, d]
  }
  auto logits = torch::matmul(p.k, q_bar.unsqueeze(-1)).squeeze(-1) / std::sqrt(static_cast<double>(d));  // [B, h, N]
  if (p.padded.defined()) logits = logits.masked_fill(p.padded.unsqueeze(1), -std::numeric_limits<double>::infinity());
  return torch::softmax(logits, -1);
}

torch::Tensor PoNetMixerImpl::segment_max(const torch::Tensor& s) const {
  // Segment r holds tokens [r L, (r + 1) L), L = floor(N / S) + 1 (the official segment index).
  const auto b = s.size(0), n = s.size(1), c = s.size(2), length = n / segments_ + 1;
  const auto count = (n + length - 1) / length;
  const auto padded =
      torch::constant_pad_nd(s, {0, 0, 0, count * length - n}, -std::numeric_limits<double>::infinity());
  const auto maxima = padded.view({b, count, length, c}).amax(2);  // [B, count, C]
  return maxima.repeat_interleave(length, 1).narrow(1, 0, n);
}

torch::Tensor PoNetMixerImpl::split_heads(const torch::Tensor& t) const {
  return t.view({t.size(0), t.size(1), heads_, t.size(2) / heads_}).transpose(1, 2);
}

torch::Tensor PoNetMixerImpl::global_weights(const torch::Tensor& x, const MixerContext& ctx) {
  return global_weights(project(x, ctx));
}

torch::Tensor PoNetMixerImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const Parts p = project(x, ctx);
  const auto g = torch::matmul(global_weights(p).unsqueeze(2), p.k);                       // [B, h, 1, d]
  const auto local = torch::max_pool1d(p.local.transpose(1, 2), 3, 1, 1).transpose(1, 2);  // [B, N, C]
  const auto mixed = (g + split_heads(segment_max(p.segment))) * p.o + split_heads(local);  // [B, h, N, d]
  auto out = mixed.transpose(1, 2).reshape(x.sizes());
  if (p.padded.defined()) out = out.masked_fill(p.padded.unsqueeze(-1), 0.0);
  return out_proj->forward(out);
}

namespace {

const OptionsSchema<PoNetOptions>& ponet_schema() {
  static const auto schema = [] {
    OptionsSchema<PoNetOptions> s;
    BLOCKLAB_OPTION(s, heads, "heads h of the global pooling, dividing the width (default 4)").min = 1;
    BLOCKLAB_OPTION(s, segments, "segments S of the segment max pooling (LRA: 1 to 2048; default 4)").min = 1;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(PoNetMixerImpl::kKey)
                      .summary("PoNet: global attention pooling (keys as values), segment max pooling and local max "
                               "pooling, fused as (g + s_i) ⊙ o_i + l_i; linear in N")
                      .paper("PoNet: Pooling Network for Efficient Token Mixing in Long Sequences (Tan et al., "
                             "2022), arXiv:2110.02442")
                      .equation("g = sum_i softmax_i(mean(q) . k_i / sqrt(d)) k_i; s'_i = max_seg(i) s; l'_i = "
                                "max_{|j-i|<=1} l_j; out = [(g + s'_i) ⊙ o_i + l'_i] W_out")
                      .schema(ponet_schema().schema())
                      .example("{heads: 2, segments: 3}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto o = bind_options(ponet_schema(), params);
                    if (args.dim % o.heads() != 0)
                      config_fail(params, "heads",
                                  "mixer/ponet: heads must divide the width " + std::to_string(args.dim) + ", got " +
                                      std::to_string(o.heads()));
                    return std::make_shared<PoNetMixerImpl>(args.dim, o);
                  });

}  // namespace
}  // namespace blocklab
