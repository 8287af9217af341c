// The attention core: what happens between the projection and the output of a multi-head
// attention (design.md, "Model interfaces, second shape": projection -> core -> output).
//
//   q [B, h, N, d], k [B, h, N, d], v [B, h, N, d_v], context -> o [B, h, N, d_v]
//
// The projection (parts/projection.h) has already split the heads, repeated grouped key/value
// heads, and applied q/k normalisation and rotary positions; the output (parts/output.h)
// gates, merges the heads and projects back. Cores:
//   dense   parts/dense_core.h: explicit weights normalise(scores + bias) [B, h, N, N] with
//           the score/bias/normaliser/values hooks, masks, the probe and the fused kernels.
//   linear  (to come, one file each) feature maps and decays; parallel, chunked and recurrent
//           forms of the same map, tested against each other (fla's triplets). A linear core
//           implements the recurrent protocol (init_state/step) of blocks/interfaces.h.
//   local   parts/local_core.h: softmax over a restricted key set per group of queries
//           (windows, grids, halos, neighborhoods; local_patterns.h), never N x N.
// A core says what it can do through core_capabilities(); the mixer reports them.
#pragma once

#include <torch/torch.h>

#include <limits>

#include "blocks/interfaces.h"

namespace blocklab {

// The logit of a pair that may not attend.
inline constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

class AttentionCore {
 public:
  virtual ~AttentionCore() = default;
  // The heads' outputs for queries, keys and values of one sequence batch under ctx.
  virtual torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const MixerContext& ctx) = 0;
  // What the core honours (causal, weights for the probe, variable lengths, recurrence).
  virtual MixerCapabilities core_capabilities() const = 0;
};

}  // namespace blocklab
