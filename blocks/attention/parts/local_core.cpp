#include "blocks/attention/parts/local_core.h"

#include <limits>

#include <stdexcept>
#include <string>
#include "blocks/attention/parts/core.h"

namespace blocklab {

namespace {

torch::Tensor moved(const torch::Tensor& t, const torch::Device& device) { return t.defined() ? t.to(device) : t; }

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("local attention pattern: " + what);
}

// x broadcastable to [..., G, b, m] -> exactly [lead..., G, b, m].
torch::Tensor expand_pairs(torch::Tensor x, const LocalGroups& part, torch::IntArrayRef lead) {
  while (x.dim() < 3) x = x.unsqueeze(0);
  std::vector<std::int64_t> sizes(lead.begin(), lead.end());
  sizes.insert(sizes.end(), {part.groups(), part.group_queries(), part.group_keys()});
  return x.expand(sizes);
}

// The flat index n * N_k + j of every pair (g, i, j) of a part, [G * b * m].
torch::Tensor pair_flat_index(const LocalGroups& part, std::int64_t keys) {
  return (part.query_index.unsqueeze(-1) * keys + part.key_index.unsqueeze(1)).flatten();
}

void check_part(const LocalGroups& part, std::int64_t keys) {
  require(part.query_index.defined() && part.query_index.dim() == 2, "query_index must be [groups, queries per group]");
  require(part.key_index.defined() && part.key_index.dim() == 2 && part.key_index.size(0) == part.groups(),
          "key_index must be [groups, keys per group]");
  require(part.key_index.min().item<std::int64_t>() >= 0 && part.key_index.max().item<std::int64_t>() < keys,
          "key indices out of range [0, " + std::to_string(keys) + ")");
  if (part.group_keys() > 1) {
    const auto sorted = std::get<0>(part.key_index.sort(1));
    require((sorted.slice(1, 1) != sorted.slice(1, 0, -1)).all().item<bool>(), "a key appears twice in a group");
  }
  if (part.allowed.defined()) {
    require(part.allowed.sizes() == torch::IntArrayRef({part.groups(), part.group_queries(), part.group_keys()}),
            "allowed must be [groups, queries per group, keys per group]");
    require(part.allowed.any(-1).all().item<bool>(), "a query has no allowed key");
  }
}

}  // namespace

LocalPattern LocalPattern::to(const torch::Device& device) const {
  LocalPattern p = *this;
  for (auto& part : p.parts)
    for (auto* t : {&part.query_index, &part.key_index, &part.allowed}) *t = moved(*t, device);
  for (auto* t : {&p.query_inverse, &p.query_coords, &p.key_coords, &p.token_keys}) *t = moved(*t, device);
  return p;
}

LocalPattern finish_pattern(LocalPattern p) {
  require(!p.parts.empty(), "no parts");
  std::vector<torch::Tensor> queries;
  for (const auto& part : p.parts) {
    check_part(part, p.keys);
    queries.push_back(part.query_index.flatten());
  }
  const auto flat = torch::cat(queries);
  require(flat.numel() == p.queries && torch::equal(std::get<0>(flat.sort()), torch::arange(p.queries, flat.options())),
          "the groups must hold every query exactly once");
  p.query_inverse = torch::empty_like(flat).index_put_({flat}, torch::arange(p.queries, flat.options()));
  if (!p.token_keys.defined()) {
    require(p.keys == p.queries, "token_keys must be given when the keys are not the tokens");
    p.token_keys = torch::arange(p.queries, torch::kLong);
  }
  return p;
}

LocalPattern with_prefix(const LocalPattern& p, std::int64_t prefix) {
  if (prefix == 0) return p;
  const auto prefix_index = torch::arange(prefix, torch::kLong);
  LocalPattern out;
  for (const auto& part : p.parts) {
    LocalGroups shifted;
    shifted.query_index = part.query_index + prefix;
    shifted.key_index = torch::cat({prefix_index.expand({part.groups(), prefix}), part.key_index + prefix}, 1);
    if (part.allowed.defined())
      shifted.allowed = torch::cat(
          {torch::ones({part.groups(), part.group_queries(), prefix}, part.allowed.options()), part.allowed}, 2);
    out.parts.push_back(shifted);
  }
  out.token_keys = torch::cat({prefix_index, p.token_keys + prefix});
  LocalGroups global{prefix_index.view({1, prefix}), out.token_keys.view({1, -1}), {}};
  if (p.causal) {  // prefix query i sees the prefix keys up to i; the grid comes after it
    const auto column = torch::arange(out.token_keys.numel(), torch::kLong).view({1, -1});
    global.allowed = (column <= prefix_index.view({-1, 1})).unsqueeze(0);
  }
  out.parts.push_back(std::move(global));
  out.causal = p.causal;
  const auto origin = torch::zeros({prefix, 2}, torch::kLong);  // prefix tokens have no grid position
  out.query_coords = torch::cat({origin, p.query_coords});
  out.key_coords = torch::cat({origin, p.key_coords});
  out.queries = p.queries + prefix;
  out.keys = p.keys + prefix;
  return finish_pattern(std::move(out));
}

torch::Tensor pair_offsets(const LocalPattern& p, const LocalGroups& part) {
  const auto queries = p.query_coords.index_select(0, part.query_index.flatten()).view({part.groups(), -1, 1, 2});
  const auto keys = p.key_coords.index_select(0, part.key_index.flatten()).view({part.groups(), 1, -1, 2});
  return keys - queries;
}

torch::Tensor local_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const LocalPattern& pattern, const std::vector<torch::Tensor>& biases, double scale,
                           std::vector<torch::Tensor>* weights, double attn_drop, bool training) {
  const auto p = pattern.query_inverse.device() == q.device() ? pattern : pattern.to(q.device());
  std::vector<torch::Tensor> outputs;
  if (weights) weights->clear();
  for (std::size_t i = 0; i < p.parts.size(); ++i) {
    const auto& part = p.parts[i];
    const auto groups = part.groups(), per_group = part.group_queries(), keys = part.group_keys();
    // Gather each group's queries and keys: [B, h, G, b, d] and [B, h, G, m, d].
    const auto qg = q.index_select(2, part.query_index.flatten()).unflatten(2, {groups, per_group});
    const auto kg = k.index_select(2, part.key_index.flatten()).unflatten(2, {groups, keys});
    const auto vg = v.index_select(2, part.key_index.flatten()).unflatten(2, {groups, keys});
    auto s = torch::matmul(qg * scale, kg.transpose(-2, -1));  // [B, h, G, b, m]
    if (i < biases.size() && biases[i].defined()) s = s + biases[i].to(s.dtype());
    if (part.allowed.defined()) s = s.masked_fill(part.allowed.logical_not(), kMinusInf);
    const auto w = torch::softmax(s, -1);
    if (weights) weights->push_back(w);
    const auto dropped = attn_drop > 0.0 ? torch::dropout(w, attn_drop, training) : w;
    outputs.push_back(torch::matmul(dropped, vg).flatten(2, 3));
  }
  // Back from the parts' order to token order.
  return torch::cat(outputs, 2).index_select(2, p.query_inverse);
}

torch::Tensor local_scatter_dense(const std::vector<torch::Tensor>& xs, const LocalPattern& p, double fill) {
  std::vector<std::int64_t> lead;  // the broadcast leading dimensions of the parts' values
  torch::TensorOptions options;
  for (const auto& x : xs)
    if (x.defined()) {
      const auto sizes = x.dim() > 3 ? x.sizes().slice(0, x.dim() - 3) : torch::IntArrayRef{};
      lead = at::infer_size(lead, sizes);
      options = x.options();
    }
  std::vector<torch::Tensor> index, values;
  for (std::size_t i = 0; i < xs.size() && i < p.parts.size(); ++i) {
    if (!xs[i].defined()) continue;
    const auto& part = p.parts[i];
    auto x = expand_pairs(xs[i], part, lead);
    if (part.allowed.defined() && x.scalar_type() != torch::kBool) x = x.masked_fill(part.allowed.logical_not(), fill);
    index.push_back(pair_flat_index(part, p.keys));
    values.push_back(x.flatten(-3));
  }
  auto dense_sizes = lead;
  dense_sizes.push_back(p.queries * p.keys);
  auto out = torch::full(dense_sizes, fill, options);
  if (!index.empty()) out = out.index_copy(-1, torch::cat(index), torch::cat(values, -1));
  lead.insert(lead.end(), {p.queries, p.keys});
  return out.view(lead);
}

torch::Tensor local_dense_mask(const LocalPattern& p) {
  std::vector<torch::Tensor> allowed;
  for (const auto& part : p.parts)
    allowed.push_back(part.allowed.defined() ? part.allowed
                                             : torch::ones({part.groups(), part.group_queries(), part.group_keys()},
                                                           part.key_index.options().dtype(torch::kBool)));
  return local_scatter_dense(allowed, p, 0.0);
}

torch::Tensor local_attend_dense(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const LocalPattern& pattern, const std::vector<torch::Tensor>& biases, double scale) {
  const auto p = pattern.to(q.device());
  auto s = torch::matmul(q * scale, k.transpose(-2, -1));  // [B, h, N_q, N_k]
  std::vector<torch::Tensor> typed;
  for (const auto& b : biases) typed.push_back(b.defined() ? b.to(s.dtype()) : b);
  if (!typed.empty()) s = s + local_scatter_dense(typed, p, 0.0);
  s = s.masked_fill(local_dense_mask(p).logical_not(), kMinusInf);
  return torch::matmul(torch::softmax(s, -1), v);
}

}  // namespace blocklab
