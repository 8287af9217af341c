// sparse/routing: the Routing Transformer's content-based sparse attention. Queries and keys are
// routed to k_c clusters by online k-means on the unit sphere; each cluster holds the w = N / k_c
// queries and the w keys closest to its centroid (balanced clusters), and attends inside itself.
//
// Paper: "Efficient Content-Based Sparse Attention with Routing Transformers", Roy et al. 2021,
// TACL, arXiv:2003.05997, §4 (eq. (7)-(10)); read against lucidrains/routing-transformer
// (Kmeans, KmeansAttention; catalog_000_001 0-17).
//   x^ = q / |q|, k / |k| (per head);  cluster c: the top-w queries and top-w keys by x^ . mu_c
//   o_i = mean over the clusters c holding i of softmax(q_i K_c^T / sqrt(d)) V_c   (0 in none)
// Training only, without gradient: each x^ goes to its nearest centroid, mu_c <- lambda mu_c +
// (1 - lambda) normalize(sum of its x^) (empty clusters keep theirs), and a commitment loss
// beta * mean |x^ - mu_assigned|^2 (auxiliary_loss.h) pulls q and k towards their centroids. The
// centroids (buffers, [h, k_c, d]) start as k-means (kmeans_init iterations, from evenly spaced
// members: no draw from the run's random stream) on the first training batch's x^, or as random
// unit vectors with kmeans_init 0.
// Not causal: the balanced top-w choice looks at every token (as the code's), so a later token
// can change which earlier keys a cluster holds. Prefix tokens (class, registers) are global, as
// in the local blocks: they see every token and every cluster sees them. The probe's rows of
// tokens in no cluster are empty (weights unnormalised).
//
// Shape contract: x [B, N, C] -> [B, N, C]; any tokens (a grid or a sequence).
#pragma once

#include "blocks/attention/parts/routed_core.h"
#include "blocks/auxiliary_loss.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

struct RoutingAttentionOptions : MultiHeadOptions<RoutingAttentionOptions> {
  TORCH_ARG(std::int64_t, clusters) = 0;      // k_c (0: round(sqrt(longest sequence)))
  TORCH_ARG(double, decay) = 0.999;           // lambda of the centroids' moving average
  TORCH_ARG(double, commitment) = 1e-4;       // beta of the commitment loss
  TORCH_ARG(std::int64_t, kmeans_init) = 10;  // k-means iterations on the first training batch
};

class RoutingAttentionImpl : public MultiHeadAttentionImpl, public AuxiliaryLoss {
 public:
  static constexpr const char* kKey = "sparse/routing";
  RoutingAttentionImpl(std::int64_t dim, const RoutingAttentionOptions& options, const MultiHeadConfig& config);
  const RoutingAttentionOptions& options() const { return options_; }

  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const MixerContext& ctx) override;
  MixerCapabilities core_capabilities() const override;
  MixerCapabilities capabilities() const override { return core_capabilities(); }
  torch::Tensor take_auxiliary_loss() override;

  // The clusters of the body tokens (after `prefix` prefix tokens) of q, k [B, h, N, d] with the
  // current centroids, w queries and w keys each, plus the prefix keys; with a prefix, a second
  // group: the prefix queries over every key.
  std::vector<RoutedGroups> groups(const torch::Tensor& q, const torch::Tensor& k, std::int64_t prefix = 0) const;
  // The balanced cluster size for n body tokens.
  std::int64_t window(std::int64_t tokens) const;

  torch::Tensor centroids;    // [h, k_c, d] buffer
  torch::Tensor initialised;  // [] bool buffer: the centroids have been fitted (resumes with the run)

 private:
  // One training step of the centroids on the unit features x^ [B, h, n, d] (no gradient); returns
  // each feature's nearest centroid [B, h, n].
  torch::Tensor update_centroids(const torch::Tensor& features);

  RoutingAttentionOptions options_;
  double attn_drop_;
  torch::Tensor pending_loss_;
};
TORCH_MODULE(RoutingAttention);

const OptionsSchema<RoutingAttentionOptions>& routing_attention_schema();

// Spherical k-means: `iterations` steps of assigning the unit vectors x [h, n, d] to the nearest
// of `centroids` [h, k, d] and replacing each centroid by the normalised sum of its members (an
// empty cluster keeps its centroid). Returns the new centroids.
torch::Tensor spherical_kmeans(const torch::Tensor& x, torch::Tensor centroids, std::int64_t iterations);

}  // namespace blocklab
