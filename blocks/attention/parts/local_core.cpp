#include "blocks/attention/parts/local_core.h"

#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace blocklab {

namespace {

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

torch::Tensor moved(const torch::Tensor& t, const torch::Device& device) { return t.defined() ? t.to(device) : t; }

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("local attention pattern: " + what);
}

// x broadcastable to [..., G, b, m] -> the same leading dimensions with exactly [G, b, m] last.
torch::Tensor expand_pairs(torch::Tensor x, const LocalPattern& p) {
  while (x.dim() < 3) x = x.unsqueeze(0);
  std::vector<std::int64_t> sizes(x.sizes().begin(), x.sizes().end() - 3);
  sizes.insert(sizes.end(), {p.groups(), p.group_queries(), p.group_keys()});
  return x.expand(sizes);
}

// The flat index n * N_k + j of every pair (g, i, j), [G * b * m].
torch::Tensor pair_flat_index(const LocalPattern& p) {
  const auto rows = p.query_index.unsqueeze(-1);  // [G, b, 1]
  const auto cols = p.key_index.unsqueeze(1);     // [G, 1, m]
  return (rows * p.keys + cols).flatten();
}

}  // namespace

LocalPattern LocalPattern::to(const torch::Device& device) const {
  LocalPattern p = *this;
  for (auto* t : {&p.query_index, &p.query_inverse, &p.key_index, &p.allowed, &p.query_coords, &p.key_coords})
    *t = moved(*t, device);
  return p;
}

LocalPattern finish_pattern(LocalPattern p) {
  require(p.query_index.defined() && p.query_index.dim() == 2, "query_index must be [groups, queries per group]");
  require(p.key_index.defined() && p.key_index.dim() == 2 && p.key_index.size(0) == p.groups(),
          "key_index must be [groups, keys per group]");
  const auto flat = p.query_index.flatten();
  require(flat.numel() == p.queries && torch::equal(std::get<0>(flat.sort()), torch::arange(p.queries, flat.options())),
          "the groups must hold every query exactly once");
  require(p.key_index.min().item<std::int64_t>() >= 0 && p.key_index.max().item<std::int64_t>() < p.keys,
          "key indices out of range [0, " + std::to_string(p.keys) + ")");
  if (p.group_keys() > 1) {
    const auto sorted = std::get<0>(p.key_index.sort(1));
    require((sorted.slice(1, 1) != sorted.slice(1, 0, -1)).all().item<bool>(), "a key appears twice in a group");
  }
  if (p.allowed.defined()) {
    require(p.allowed.sizes() == torch::IntArrayRef({p.groups(), p.group_queries(), p.group_keys()}),
            "allowed must be [groups, queries per group, keys per group]");
    require(p.allowed.any(-1).all().item<bool>(), "a query has no allowed key");
  }
  p.query_inverse = torch::empty_like(flat).index_put_({flat}, torch::arange(p.queries, flat.options()));
  return p;
}

torch::Tensor pair_offsets(const LocalPattern& p) {
  const auto queries = p.query_coords.index_select(0, p.query_index.flatten()).view({p.groups(), -1, 1, 2});
  const auto keys = p.key_coords.index_select(0, p.key_index.flatten()).view({p.groups(), 1, -1, 2});
  return keys - queries;
}

torch::Tensor local_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const LocalPattern& pattern, const torch::Tensor& bias, double scale,
                           torch::Tensor* weights) {
  const auto p = pattern.query_index.device() == q.device() ? pattern : pattern.to(q.device());
  const auto groups = p.groups(), per_group = p.group_queries(), keys = p.group_keys();
  // Gather each group's queries and keys: [B, h, G, b, d] and [B, h, G, m, d].
  const auto qg = q.index_select(2, p.query_index.flatten()).unflatten(2, {groups, per_group});
  const auto kg = k.index_select(2, p.key_index.flatten()).unflatten(2, {groups, keys});
  const auto vg = v.index_select(2, p.key_index.flatten()).unflatten(2, {groups, keys});
  auto s = torch::matmul(qg * scale, kg.transpose(-2, -1));  // [B, h, G, b, m]
  if (bias.defined()) s = s + bias.to(s.dtype());
  if (p.allowed.defined()) s = s.masked_fill(p.allowed.logical_not(), kMinusInf);
  const auto w = torch::softmax(s, -1);
  if (weights) *weights = w;
  // Back from group order to token order.
  return torch::matmul(w, vg).flatten(2, 3).index_select(2, p.query_inverse);
}

torch::Tensor local_dense_mask(const LocalPattern& p) {
  auto allowed = p.allowed.defined() ? p.allowed
                                     : torch::ones({p.groups(), p.group_queries(), p.group_keys()},
                                                   p.key_index.options().dtype(torch::kBool));
  return local_scatter_dense(allowed, p, 0.0).to(torch::kBool);
}

torch::Tensor local_scatter_dense(const torch::Tensor& x_in, const LocalPattern& p, double fill) {
  auto x = expand_pairs(x_in, p);
  if (p.allowed.defined() && x.scalar_type() != torch::kBool) x = x.masked_fill(p.allowed.logical_not(), fill);
  std::vector<std::int64_t> lead(x.sizes().begin(), x.sizes().end() - 3);
  auto dense_sizes = lead;
  dense_sizes.push_back(p.queries * p.keys);
  const auto out = torch::full(dense_sizes, fill, x.options()).index_copy(-1, pair_flat_index(p), x.flatten(-3));
  lead.insert(lead.end(), {p.queries, p.keys});
  return out.view(lead);
}

torch::Tensor local_attend_dense(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const LocalPattern& pattern, const torch::Tensor& bias, double scale) {
  const auto p = pattern.to(q.device());
  auto s = torch::matmul(q * scale, k.transpose(-2, -1));  // [B, h, N_q, N_k]
  if (bias.defined()) s = s + local_scatter_dense(bias.to(s.dtype()), p, 0.0);
  s = s.masked_fill(local_dense_mask(p).logical_not(), kMinusInf);
  return torch::matmul(torch::softmax(s, -1), v);
}

}  // namespace blocklab
