#include "blocks/sparse/combiner.h"

#include <cmath>

#include "blocks/attention/parts/core.h"
#include "registry/config_error.h"

namespace blocklab {

CombinerAttentionImpl::CombinerAttentionImpl(std::int64_t dim, const CombinerOptions& options,
                                             const MultiHeadConfig& config)
    : LocalAttentionImpl(kKey, dim, config), options_(options) {}

std::int64_t CombinerAttentionImpl::segment_length(std::int64_t tokens) const {
  if (options_.segment() > 0) return std::min(options_.segment(), tokens);
  return std::max<std::int64_t>(1, std::llround(std::sqrt(double(tokens))));
}

LocalPattern CombinerAttentionImpl::body_pattern(std::int64_t height, std::int64_t width, bool causal) const {
  const auto n = height * width, s = segment_length(n), segments = (n + s - 1) / s;
  const auto summaries = torch::arange(segments, torch::kLong);
  // Segments [first, first + count) of b tokens each, as one part.
  const auto part = [&](std::int64_t first, std::int64_t count, std::int64_t b) {
    const auto index = torch::arange(first, first + count, torch::kLong);
    const auto queries = index.view({-1, 1}) * s + torch::arange(b, torch::kLong).view({1, -1});  // [count, b]
    LocalGroups g;
    g.query_index = queries;
    g.key_index = torch::cat({queries, (n + summaries).expand({count, segments})}, 1);
    const auto local = causal ? torch::ones({b, b}, torch::kBool).tril() : torch::ones({b, b}, torch::kBool);
    const auto other =
        causal ? summaries.view({1, -1}) < index.view({-1, 1}) : summaries.view({1, -1}) != index.view({-1, 1});
    g.allowed = torch::cat({local.expand({count, b, b}), other.unsqueeze(1).expand({count, b, segments})}, 2);
    return g;
  };
  LocalPattern p;
  if (n / s > 0) p.parts.push_back(part(0, n / s, s));
  if (n % s > 0) p.parts.push_back(part(n / s, 1, n % s));  // the shorter last segment
  const auto t = torch::arange(n, torch::kLong);
  p.query_coords = torch::stack({t.div(width, "floor"), t.remainder(width)}, 1);
  p.key_coords = torch::cat({p.query_coords, torch::zeros({segments, 2}, torch::kLong)});  // summaries: no position
  p.token_keys = t;
  p.queries = n;
  p.keys = n + segments;
  p.causal = causal;
  return finish_pattern(std::move(p));
}

std::pair<torch::Tensor, torch::Tensor> CombinerAttentionImpl::body_keys_values(const torch::Tensor& q,
                                                                                const torch::Tensor& k,
                                                                                const torch::Tensor& v, std::int64_t,
                                                                                std::int64_t) {
  const auto n = q.size(2), s = segment_length(n), segments = (n + s - 1) / s;
  // [B, h, n, d] -> [B, h, S, s, d], zeros after the last token; valid [S, s, 1].
  const auto by_segment = [&](const torch::Tensor& x) {
    return torch::constant_pad_nd(x, {0, 0, 0, segments * s - n}).unflatten(2, {segments, s});
  };
  const auto valid = (torch::arange(segments * s, torch::kLong) < n).view({segments, s, 1}).to(q.device());
  const auto pool = [&](const torch::Tensor& x) {  // over each segment's tokens -> [B, h, S, d]
    if (options_.summary() == "max") return x.masked_fill(valid.logical_not(), kMinusInf).amax(3);
    const auto sum = (x * valid.to(x.scalar_type())).sum(3);
    return options_.summary() == "sum" ? sum : sum / valid.sum(1).to(x.scalar_type());
  };
  const auto qs = by_segment(q), ks = by_segment(k), vs = by_segment(v);
  const auto summary_keys = pool(ks);
  // The summary query's attention over its segment gives the summary value.
  const auto logits = torch::matmul(pool(qs).unsqueeze(3) * scale(), ks.transpose(-2, -1)).squeeze(3);  // [B, h, S, s]
  const auto span = torch::softmax(logits.masked_fill(valid.squeeze(-1).logical_not(), kMinusInf), -1);
  span_weights_ = span.detach();
  const auto summary_values = torch::matmul(span.unsqueeze(3), vs).squeeze(3);  // [B, h, S, e]
  return {torch::cat({k, summary_keys}, 2), torch::cat({v, summary_values}, 2)};
}

torch::Tensor CombinerAttentionImpl::token_weights(const torch::Tensor& over_keys, const LocalPattern& full,
                                                   std::int64_t prefix) {
  // A summary's weight spread over its segment's tokens by the summary query's attention.
  const auto segments = span_weights_.size(2), tokens = full.keys - segments;
  const auto direct = over_keys.narrow(-1, 0, tokens);
  const auto spread = (over_keys.narrow(-1, tokens, segments).unsqueeze(-1) * span_weights_.unsqueeze(2))
                          .flatten(-2)
                          .narrow(-1, 0, tokens - prefix);
  return direct + torch::constant_pad_nd(spread, {prefix, 0});
}

const OptionsSchema<CombinerOptions>& combiner_schema() {
  static const auto schema = [] {
    OptionsSchema<CombinerOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, segment,
                    "segment length s: direct attention inside, one summary per other segment "
                    "(default 0: round(sqrt(N)))")
        .min = 0;
    s.choice(
        "summary", {"max", "mean", "sum"},
        "pooling of a segment's queries and keys into its summary query and key (the code's identity-max: max)",
        [](CombinerOptions& o, const std::string& v) { o.summary(v); },
        [](const CombinerOptions& o) { return o.summary(); });
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(CombinerAttentionImpl::kKey)
                      .summary("Combiner-Fixed: direct attention inside segments of s tokens plus one summary key "
                               "and value per other segment, in one softmax (full attention at sqrt cost)")
                      .paper("Combiner: Full Attention Transformer with Sparse Computation Cost (Ren et al., 2021), "
                             "arXiv:2107.05768")
                      .equation("o_i = softmax([q_i k_j]_{j in r(i)} u [q_i k^_r]_{r != r(i)}) [v_j] u [v^_r]; "
                                "k^_r = max_{j in r} k_j, v^_r = sum_{j in r} softmax_j(q^_r k_j) v_j")
                      .schema(combiner_schema().schema())
                      .example("{heads: 2, segment: 4}"),
                  [](const ConfigNode& params, const MixerArgs& args) {
                    return make_local_attention<CombinerAttentionImpl>(combiner_schema(), params, args);
                  });

}  // namespace
}  // namespace blocklab
