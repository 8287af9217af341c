// The linear attention core: kernelised attention without the softmax, with an optional
// per-head decay and an optional normaliser, in three forms that compute the same function.
//
//   A_ij = phi(q_i) . phi(k_j) * M_ij,   o_i = sum_j A_ij v_j  [ / (sum_j A_ij + eps) ]
//   M_ij = lambda_h^(i - j) (j <= i) causal, lambda_h^|i - j| non-causal, 1 without decay
//
// Katharopoulos et al. 2020, "Transformers are RNNs", arXiv:2006.16236, eqs. (4)-(6) and
// (16)-(20) (the recurrent form); the decay is RetNet's (Sun et al. 2023, arXiv:2307.08621,
// eq. (5)) and Lightning Attention's (Qin et al. 2024, arXiv:2401.04658, Algorithm 1).
// The feature map phi is the mixer's: the core takes q = phi(q), k = phi(k) as given.
//
// Forms (LinearCoreConfig::form):
//   parallel  the explicit [N, N] matrix: the oracle, and the path the probe uses;
//   chunked   Lightning Attention-2's tiling (Qin et al. 2024, arXiv:2401.04658, Algorithm 1):
//             within a chunk the masked quadratic form, across chunks a d x e state; linear in N
//             (linear_chunked.cpp: tiles of chunks; a backward that recomputes).
//             Non-causal with decay: the causal pass plus the reversed causal pass minus the
//             diagonal; non-causal without decay: q (k^T v) at once;
//   recurrent one token at a time (step): S_t = lambda S_{t-1} + k_t v_t^T, o_t = q_t S_t;
//             the state [B, h, d, e] does not grow with N.
// The normaliser sum_j A_ij is computed by every form as one more value column of ones, so
// the three forms agree on it as well.
//
// Key padding (ctx.lengths): keys and values at padded positions are zeroed, so they add
// nothing to any sum. The probe records A (rows divided by their sums when normalising, so
// rows sum to 1) from the parallel form; the output is the configured form's either way.
#pragma once

#include <string>

#include "blocks/attention/parts/core.h"

namespace blocklab {

struct LinearCoreConfig {
  std::string form = "chunked";  // parallel | chunked
  std::int64_t chunk = 64;       // chunk length of the chunked form
  bool normalise = true;         // divide by sum_j A_ij (+ eps)
  double eps = 1e-6;
  bool causal_only = false;  // always causal (RetNet, Lightning): ignores ctx.causal = false
};

// lambda^power per head, [h, ...]: exp(log_decay [h] * powers [...]) (any shape).
torch::Tensor linear_decay_powers(const torch::Tensor& log_decay, const torch::Tensor& powers);
// Masked decay [h, N, N]: exp(log_decay_h * (i - j)) for j <= i (else 0) when causal,
// exp(log_decay_h * |i - j|) otherwise. log_decay [h] (<= 0), in its dtype and device.
torch::Tensor linear_decay_matrix(const torch::Tensor& log_decay, std::int64_t tokens, bool causal);
// Per-token decays (Mamba-2's SSD, Dao & Gu 2024, arXiv:2405.21060): log a [B, h, N], the decay
// of step t (S_t = a_t S_{t-1} + k_t v_t^T) -> M [B, h, N, N], M_ij = prod_{j < l <= i} a_l (j <= i).
torch::Tensor linear_token_decay_matrix(const torch::Tensor& log_decay);
// The unnormalised weights A [B, h, N, N] = (q k^T) * M; log_decay [h], [B, h, N] (per token,
// causal only) or undefined.
torch::Tensor linear_weights(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& log_decay,
                             bool causal);
// o = A v by the explicit matrix. q, k [B, h, N, d], v [B, h, N, e] -> [B, h, N, e].
torch::Tensor linear_parallel(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& log_decay, bool causal);
// o = A v by chunks of `chunk` tokens (any N; the last chunk may be shorter; log_decay as
// linear_weights takes it), in
// linear_chunked.cpp: tiles of chunks carrying the state; training keeps q, k, v only and
// recomputes in the backward.
torch::Tensor linear_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& log_decay, bool causal, std::int64_t chunk);
// The causal chunked pass under plain autograd (what linear_chunked uses for a decay that needs
// its gradient, and what its own backward runs).
torch::Tensor linear_chunked_causal(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const torch::Tensor& log_decay, std::int64_t chunk);
// One causal step: q_t, k_t [B, h, d], v_t [B, h, e], state S [B, h, d, e] ->
// (o_t [B, h, e], S_t = a_t S + k_t v_t^T), log a_t = log_decay [h] (constant) or [B, h] (this step's).
std::pair<torch::Tensor, torch::Tensor> linear_recurrent_step(const torch::Tensor& q_t, const torch::Tensor& k_t,
                                                              const torch::Tensor& v_t, const torch::Tensor& state,
                                                              const torch::Tensor& log_decay);

class LinearCore : public AttentionCore {
 public:
  // `key` is recorded with probe captures.
  LinearCore(std::string key, LinearCoreConfig config);

  // q, k (features), v [B, h, N, d|e] -> o [B, h, N, e] by the configured form.
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const MixerContext& ctx) override;
  // Causal, recurrent, variable lengths; weights normalised (with the normaliser) or unnormalised.
  MixerCapabilities core_capabilities() const override;

  // The recurrent form: the state [B, h, d, e (+1 with the normaliser)] before the first token,
  // and one step with q_t, k_t [B, h, d], v_t [B, h, e] -> (o_t [B, h, e], new state).
  torch::Tensor initial_state(std::int64_t batch, std::int64_t heads, std::int64_t key_dim, std::int64_t value_dim,
                              const torch::TensorOptions& options) const;
  std::pair<torch::Tensor, torch::Tensor> attend_step(const torch::Tensor& q_t, const torch::Tensor& k_t,
                                                      const torch::Tensor& v_t, const torch::Tensor& state);

  const LinearCoreConfig& core_config() const { return config_; }
  bool causal(const MixerContext& ctx) const { return ctx.causal || config_.causal_only; }

 protected:
  // log lambda_h [h] (<= 0) of the per-head decay; undefined = no decay (the default).
  virtual torch::Tensor log_decay() const { return {}; }

 private:
  // v with a ones column appended when normalising; the output divided by it.
  torch::Tensor with_normaliser(const torch::Tensor& v) const;
  torch::Tensor normalised(const torch::Tensor& o) const;
  void record(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx);

  std::string key_;
  LinearCoreConfig config_;
};

}  // namespace blocklab
