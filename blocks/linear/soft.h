// linear/soft: SOFT, softmax-free attention with a Gaussian kernel, made linear by a Nyström
// decomposition through convolutional landmarks.
//
// Paper: "SOFT: Softmax-free Transformer with Linear Complexity", Lu et al., NeurIPS 2021,
// arXiv:2110.11945 (the symmetric normalisation: "Softmax-free Linear Transformers", Lu et al.,
// IJCV 2024, arXiv:2207.03341); official code fudan-zvg/SOFT, models/softmax_free_transformer.py
// (SoftmaxFreeAttention, SoftmaxFreeAttentionKernel) and SOFT/kernel/inverse.py (newton_inv and
// its autograd Function); catalog_000_001 B 0-03. Per head, d = C / h:
//   Q = X W_q + b_q,  V = X W_v + b_v,  K = Q (shared),  Q <- Q / d^(1/4)
//   landmarks  Q~ = GELU(LN_d(Conv2d_{d->d, s x s, stride s, no bias}(Q on the H x W grid)))  [m, d]
//              (conv and LayerNorm shared by the heads; m = ceil(H/s) ceil(W/s))
//   kernel     kappa(a, b) = exp(-|a - b|^2 / 2),  K1 = kappa(Q, Q~) [N, m],  K2 = kappa(Q~, Q~) [m, m]
//   attention  X = K1 pinv(K2) (K1^T V), evaluated right to left: O(N m d + m^2 d + m^3)
//   pinv       Newton-Schulz on P = K2 + 0.01 I (the code's ridge): V_0 = alpha P with
//              alpha = 0.9 * 2 / (max_i sum_j (K2)_ij)^2 (per matrix), V_{t+1} = 2 V_t - V_t P V_t,
//              newton_iterations steps (default 20), not differentiated through; the backward is
//              the inverse's, taken at V: dL/dK2 = -V^T G V^T (G = dL/dV), as the official Function
//   symmetric  (normalisation: symmetric, the "norm" configs) pinv(K2) <- D pinv(K2) D,
//              D = diag(rowsum(K2))^(-1/2), D differentiated by autograd. pinv is the same Newton
//              iterate as above (the official norm kernel's own iteration drops the ridge and picks
//              one alpha for the whole batch, which would couple the samples)
//   local      X += DWConv2d_{h->h, k x k, groups h, no bias, padding k/2}(V on the grid): one k x k
//              filter per head, shared by that head's d channels (local_kernel k; 0 = none)
//   out        Concat_h(X) W_o + b_o, then dropout (proj_drop)
//
// Layout decisions (not in the paper, whose SOFT stages have no class token):
//   prefix tokens  (class/register) are queries and keys of the kernel attention (rows of K1,
//                  so they also reach every output through K1^T V) but give no landmarks and get
//                  no local term (the official s = 1 path also leaves its class token out of the
//                  convolution).
//   grid padding   the query grid is zero-padded at the bottom and right to multiples of s before
//                  the landmark convolution (as a convolution's zero padding), so every grid size,
//                  including grids smaller than s, gives ceil(H/s) ceil(W/s) landmarks.
//   ratio 1        a 1 x 1 convolution (m = H W landmarks); the official code switches to a
//                  different quadratic path there.
//   weights        the probe records the implicit map K1 pinv(K2) K1^T [B, h, N, N] (without the
//                  local term), computed from the tensors of the output: rows do not sum to 1.
//
// Shape contract: x [B, N, C] -> [B, N, C], N = prefix + H W (the context must give the grid);
// C % heads == 0. Not causal, not recurrent, no padding masks. Parameters (qkv_bias):
// 2 C^2 + 2 C (W_q, W_v) + C^2 + C (W_o) + s^2 d^2 (landmark conv) + 2 d (its LayerNorm) + h k^2.
#pragma once

#include <string>

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct SoftOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(std::int64_t, ratio) = 2;               // landmark stride s
  TORCH_ARG(std::int64_t, local_kernel) = 3;        // k of the depthwise local conv (odd; 0 = none)
  TORCH_ARG(std::int64_t, newton_iterations) = 20;  // Newton-Schulz steps for pinv(K2)
  TORCH_ARG(std::string, normalisation) = "none";   // none | symmetric
  TORCH_ARG(bool, qkv_bias) = true;                 // bias on W_q and W_v
  TORCH_ARG(double, proj_drop) = 0.0;
};

// The ridge the official Newton iteration adds to K2 before inverting.
constexpr double kSoftRidge = 0.01;

// kappa(a_i, b_j) = exp(-|a_i - b_j|^2 / 2): a [..., n, d], b [..., m, d] -> [..., n, m].
torch::Tensor soft_gaussian_kernel(const torch::Tensor& a, const torch::Tensor& b);
// The Newton-Schulz iterate V_t for (K2 + 0.01 I)^-1, K2 [..., m, m] symmetric (one alpha per
// matrix). Plain tensor ops: autograd, if on, differentiates through every step.
torch::Tensor soft_newton_inverse(const torch::Tensor& k2, std::int64_t iterations);
// The same value as an autograd Function: forward soft_newton_inverse without recording its
// steps; backward the exact inverse's gradient at V, dL/dK2 = -V^T G V^T.
torch::Tensor soft_pinv(const torch::Tensor& k2, std::int64_t iterations);

// What one forward computes per head, before the local term (all [B, h, ...]).
struct SoftTerms {
  torch::Tensor queries;    // Q / d^(1/4) [B, h, N, d] (the keys too)
  torch::Tensor values;     // V [B, h, N, d]
  torch::Tensor landmarks;  // Q~ [B, h, m, d]
  torch::Tensor k1;         // kappa(Q, Q~) [B, h, N, m]
  torch::Tensor k2;         // kappa(Q~, Q~) [B, h, m, m]
  torch::Tensor inverse;    // pinv(K2), or D pinv(K2) D (symmetric) [B, h, m, m]
};

class SoftImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "linear/soft";
  explicit SoftImpl(std::int64_t dim, const SoftOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // Not causal, unnormalised weights to the probe, needs the grid.
  MixerCapabilities capabilities() const override;

  const SoftOptions& options() const { return options_; }
  std::int64_t heads() const { return heads_; }
  std::int64_t head_dim() const { return head_dim_; }

  // Q, V, the landmarks, K1, K2 and the inverse for x [B, N, C] on ctx's grid.
  SoftTerms terms(const torch::Tensor& x, const MixerContext& ctx);
  // Q~ from the grid tokens of q [B, h, N, d] -> [B, h, m, d], m = ceil(H/s) ceil(W/s).
  torch::Tensor landmarks(const torch::Tensor& q, const MixerContext& ctx);
  // pinv(K2) by Newton-Schulz, with D . D when normalisation is symmetric; K2 [..., m, m].
  torch::Tensor landmark_inverse(const torch::Tensor& k2) const;
  // The depthwise local conv of the grid values, v [B, h, N, d] -> [B, h, N, d] (0 at prefix tokens).
  torch::Tensor local_term(const torch::Tensor& v, const MixerContext& ctx);

  torch::nn::Linear query{nullptr};             // W_q: C -> C
  torch::nn::Linear value{nullptr};             // W_v: C -> C
  torch::nn::Conv2d landmark{nullptr};          // d -> d, s x s, stride s, no bias
  torch::nn::LayerNorm landmark_norm{nullptr};  // LN over d (eps 1e-5, as nn.LayerNorm)
  torch::nn::Conv2d local{nullptr};             // h -> h, k x k, groups h; null when k = 0
  torch::nn::Linear proj{nullptr};              // W_o: C -> C

 private:
  void check_layout(const torch::Tensor& x, const MixerContext& ctx) const;

  SoftOptions options_;
  std::int64_t heads_, head_dim_;
};
TORCH_MODULE(Soft);

const OptionsSchema<SoftOptions>& soft_schema();

}  // namespace blocklab
