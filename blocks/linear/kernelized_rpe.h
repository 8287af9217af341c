// linear/kernelized-rpe: kernelized attention with a relative positional bias, by FFT.
//
// Paper: "Stable, Fast and Accurate: Kernelized Attention with Relative Positional Encoding",
// Luo et al., NeurIPS 2021, arXiv:2106.12566 (no official code; catalog_003_004 C43).
// Per head, q_i, k_j in R^d, i, j = 0..n-1, the target is softmax attention with one learnable
// scalar per relative offset (§2.2):
//   z_i = sum_j exp(q_i.k_j / sqrt(d) + b_{j-i}) v_j / sum_j exp(q_i.k_j / sqrt(d) + b_{j-i})
// kernelised (§2.3) with Performer's positive random features (FAVOR+, Choromanski et al. 2021,
// arXiv:2009.14794, Lemma 1), exp(x.y) ~ phi(x).phi(y):
//   x~ = x / d^(1/4),  phi(x) = m^(-1/2) exp(W x~ - |x~|^2 / 2) in R^m,
//   W [m, d]: rows N(0, I_d), block-orthogonalised (blocks of d orthogonal rows, chi_d norms),
//   drawn once per layer at construction (a buffer; torch::manual_seed makes it deterministic).
// With c_r = exp(b_r) and the Toeplitz matrix C[i, j] = c_{j-i} (§3.2):
//   num_i = sum_l phi(q_i)_l [C (phi(K)_{:,l} ⊙ V)]_i,   den_i = sum_l phi(q_i)_l [C phi(K)_{:,l}]_i,
//   z_i = num_i / den_i,
// each of the m (d + 1) Toeplitz products y_i = sum_j c_{j-i} u_j a correlation computed by FFT
// of size >= 2n - 1: O(m d n log n) time, O(m d n) memory per head.
// Causal: c_r = 0 for r > 0 (C lower triangular), the same FFT path.
//
// Choices (the catalog's [verify] items, not checked against the paper's text):
// - qk_normalize (default true; the paper's §3.3: the estimator's variance grows with |q|, |k|,
//   so queries and keys are normalised and the unconstrained RPE restores sharp attention):
//   x~ = rho_h x / |x| for q and k, rho_h a learnable scale per head (init 1). The kernel
//   approximated is then exp(rho_h^2 cos(q_i, k_j)) and |x~| = rho_h bounds the variance.
//   qk_normalize false: x~ = x / d^(1/4), the plain FAVOR+ target exp(q.k / sqrt(d)).
// - m = features (default 64), one W shared by the heads of a layer, never redrawn.
// - b: 2 n_max - 1 scalars per head, zero init (the block starts as Performer attention).
//   r = j - i is the index difference of the tokens as given (prefix tokens, then the grid in
//   row-major order; no 2-D RPE); N <= n_max = max_length, longer inputs are refused.
// - Numerics: phi(q_i) is divided by its largest feature (detached). z_i and the map are
//   ratios in phi(q_i), so nothing changes but float32 under/overflow. Keys are not rescaled
//   (a shared shift would couple tokens, later ones in the causal form). den_i is clamped
//   below at eps (default 1e-30), which only matters for rows without any valid key.
// - Padding (ctx.lengths): the padded keys' phi(k_j) and v_j are zeroed, so they leave num and den.
// - Probe: records A_ij = c_{j-i} phi(q_i).phi(k_j) / sum_j (same) [B, h, N, N] (rows sum to 1,
//   z_i = sum_j A_ij v_j); the output stays on the FFT path. Not recurrent (a general Toeplitz
//   C has no finite state).
//
// Shape contract: x [B, N, C] -> [B, N, C]; C % heads == 0; N <= max_length.
// Parameters: qkv (C -> 3C, bias with qkv_bias), proj (C -> C), rpe_bias [h, 2 n_max - 1],
// qk_scale [h] (qk_normalize). Buffer: random_features W [m, d], d = C / heads.
#pragma once

#include <string>
#include <vector>

#include "blocks/attention/parts/output.h"
#include "blocks/attention/parts/projection.h"
#include "blocks/common/options.h"
#include "blocks/common/weight_decay.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct KernelizedRpeOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(std::int64_t, features) = 64;   // m random features
  TORCH_ARG(std::int64_t, max_length) = 0;  // n_max; 0: the model's longest sequence
  TORCH_ARG(bool, qk_normalize) = true;     // x~ = rho_h x / |x| (paper §3.3)
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(double, proj_drop) = 0.0;
  TORCH_ARG(double, eps) = 1e-30;  // lower bound of den_i
};

class KernelizedRpeImpl : public TokenMixerImpl, public DeclaresNoWeightDecay {
 public:
  static constexpr const char* kKey = "linear/kernelized-rpe";
  // max_length must be positive here (the registry resolves 0 to the model's longest sequence).
  KernelizedRpeImpl(std::int64_t dim, const KernelizedRpeOptions& options);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // Causal, normalised weights to the probe, variable lengths; not recurrent.
  MixerCapabilities capabilities() const override;
  // The relative bias is a position table: no weight decay.
  std::vector<std::string> no_weight_decay() const override { return {"rpe_bias"}; }

  // The attention of the heads: q, k, v [B, h, N, d] -> z [B, h, N, d] (before the output
  // projection); records the map when capturing(ctx.probe).
  torch::Tensor mix(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const MixerContext& ctx);

  // x~ [B, h, N, d] of queries or keys: rho_h x / |x| (qk_normalize) or x / d^(1/4).
  torch::Tensor scaled(const torch::Tensor& x) const;
  // phi(x~) = m^(-1/2) exp(W x~ - |x~|^2 / 2) [B, h, N, m] (FAVOR+ positive features).
  torch::Tensor features(const torch::Tensor& x_scaled) const;
  // c_r = exp(b_r) for r = -(n-1)..(n-1) [h, 2n-1] (column r + n - 1), 0 for r > 0 when causal.
  torch::Tensor toeplitz_coefficients(std::int64_t tokens, bool causal) const;

  torch::Tensor random_features;  // W [m, d] (buffer)
  torch::Tensor rpe_bias;         // b [h, 2 n_max - 1], column r + n_max - 1 <-> offset r = j - i
  torch::Tensor qk_scale;         // rho [h] (qk_normalize)

 private:
  // phi(q_i) divided by its largest feature (detached): the ratios z_i and A_i. are unchanged.
  torch::Tensor query_features(const torch::Tensor& q_scaled) const;
  // A [B, h, N, N]: A_ij = c_{j-i} phi(q_i).phi(k_j) / sum_j (same).
  torch::Tensor attention_map(const torch::Tensor& phi_q, const torch::Tensor& phi_k, const torch::Tensor& c) const;
  void check_length(std::int64_t tokens) const;

  std::int64_t dim_, max_length_;
  bool qk_normalize_;
  double eps_;
  QkvProjection projection_;
  OutputProjection output_;
};
TORCH_MODULE(KernelizedRpe);

// Performer's block-orthogonal Gaussian matrix [m, d] (FAVOR+, Choromanski et al. 2021, §2.4):
// each block of d rows is orthonormal (the Q of a Gaussian's QR, signs fixed), every row then
// scaled by the norm of an independent N(0, I_d) draw, so rows are marginally N(0, I_d). Drawn
// from torch's generator in float64, returned in the default dtype.
torch::Tensor block_orthogonal_features(std::int64_t rows, std::int64_t dim);

// y = C u with C[i, j] = c_{j-i}: c [h, 2n-1] (column r + n - 1 <-> offset r), u [B, h, n, K] ->
// [B, h, n, K], by FFT of the correlation (size the power of two >= 2n - 1).
torch::Tensor toeplitz_product(const torch::Tensor& c, const torch::Tensor& u);

// Whether the dense O(n^2) map costs fewer flops than the FFT products for n tokens, m features
// and value width d (the mixer takes the cheaper; both are tested equal).
bool dense_is_cheaper(std::int64_t n, std::int64_t features, std::int64_t value_dim);

// z = num / den [B, h, N, d] from phi(Q), phi(K) [B, h, N, m], V [B, h, N, d], c [h, 2N-1]:
// the m (d + 1) Toeplitz products of phi(K)_{:,l} ⊙ [V | 1], contracted with phi(Q); den
// clamped below at eps.
torch::Tensor kernelized_rpe_attention(const torch::Tensor& phi_q, const torch::Tensor& phi_k, const torch::Tensor& v,
                                       const torch::Tensor& c, double eps);

const OptionsSchema<KernelizedRpeOptions>& kernelized_rpe_schema();

}  // namespace blocklab
