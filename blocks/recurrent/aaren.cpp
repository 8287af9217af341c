#include "blocks/recurrent/aaren.h"

#include <cmath>
#include <limits>

#include "blocks/attention/parts/dense_core.h"
#include "blocks/common/init.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

SoftmaxScan combine(const SoftmaxScan& a, const SoftmaxScan& b) {
  const auto m = torch::maximum(a.m, b.m);
  const auto ea = torch::exp(a.m - m), eb = torch::exp(b.m - m);  // <= 1: the sums stay bounded
  return {m, a.u * ea + b.u * eb, a.w * ea.unsqueeze(-1) + b.w * eb.unsqueeze(-1)};
}

namespace {

// Hillis-Steele: after round r every token holds the combination of the 2^(r+1) tokens ending at
// it (fewer at the start); (+) is associative, so the earlier part combines on the left.
SoftmaxScan parallel_scan(const torch::Tensor& s, const torch::Tensor& v) {
  SoftmaxScan acc{s, torch::ones_like(s), v};
  const auto n = s.size(-1);
  for (std::int64_t offset = 1; offset < n; offset *= 2) {
    const auto keep = n - offset;
    const SoftmaxScan earlier{acc.m.narrow(-1, 0, keep), acc.u.narrow(-1, 0, keep), acc.w.narrow(-2, 0, keep)};
    const SoftmaxScan later{acc.m.narrow(-1, offset, keep), acc.u.narrow(-1, offset, keep),
                            acc.w.narrow(-2, offset, keep)};
    const SoftmaxScan merged = combine(earlier, later);
    acc = {torch::cat({acc.m.narrow(-1, 0, offset), merged.m}, -1),
           torch::cat({acc.u.narrow(-1, 0, offset), merged.u}, -1),
           torch::cat({acc.w.narrow(-2, 0, offset), merged.w}, -2)};
  }
  return acc;
}

// The RNN of §3.2, one token at a time.
SoftmaxScan sequential_scan(const torch::Tensor& s, const torch::Tensor& v) {
  SoftmaxScan acc{s.select(-1, 0), torch::ones_like(s.select(-1, 0)), v.select(-2, 0)};
  std::vector<torch::Tensor> ms{acc.m}, us{acc.u}, ws{acc.w};
  for (std::int64_t t = 1; t < s.size(-1); ++t) {
    acc = combine(acc, {s.select(-1, t), torch::ones_like(acc.u), v.select(-2, t)});
    ms.push_back(acc.m);
    us.push_back(acc.u);
    ws.push_back(acc.w);
  }
  return {torch::stack(ms, -1), torch::stack(us, -1), torch::stack(ws, -2)};
}

}  // namespace

SoftmaxScan softmax_prefix_scan(const torch::Tensor& s, const torch::Tensor& v, bool parallel) {
  return parallel ? parallel_scan(s, v) : sequential_scan(s, v);
}

AarenImpl::AarenImpl(std::int64_t dim, const AarenOptions& o)
    : heads_(o.heads()), head_dim_(dim / o.heads()), parallel_(o.form() == "parallel") {
  query = register_parameter("query", trunc_normal_(torch::empty({heads_, head_dim_}), 0.02));
  kv = register_module("kv", torch::nn::Linear(torch::nn::LinearOptions(dim, 2 * dim).bias(o.kv_bias())));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

MixerCapabilities AarenImpl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;
  c.recurrent = true;
  c.weights = MixerCapabilities::Weights::normalised;
  c.variable_lengths = true;  // causal: padding after a token never reaches it
  return c;
}

std::pair<torch::Tensor, torch::Tensor> AarenImpl::scores_values(const torch::Tensor& x) {
  const auto b = x.size(0), n = x.size(1);
  const auto kvh = kv->forward(x).view({b, n, 2, heads_, head_dim_}).permute({2, 0, 3, 1, 4});  // [2, B, h, N, d]
  const auto s = torch::einsum("bhnd,hd->bhn", {kvh[0], query}) / std::sqrt(static_cast<double>(head_dim_));
  return {s, kvh[1]};
}

torch::Tensor AarenImpl::weights(const torch::Tensor& x) {
  const auto s = scores_values(x).first;
  const auto n = s.size(-1);
  const auto logits = s.unsqueeze(-2).expand({s.size(0), heads_, n, n});  // row t: s_1..s_N
  return torch::softmax(logits.masked_fill(causal_mask(n, x.device()), -std::numeric_limits<double>::infinity()), -1);
}

torch::Tensor AarenImpl::merge(const torch::Tensor& o) {
  return proj->forward(o.transpose(1, 2).reshape({o.size(0), o.size(2), heads_ * head_dim_}));
}

torch::Tensor AarenImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const auto [s, v] = scores_values(x);
  if (capturing(ctx.probe)) {  // the reference path: the explicit map
    const auto w = weights(x);
    ctx.probe->record(ctx.layer, kKey, w);
    return merge(torch::matmul(w, v));
  }
  const SoftmaxScan scan = softmax_prefix_scan(s, v, parallel_);
  return merge(scan.w / scan.u.unsqueeze(-1));
}

MixerState AarenImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  return MixerState{{torch::full({batch, heads_}, -std::numeric_limits<double>::infinity(), options),
                     torch::zeros({batch, heads_}, options), torch::zeros({batch, heads_, head_dim_}, options)},
                    0};
}

MixerStep AarenImpl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext&) {
  const auto [s, v] = scores_values(x_t.unsqueeze(1));  // [B, h, 1], [B, h, 1, d]
  const SoftmaxScan before{state.tensors.at(0), state.tensors.at(1), state.tensors.at(2)};
  const SoftmaxScan leaf{s.squeeze(-1), torch::ones_like(before.u), v.squeeze(-2)};
  // The first token: m = -inf before it, and e^(-inf - s) = 0 drops the empty prefix.
  const SoftmaxScan after = combine(before, leaf);
  const auto o = (after.w / after.u.unsqueeze(-1)).unsqueeze(2);  // [B, h, 1, d]
  return MixerStep{merge(o).squeeze(1), MixerState{{after.m, after.u, after.w}, state.position + 1}};
}

const OptionsSchema<AarenOptions>& aaren_schema() {
  static const auto schema = [] {
    OptionsSchema<AarenOptions> s;
    BLOCKLAB_OPTION(s, heads, "heads h, one learned query each (default 4); dim must be divisible by h").min = 1;
    BLOCKLAB_OPTION(s, kv_bias, "bias on the key/value projection (default true)");
    s.choice(
        "form", {"parallel", "sequential"},
        "how the prefix scan runs: parallel (Hillis-Steele, log2 N rounds of the associative operator) or "
        "sequential (the RNN, token by token: the oracle); the same function (default parallel)",
        [](AarenOptions& o, const std::string& v) { o.form(v); }, [](const AarenOptions& o) { return o.form(); });
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(AarenImpl::kKey)
                      .summary("Aaren: attention of a learned query over every prefix, as a parallel prefix scan "
                               "(training) or an RNN (decoding)")
                      .paper("Attention as an RNN (Feng et al., 2024), arXiv:2405.13956")
                      .equation("o_t = sum_{i<=t} softmax(q . k_1..t / sqrt(d))_i v_i by a scan of (m, u, w), "
                                "(+) = max-rescaled sums")
                      .schema(aaren_schema().schema())
                      .example("{heads: 2}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto options = bind_options(aaren_schema(), params);
                    check_heads(args.dim, options.heads(), params);
                    return std::make_shared<AarenImpl>(args.dim, options);
                  });

}  // namespace
}  // namespace blocklab
