#include "blocks/attention/parts/routed_core.h"

#include <limits>

#include <vector>
#include "blocks/attention/parts/core.h"

namespace blocklab {

namespace {

// The rows index [B', h', G, c] picks from x [B, h, N, w]: [B, h, G, c, w].
torch::Tensor gather_rows(const torch::Tensor& x, const torch::Tensor& index) {
  const auto batch = x.size(0), heads = x.size(1), groups = index.size(2), per_group = index.size(3);
  const auto flat = index.expand({batch, heads, groups, per_group}).reshape({batch, heads, groups * per_group, 1});
  return x.gather(2, flat.expand({batch, heads, groups * per_group, x.size(3)}))
      .view({batch, heads, groups, per_group, x.size(3)});
}

// The query index [B', h', G, b] as [B, h, G * b].
torch::Tensor flat_queries(const RoutedGroups& g, std::int64_t batch, std::int64_t heads) {
  return g.query_index.expand({batch, heads, g.groups(), g.group_queries()}).reshape({batch, heads, -1});
}

// Per-occurrence values [B, h, G, b, X] (log-normalisers lse [B, h, G, b], -inf: no allowed key)
// merged per query -> [B, h, N_q, X] (see the header's union and mean).
torch::Tensor merge_occurrences(const torch::Tensor& values, const torch::Tensor& lse, const RoutedGroups& g,
                                std::int64_t queries, RoutedMerge merge) {
  const auto batch = values.size(0), heads = values.size(1), width = values.size(-1);
  const auto index = flat_queries(g, batch, heads);                    // [B, h, G b]
  const auto flat_values = values.reshape({batch, heads, -1, width});  // [B, h, G b, X]
  const auto flat_lse = lse.reshape({batch, heads, -1});
  const auto seen = flat_lse != kMinusInf;
  torch::Tensor factor;  // the weight of each occurrence before normalising
  if (merge == RoutedMerge::union_softmax) {
    // Stabilised by the largest lse of each query (detached: the result does not depend on it).
    const auto top = torch::full({batch, heads, queries}, kMinusInf, lse.options())
                         .scatter_reduce(2, index, flat_lse.detach(), "amax", /*include_self=*/true);
    factor = torch::where(seen, (flat_lse - top.gather(2, index)).exp(), torch::zeros_like(flat_lse));
  } else {
    factor = seen.to(values.scalar_type());
  }
  const auto sums = torch::zeros({batch, heads, queries, width}, values.options())
                        .scatter_add(2, index.unsqueeze(-1).expand({batch, heads, index.size(2), width}),
                                     factor.unsqueeze(-1) * flat_values);
  const auto total = torch::zeros({batch, heads, queries}, values.options()).scatter_add(2, index, factor);
  return sums / total.masked_fill(total == 0, 1.0).unsqueeze(-1);  // no occurrence: 0
}

}  // namespace

torch::Tensor routed_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const RoutedGroups& g, double scale, RoutedMerge merge, torch::Tensor* weights,
                            torch::Tensor* lse_out, double attn_drop, bool training) {
  const auto qg = gather_rows(q, g.query_index);             // [B, h, G, b, d]
  const auto kg = gather_rows(k, g.key_index);               // [B, h, G, m, d]
  const auto vg = gather_rows(v, g.key_index);               // [B, h, G, m, e]
  auto s = torch::matmul(qg * scale, kg.transpose(-2, -1));  // [B, h, G, b, m]
  if (g.bias.defined()) s = s + g.bias.to(s.dtype());
  torch::Tensor valid;  // [B, h, G, b]: the occurrence has an allowed key
  if (g.allowed.defined()) {
    const auto allowed = g.allowed.expand_as(s);
    valid = allowed.any(-1);
    // A row with no allowed key is computed on zeros and then dropped (no NaN, no gradient).
    s = s.masked_fill(allowed.logical_not(), kMinusInf).masked_fill(valid.logical_not().unsqueeze(-1), 0.0);
  }
  auto w = torch::softmax(s, -1);
  auto lse = torch::logsumexp(s, -1);
  if (valid.defined()) {
    w = w * valid.unsqueeze(-1).to(w.scalar_type());
    lse = lse.masked_fill(valid.logical_not(), kMinusInf);
  }
  if (weights) *weights = w;
  if (lse_out) *lse_out = lse;
  const auto dropped = attn_drop > 0.0 ? torch::dropout(w, attn_drop, training) : w;
  return merge_occurrences(torch::matmul(dropped, vg), lse, g, q.size(2), merge);
}

torch::Tensor routed_weights_dense(const torch::Tensor& weights, const torch::Tensor& lse, const RoutedGroups& g,
                                   std::int64_t queries, std::int64_t keys, RoutedMerge merge) {
  auto sizes = weights.sizes().vec();
  const auto index = g.key_index.unsqueeze(-2).expand(sizes);  // [B, h, G, b, m]
  sizes.back() = keys;
  const auto rows = torch::zeros(sizes, weights.options()).scatter_add(-1, index, weights);  // [B, h, G, b, N_k]
  return merge_occurrences(rows, lse, g, queries, merge);
}

torch::Tensor routed_attend_dense(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const RoutedGroups& g, double scale, RoutedMerge merge) {
  const auto batch = q.size(0), heads = q.size(1), queries = q.size(2), keys = k.size(2);
  const std::vector<std::int64_t> pairs{batch, heads, g.groups(), g.group_queries(), g.group_keys()};
  const auto allowed =
      g.allowed.defined() ? g.allowed.expand(pairs) : torch::ones(pairs, q.options().dtype(torch::kBool));
  const auto bias = g.bias.defined() ? g.bias.to(q.dtype()).expand(pairs) : torch::zeros(pairs, q.options());
  const auto key_index = g.key_index.unsqueeze(-2).expand(pairs);
  const auto query_index = g.query_index.expand({batch, heads, g.groups(), g.group_queries()});
  const auto s = torch::matmul(q * scale, k.transpose(-2, -1));  // [B, h, N_q, N_k]
  // Masked softmax of logits over the keys a row may see; rows that see none give 0.
  const auto attend_rows = [&](const torch::Tensor& logits, const torch::Tensor& seen) {
    const auto any = seen.any(-1, /*keepdim=*/true);
    const auto w =
        torch::softmax(logits.masked_fill(seen.logical_not(), kMinusInf).masked_fill(any.logical_not(), 0), -1);
    return torch::matmul(w * any.to(w.scalar_type()), v);
  };
  if (merge == RoutedMerge::union_softmax) {
    // Pair multiplicity weights sum_occ exp(bias) scattered to [B, h, N_q, N_k].
    const auto flat = (query_index.unsqueeze(-1) * keys + key_index).reshape({batch, heads, -1});
    const auto mass = torch::zeros({batch, heads, queries * keys}, q.options())
                          .scatter_add(2, flat, (bias.exp() * allowed.to(q.dtype())).reshape({batch, heads, -1}))
                          .view({batch, heads, queries, keys});
    return attend_rows(s + mass.log(), mass > 0);
  }
  auto sums = torch::zeros({batch, heads, queries, v.size(3)}, v.options());
  auto count = torch::zeros({batch, heads, queries, 1}, v.options());
  for (std::int64_t group = 0; group < g.groups(); ++group) {  // one dense softmax per group
    const auto members = query_index.select(2, group);         // [B, h, b]
    const auto rows = members.unsqueeze(-1).expand({batch, heads, g.group_queries(), keys});
    const auto seen = torch::zeros({batch, heads, g.group_queries(), keys}, allowed.options())
                          .scatter(-1, key_index.select(2, group), allowed.select(2, group));
    const auto pair_bias =
        torch::zeros(seen.sizes(), q.options()).scatter(-1, key_index.select(2, group), bias.select(2, group));
    const auto out = attend_rows(s.gather(2, rows) + pair_bias, seen);
    const auto hit = seen.any(-1, /*keepdim=*/true).to(v.scalar_type());
    sums = sums.scatter_add(2, members.unsqueeze(-1).expand({batch, heads, g.group_queries(), v.size(3)}), out);
    count = count.scatter_add(2, members.unsqueeze(-1), hit);
  }
  return sums / count.clamp_min(1.0);
}

}  // namespace blocklab
