#include "blocks/sparse/routing.h"

#include <cmath>

#include "blocks/local/local_attention.h"
#include "blocks/probe.h"
#include "registry/config_error.h"

namespace blocklab {

namespace {

torch::Tensor unit(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

// Normalised sums of the members of each cluster (assign [h, n] into k clusters) of x [h, n, d];
// clusters without members keep `previous`.
torch::Tensor cluster_means(const torch::Tensor& x, const torch::Tensor& assign, const torch::Tensor& previous) {
  const auto h = x.size(0), n = x.size(1), d = x.size(2), k = previous.size(1);
  const auto sums = torch::zeros({h, k, d}, x.options()).scatter_add(1, assign.unsqueeze(-1).expand({h, n, d}), x);
  const auto counts = torch::zeros({h, k}, x.options()).scatter_add(1, assign, torch::ones({h, n}, x.options()));
  return torch::where(counts.unsqueeze(-1) > 0, unit(sums), previous);
}

torch::Tensor nearest(const torch::Tensor& x, const torch::Tensor& centroids) {
  return torch::matmul(x, centroids.transpose(-2, -1)).argmax(-1);  // [h, n]
}

}  // namespace

torch::Tensor spherical_kmeans(const torch::Tensor& x, torch::Tensor centroids, std::int64_t iterations) {
  for (std::int64_t i = 0; i < iterations; ++i) centroids = cluster_means(x, nearest(x, centroids), centroids);
  return centroids;
}

RoutingAttentionImpl::RoutingAttentionImpl(std::int64_t dim, const RoutingAttentionOptions& options,
                                           const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options), attn_drop_(config.attn_drop) {
  centroids = register_buffer("centroids", unit(torch::randn({heads(), options.clusters(), head_dim()})));
  initialised = register_buffer("initialised", torch::tensor(options.kmeans_init() == 0));
}

MixerCapabilities RoutingAttentionImpl::core_capabilities() const {
  MixerCapabilities c;
  c.weights = MixerCapabilities::Weights::unnormalised;  // a token in no cluster has an empty row
  return c;
}

std::int64_t RoutingAttentionImpl::window(std::int64_t tokens) const {
  return std::min(tokens, (tokens + options_.clusters() - 1) / options_.clusters());
}

std::vector<RoutedGroups> RoutingAttentionImpl::groups(const torch::Tensor& q, const torch::Tensor& k,
                                                       std::int64_t prefix) const {
  const auto tokens = q.size(2), body = tokens - prefix;
  const auto w = window(body);
  const auto top = [&](const torch::Tensor& t) {  // [B, h, N, d] -> the w body tokens closest per centroid
    const auto similarity = torch::matmul(unit(t.detach().narrow(2, prefix, body)), centroids.transpose(-2, -1));
    return std::get<1>(similarity.transpose(-2, -1).topk(w, -1)) + prefix;  // [B, h, k_c, w]
  };
  auto keys = top(k);
  if (prefix == 0) return {{top(q), keys, {}, {}}};
  // Prefix tokens are global: every cluster also sees them, and they see every token.
  const auto prefix_index = torch::arange(prefix, keys.options());
  auto sizes = keys.sizes().vec();
  sizes.back() = prefix;
  return {
      {top(q), torch::cat({prefix_index.expand(sizes), keys}, -1), {}, {}},
      {prefix_index.view({1, 1, 1, prefix}), torch::arange(tokens, keys.options()).view({1, 1, 1, tokens}), {}, {}}};
}

torch::Tensor RoutingAttentionImpl::update_centroids(const torch::Tensor& features) {
  torch::NoGradGuard no_grad;
  const auto batch = features.size(0), h = features.size(1), n = features.size(2);
  const auto x = features.transpose(0, 1).reshape({h, batch * n, -1});  // [h, B n, d]
  const auto assign = nearest(x, centroids);
  const auto lambda = options_.decay();
  centroids.copy_(lambda * centroids + (1.0 - lambda) * cluster_means(x, assign, centroids));
  return assign.view({h, batch, n}).transpose(0, 1);
}

torch::Tensor RoutingAttentionImpl::attend(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v,
                                           const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, key(), ": has no causal form (the balanced clusters look at every token)");
  const auto [q, k] = queries_keys(q_in, k_in, ctx);
  torch::Tensor features;  // x^: the unit queries and keys side by side, [B, h, 2N, d]
  if (is_training()) {
    features = unit(torch::cat({q, k}, 2));
    if (!initialised.item<bool>()) {  // k-means on the first training batch, from evenly spaced members
      torch::NoGradGuard no_grad;
      const auto x = features.detach().transpose(0, 1).flatten(1, 2);  // [h, B 2N, d]
      const auto k_c = centroids.size(1), n = x.size(1);
      if (n >= k_c) {
        const auto start = x.index_select(1, (torch::arange(k_c, torch::kLong) * n).div(k_c, "floor").to(x.device()));
        centroids.copy_(spherical_kmeans(x, start, options_.kmeans_init()));
      }
      initialised.fill_(true);
    }
  }
  const bool record = capturing(ctx.probe);
  torch::Tensor o, probe_map;
  for (const auto& g : groups(q, k, ctx.has_grid() ? ctx.prefix_tokens : 0)) {  // disjoint queries: summed
    torch::Tensor w, lse;
    const auto part = routed_attend(q, k, v, g, scale(), RoutedMerge::mean, record ? &w : nullptr,
                                    record ? &lse : nullptr, attn_drop_, is_training());
    o = o.defined() ? o + part : part;
    if (record) {
      const auto dense = routed_weights_dense(w, lse, g, q.size(2), k.size(2), RoutedMerge::mean);
      probe_map = probe_map.defined() ? probe_map + dense : dense;
    }
  }
  if (record) ctx.probe->record(ctx.layer, key(), probe_map);
  if (features.defined()) {  // the commitment loss against the centroids before this step's update
    const auto assigned = centroids.clone();
    const auto assign = update_centroids(features.detach());  // [B, h, 2N]
    const auto chosen = assigned.unsqueeze(0)
                            .expand({features.size(0), -1, -1, -1})
                            .gather(2, assign.unsqueeze(-1).expand(features.sizes()));
    pending_loss_ = options_.commitment() * (features - chosen).pow(2).mean();
  }
  return o;
}

torch::Tensor RoutingAttentionImpl::take_auxiliary_loss() {
  auto loss = pending_loss_;
  pending_loss_ = torch::Tensor();
  return loss;
}

const OptionsSchema<RoutingAttentionOptions>& routing_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<RoutingAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, clusters,
                    "clusters k_c; each holds N / k_c queries and keys (default 0: sqrt of the longest "
                    "sequence, the paper's choice)")
        .min = 0;
    rate(BLOCKLAB_OPTION(s, decay,
                         "lambda of the centroids' moving average, in [0, 1] (default 0.999; 1: centroids fixed)"));
    BLOCKLAB_OPTION(s, commitment, "weight of the commitment loss |x^ - mu|^2 (default 1e-4)").min = 0.0;
    BLOCKLAB_OPTION(s, kmeans_init,
                    "k-means iterations fitting the centroids on the first training batch (default "
                    "10; 0: random unit centroids)")
        .min = 0;
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_routing(const ConfigNode& params, const MixerArgs& args) {
  return make_local_attention<RoutingAttentionImpl>(
      routing_attention_schema(), params, args, [&](RoutingAttentionOptions& options) {
        if (options.clusters() > 0) return;
        const auto longest = longest_sequence(args, params, "clusters", 1,
                                              "clusters 0 means sqrt of the longest sequence, but the model gives none",
                                              "set clusters, e.g. clusters: 8");
        options.clusters(std::max<std::int64_t>(1, std::llround(std::sqrt(double(longest)))));
      });
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(RoutingAttentionImpl::kKey)
                      .summary("Routing Transformer attention: queries and keys routed to balanced clusters by "
                               "online spherical k-means; attention inside each cluster")
                      .paper("Efficient Content-Based Sparse Attention with Routing Transformers (Roy et al., 2021), "
                             "arXiv:2003.05997")
                      .equation("cluster c = top-N/k_c queries and keys by x^.mu_c; o_i = mean over c holding i of "
                                "softmax(q_i K_c^T / sqrt(d)) V_c; mu <- EMA of normalised member sums")
                      .schema(routing_attention_schema().schema())
                      .example("{heads: 2, clusters: 3}"),
                  make_routing);

}  // namespace
}  // namespace blocklab
