// sparse/sg-former: SG-Former's two attentions, one registry key with a `role` option.
//
// Paper: "SG-Former: Self-guided Transformer with Evolving Token Reallocation", Ren et al. 2023,
// ICCV, arXiv:2308.12216, §3.2-3.3; read against OliverRensu/SG-Former sgformer.py (Attention,
// window_partition; catalog_000_001 B 1-28). Heads h (even), head width d = C / h, scale d^-1/2.
//
// role hybrid (the paper's odd blocks, hybrid-scale attention):
//   global half (h/2 heads): q1 = W_q1 x; k1, v1 = W_kv1 x_r, x_r = GELU(LN(Conv_{k=s=sr}(x)))
//     (N / sr^2 keys); o1 = softmax(q1 k1^T / sqrt(d)) v1
//   local half (h/2 heads): q2 = W_q2 x; k2, v2 = W_kv2 x; softmax inside M x M windows; o2
//   out = W_o([o1, o2] + LePE(x)),  LePE(x) = DWConv_3x3(W_lepe x) on the grid
//   significance (no gradient; `significance()`): sig = up_nearest(mean_{heads, queries} A1)
//     + mean_{heads, window queries} A2 (the attention mass each key position receives).
// role reallocation (the paper's even blocks, significance-guided token reallocation):
//   sig as the global term above from this layer's own q (first h/2 heads) against the
//     sr-reduced keys k = W_kv1[keys] AvgPool_sr(x) (no gradient);
//   for ordering r in {row-major, column-major}: tokens sorted by sig ascending (stable), the
//     sorted sequence cut into fractions (sr 4/8: [1/4, 1/2, 1/4]; sr 2: [1/2, 1/2]), fraction i
//     cut into consecutive groups of g_i tokens, each group aggregated by Linear_i(g_i -> 1)
//     (shared by both orderings): seq_r [B, T, C]; k, v of heads [0, h/2) = W_kv1 seq_row, of
//     heads [h/2, h) = W_kv2 seq_col; out = W_o(softmax(q k^T / sqrt(d)) v + LePE(x)).
//
// DEVIATION: in SG-Former the reallocation block consumes the significance map of the PREVIOUS
// (hybrid) block. Our layers are built and called independently (MixerContext carries no state),
// so the reallocation role computes its OWN significance from a coarse global attention of its
// queries over sr-reduced keys (its global term only; the reduction is an average pool rather
// than the hybrid's Conv-LN-GELU, whose weights would get no gradient through the sort).
//
// Small grids (ours are 14 x 14, 7 x 7; the paper's 56/28/14): fraction i spans the sorted
// positions [floor(N c_{i-1}), floor(N c_i)) (c the cumulative fractions, as the code's H*W // 4
// cuts) and is zero-padded at its end to a multiple of g_i, giving ceil(n_i / g_i) tokens; where
// the sizes divide this is exactly the paper's aggregation (sr 4 on 14 x 14: 1 + 7 + 7 tokens).
// A grid that is not a multiple of sr (of the window) is zero-padded at the bottom and right for
// the reduction (the window attention, whose padded tokens take part as Swin v1's auto_pad); the
// window side is min(window, extent). Prefix tokens (class, registers) are global: they are
// extra keys/values of every query (global half and reallocation: through W_kv1 / W_kv2 of their
// own x; local half: local_core's with_prefix, where they also see every token) and get no LePE;
// the significance covers the grid's queries and keys only.
//
// Shape contract: x [B, N, C] -> [B, N, C], N = prefix + grid tokens; needs a grid. Not causal.
// Never N x N: the global half is N x N / sr^2, the local half windows, reallocation N x T.
#pragma once

#include <string>
#include <vector>

#include "blocks/attention/parts/local_core.h"
#include "blocks/common/options.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct SgFormerOptions {
  TORCH_ARG(std::int64_t, heads) = 4;                      // h, even: h/2 global + h/2 local heads (default 4)
  TORCH_ARG(std::string, role) = "hybrid";                 // hybrid | reallocation (default hybrid)
  TORCH_ARG(std::int64_t, sr) = 2;                         // spatial reduction sr (paper: 8, 4, 2 by stage; default 2)
  TORCH_ARG(std::int64_t, window) = 7;                     // local window side M (default 7)
  TORCH_ARG(std::vector<double>, fractions) = {};          // reallocation fractions ([] = by sr; default [])
  TORCH_ARG(std::vector<std::int64_t>, group_sizes) = {};  // tokens per aggregated token ([] = by sr; default [])
  TORCH_ARG(bool, qkv_bias) = true;                        // bias on the q/kv projections (default true)
  TORCH_ARG(std::int64_t, lepe_kernel) = 3;                // LePE depth-wise kernel, odd (default 3)
};

// The paper's reallocation fractions and group sizes for sr (8: [1/4,1/2,1/4], (196,56,28); 4:
// [1/4,1/2,1/4], (49,14,7); 2: [1/2,1/2], (2,1); other sr: those of 2).
std::vector<double> sg_former_fractions(std::int64_t sr);
std::vector<std::int64_t> sg_former_group_sizes(std::int64_t sr);

// The significance terms of a hybrid layer (no gradient).
struct SgSignificance {
  torch::Tensor global_reduced;  // [B, H_r, W_r]: mean over heads and grid queries of A1 (sums to 1)
  torch::Tensor local_padded;    // [B, H_p, W_p]: mean over heads and window queries of A2 (1 per window)
  torch::Tensor map;             // [B, H, W]: up_nearest(global_reduced) + local, cropped to the grid
};

// mean_{heads, queries} of the global weights a [B, h, N_q, H_r W_r] -> [B, H_r, W_r].
torch::Tensor sg_former_global_term(const torch::Tensor& weights, std::int64_t reduced_h, std::int64_t reduced_w);
// Nearest upsampling by sr of m [B, H_r, W_r], cropped to [B, height, width].
torch::Tensor sg_former_upsample(const torch::Tensor& m, std::int64_t sr, std::int64_t height, std::int64_t width);
// mean_{heads, queries of the window} of the window weights w [B, h, G, b, m] scattered to the
// window part's keys -> [B, keys] (keys: the grid tokens the part indexes).
torch::Tensor sg_former_local_term(const torch::Tensor& weights, const LocalGroups& windows, std::int64_t keys);

class SgFormerAttentionImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "sparse/sg-former";
  SgFormerAttentionImpl(std::int64_t dim, const SgFormerOptions& options);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  const SgFormerOptions& options() const { return options_; }
  bool hybrid() const { return options_.role() == "hybrid"; }
  double scale() const { return scale_; }

  // Hybrid role: the output and the significance terms.
  std::pair<torch::Tensor, SgSignificance> forward_hybrid(const torch::Tensor& x, const MixerContext& ctx);
  // Reallocation role: its own significance [B, H, W] (from the coarse global attention).
  torch::Tensor own_significance(const torch::Tensor& x, const MixerContext& ctx);
  // Reallocation role: the aggregated tokens [B, T, C] of the grid tokens x_grid [B, H W, C]
  // under significance sig [B, H, W]; column_major: both taken in column-major order.
  torch::Tensor aggregate(const torch::Tensor& x_grid, const torch::Tensor& sig, bool column_major);
  // The window side used on an extent.
  std::int64_t fitted_window(std::int64_t extent) const { return std::min(options_.window(), extent); }
  // LePE(x) on the grid tokens [B, H W, C].
  torch::Tensor lepe(const torch::Tensor& x_grid, const MixerContext& ctx);

  // hybrid
  torch::nn::Linear q1{nullptr}, kv1{nullptr}, q2{nullptr}, kv2{nullptr};  // C -> C/2, C -> C (k | v)
  torch::nn::Conv2d reduce{nullptr};                                       // C -> C, kernel = stride = sr
  torch::nn::LayerNorm reduce_norm{nullptr};
  // reallocation (kv1, kv2 as above)
  torch::nn::Linear q{nullptr};                // C -> C
  std::vector<torch::nn::Linear> aggregators;  // Linear(g_i -> 1)
  // both
  torch::nn::Linear lepe_linear{nullptr};  // C -> C
  torch::nn::Conv2d lepe_conv{nullptr};    // depth-wise
  torch::nn::Linear proj{nullptr};         // C -> C

 private:
  torch::Tensor global_half(const torch::Tensor& x, const MixerContext& ctx, torch::Tensor* weights);
  torch::Tensor local_half(const torch::Tensor& x, const MixerContext& ctx, SgSignificance* sig);
  torch::Tensor forward_reallocation(const torch::Tensor& x, const MixerContext& ctx);
  // [B, N, 2 C'] -> k, v [B, h', N, d]
  std::pair<torch::Tensor, torch::Tensor> split_kv(const torch::Tensor& kv) const;
  torch::Tensor heads_of(const torch::Tensor& t) const;  // [B, N, h' d] -> [B, h', N, d]

  SgFormerOptions options_;
  std::int64_t dim_, head_dim_;
  double scale_;
};
TORCH_MODULE(SgFormerAttention);

const OptionsSchema<SgFormerOptions>& sg_former_schema();

}  // namespace blocklab
