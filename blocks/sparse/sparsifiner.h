// sparse/sparsifiner: multi-head attention whose body queries each keep only the top-k keys
// chosen by a cheap low-rank connectivity predictor; the predictor learns to reconstruct the
// layer's own dense attention rows (an auxiliary loss).
//
// Paper: "Sparsifiner: Learning Sparse Instance-Dependent Attention for Efficient Vision
// Transformers", Wei et al. 2023, CVPR, arXiv:2303.13755, §3; read against lim142857/Sparsifiner
// (src/models/sparsifiner.py MaskPredictor and Attention, src/losses.py; catalog_002 B-09).
//   q~ = q W_cq + b, k~ = k W_ck + b           (d -> d / r_c, shared by the heads)
//   k^ = k~^T P_n                              (P_n [N, N / r_n]: the token reduction)
//   coef = softmax(q~ k^ / sqrt(h))            (the code scales by the number of heads h)
//   approx = coef P_back^T                     (the basis P_back^T [N / r_n, N]) -> [N_body, N]
//   M_i = top-k_j approx_ij, k = ceil(keep_rate N); prefix rows of M all ones; M detached
//   A = softmax(q k^T / sqrt(d), -inf outside M),  o = A v
//   L_recon = recon_weight * mean_(b, h, body i) sum_j (approx_ij - A^dense_ij)^2, A^dense detached
//
// Here, unlike the paper's fixed N: P_n and P_back are max_tokens (the model's longest sequence)
// long, and a sequence of N tokens uses their first N rows, like an absolute position table.
// Prefix tokens (class, registers) keep every key, as the code's class row; body rows choose
// their k keys among all keys, prefix keys included. The predictor's inputs q, k are detached
// (its parameters learn only from L_recon; in the code's reconstruction stage the loss also
// reaches q and k, at 1/100 of the learning rate), and the code's single stage-1 dense forward
// and stage-2 sparse forward become one: the forward is always sparse, the loss always trains
// the predictor (recon_weight 0: off). The code's basis takes |P_back| outside its
// reconstruction stage (threshold tau_b = 0); here the basis is P_back in both the loss and the
// mask, so the mask ranks by what the loss fits. L_recon is per layer and per attention row (the
// code sums over rows and the batch, averages the layers and weighs by 0.01): a sum over the
// batch would grow with it and, at B = 128, outweigh the task loss ~1000 times, and with it the
// trainer's gradient clipping by the global norm.
// The N x N matrices exist only chunk by chunk (query_chunk rows): approx, its top-k, the
// teacher rows and the loss's gradients; the attention runs on the gathered keys (routed core,
// blocks/attention/parts/routed_core.h). The probe gets the scattered [B, h, N, N] weights.
// Not causal: P_n mixes every key into k^, so later tokens change which earlier keys a row keeps.
//
// Shape contract: x [B, N, C] -> [B, N, C]; N <= max_tokens; any tokens (a grid or a sequence).
#pragma once

#include <vector>

#include "blocks/attention/parts/routed_core.h"
#include "blocks/auxiliary_loss.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

struct SparsifinerAttentionOptions : MultiHeadOptions<SparsifinerAttentionOptions> {
  TORCH_ARG(double, keep_rate) = 0.25;        // fraction of the keys a body query keeps, in (0, 1] (default 0.25)
  TORCH_ARG(std::int64_t, reduce_n) = 8;      // r_n: P_n reduces max_tokens to max_tokens / r_n (default 8)
  TORCH_ARG(std::int64_t, reduce_c) = 2;      // r_c: the predictor's width d / r_c (default 2)
  TORCH_ARG(double, recon_weight) = 1.0;      // weight of the reconstruction loss; 0: off (default 1)
  TORCH_ARG(std::int64_t, query_chunk) = 64;  // query rows per chunk of the N-wide predictor rows (default 64)
};

// What the chunked pass over the body queries yields: the kept keys, and for the loss its value
// and its gradients with respect to the coefficients and the basis (all without autograd).
struct SparsifinerScan {
  torch::Tensor keys;        // [B, h, N_body, k] int64: the top-k keys of each body query
  torch::Tensor loss;        // [] sum of (approx - teacher)^2, or undefined
  torch::Tensor grad_coef;   // [B, h, N_body, N_max / r_n]
  torch::Tensor grad_basis;  // [N_max / r_n, N]
};

class SparsifinerAttentionImpl : public MultiHeadAttentionImpl, public AuxiliaryLoss {
 public:
  static constexpr const char* kKey = "sparse/sparsifiner";
  SparsifinerAttentionImpl(std::int64_t dim, const SparsifinerAttentionOptions& options, const MultiHeadConfig& config);
  const SparsifinerAttentionOptions& options() const { return options_; }

  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const MixerContext& ctx) override;
  MixerCapabilities core_capabilities() const override;
  MixerCapabilities capabilities() const override { return core_capabilities(); }
  torch::Tensor take_auxiliary_loss() override;

  // k = ceil(keep_rate N) for N tokens (the code's attn_budget), at most N.
  std::int64_t kept_keys(std::int64_t tokens) const;
  // coef = softmax(q~ k^ / sqrt(h)) of the body queries (after `prefix`), [B, h, N_body, N_max / r_n],
  // from q, k [B, h, N, d] (detached).
  torch::Tensor coefficients(const torch::Tensor& q, const torch::Tensor& k, std::int64_t prefix);
  // The basis P_back^T over the first N tokens, [N_max / r_n, N].
  torch::Tensor basis(std::int64_t tokens) const;
  // The chunked pass: top-k of approx = coef basis per body query and, when `teacher`, the
  // reconstruction loss against softmax(q k^T / sqrt(d)) and its gradients.
  SparsifinerScan scan(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& coef,
                       const torch::Tensor& basis, std::int64_t prefix, bool teacher) const;
  // The body queries with their kept keys, and the prefix queries with every key.
  std::vector<RoutedGroups> groups(const torch::Tensor& kept, std::int64_t tokens, std::int64_t prefix) const;

  torch::nn::Linear proj_c_q{nullptr}, proj_c_k{nullptr};  // W_cq, W_ck: d -> d / r_c
  torch::Tensor proj_n;                                    // P_n [N_max, N_max / r_n]
  torch::Tensor proj_back_n;                               // P_back [N_max, N_max / r_n]; basis = P_back^T

 private:
  SparsifinerAttentionOptions options_;
  std::int64_t max_tokens_;
  double attn_drop_;
  torch::Tensor pending_loss_;
};
TORCH_MODULE(SparsifinerAttention);

const OptionsSchema<SparsifinerAttentionOptions>& sparsifiner_attention_schema();

}  // namespace blocklab
