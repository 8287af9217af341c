// sparse/fasa: FaViT's factorization self-attention (FaSA). The channels are split into groups:
// group 0 attends globally to a strided-conv reduced grid (one head, PVT-like); each further group
// attends to ws^2 keys built by cutting a dilated copy of the grid into ws x ws windows and pooling
// each in-window position over the windows. Every query sees the same keys, so the cost is
// N x N / sr^2 for group 0 and N x ws^2 for the others: no N x N matrix (except group 0 at sr = 1,
// full attention on C / 8 channels, as FaViT's last stage).
//
// Paper: "Factorization Vision Transformer: Modeling Long Range Dependency with Local Window
// Cost" (FaViT), Qin et al. 2023, arXiv:2312.08614, §3 (FaSA); read against q2479036243/FaViT
// FaViT/classification/favit.py (Attention; catalog_000_001 B 0-10).
//   groups: mul = [2, 7, 7] (sr > 1) or [1, 7] (sr = 1); C_i = (C / sum mul) mul_i
//   q = x W_q (+ b)                                                   [N, C], split the same way
//   group 0:  g = LN(Conv_{k = s = sr}(x_0 on the grid))              [N / sr^2, C_0]
//             k_0, v_0 = g W_kv (+ b);  v_0 += DWConv3x3(v_0) on the reduced grid
//             o_0 = softmax(q_0 k_0^T / sqrt(C_0)) v_0                 (one head)
//   groups i >= 1 (h heads of d = C_i / h):  kv = PWConv(DWConv3x3(x_{>=1})) on the grid, split
//             dilation delta_1 = 1, delta_2 = sr; stride S_i = delta_i (ws - 1) + 1; reflection-
//             pad (bottom, right) to multiples of S_i; unfold ws x ws windows (dilation delta_i,
//             stride S_i): nW windows; per head and in-window position p:
//               kbar_p = mean_w kv[w, p]                                    (pool_mode mean_over_windows)
//             k_i, v_i = Linear_{d->2d}(Linear_{d->d}(kbar))            [ws^2, d] per head
//             v_i += DWConv3x3(v_i) on the ws x ws grid
//             o_i = softmax(q_i k_i^T / sqrt(d)) v_i                      (every query: ws^2 keys)
//   out = [o_0, o_1, o_2] W_proj + b_proj
// pool_mode official_flat reproduces the official code's pooling: (window, channel) flattened
// window-major and AdaptiveAvgPool'ed to d bins, so bin j averages the flattened entries
// [j nW, (j + 1) nW) (mixing channels and windows); the catalog calls it a quirk.
// Checked once against a transcription of the official forward (not shipped: FaViT is no
// package): pool_mode official_flat with W_q's rows permuted as below, equal to 4e-14 in float64 on
// 14 x 14 (sr 2, h 1 and 2), 7 x 7 (sr 1), 21 x 26 and 12 x 9 (sr 3, ws 3) grids.
//
// Choices of ours (the code assumes 224-pixel ImageNet grids):
// - Small grids. Reflection padding needs pad < extent, and a strided conv needs extent >= sr: a
//   group's window is clamped to ws_i = min(ws, floor((min(H, W) - 1) / delta_i) + 1), the largest
//   whose dilated span S_i fits the grid (the weights do not depend on ws); an extent below sr is
//   zero-padded (bottom, right) up to sr before the reduction conv (larger extents are floored, as
//   the official conv). At 14 x 14 with ws 7, sr 2 nothing changes.
// - q's channels are contiguous per group, heads contiguous inside a group (the official code
//   interleaves groups 1, 2 inside each head of q: a permutation of W_q's rows).
// - Prefix tokens (class, registers) are queries only: they attend like every grid token to the
//   same group keys; having no grid place, they give no keys or values.
// - Convolutions keep PyTorch's default init (the official code: normal, sqrt(2 / fan_out)).
//
// Shape contract: x [B, N, C] -> [B, N, C], N = prefix + H W (needs a grid); C a multiple of
// sum mul (16, or 8 at sr = 1), heads dividing C_i (i >= 1). Not causal.
#pragma once

#include <string>
#include <vector>

#include "blocks/common/options.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct FasaOptions {
  TORCH_ARG(std::int64_t, heads) = 2;                       // heads h of the dilated groups (group 0: one)
  TORCH_ARG(std::int64_t, sr) = 2;                          // spatial reduction of group 0, dilation of group 2
  TORCH_ARG(std::int64_t, window) = 7;                      // window side ws of the dilated groups
  TORCH_ARG(std::string, pool_mode) = "mean_over_windows";  // | official_flat (the code's flatten + pool)
  TORCH_ARG(bool, qkv_bias) = true;                         // biases of q, kv_g and the per-group Linears
};

// PWConv1x1(DWConv3x3(x)) with biases (the official DEPTHWISECONV): the dilated groups' kv.
class FasaSeparableConvImpl : public torch::nn::Module {
 public:
  explicit FasaSeparableConvImpl(std::int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d depth_conv{nullptr}, point_conv{nullptr};
};
TORCH_MODULE(FasaSeparableConv);

class FasaAttentionImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "sparse/fasa";
  FasaAttentionImpl(std::int64_t dim, const FasaOptions& options);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  const FasaOptions& options() const { return options_; }

  // C_i of each group (group 0 first); the first channel of group i.
  const std::vector<std::int64_t>& group_widths() const { return widths_; }
  std::int64_t group_offset(std::int64_t group) const;
  // Group i >= 1: its dilation, and its window side on an H x W grid (clamped, see above).
  std::int64_t dilation(std::int64_t group) const { return group == 1 ? 1 : options_.sr(); }
  std::int64_t window_on(std::int64_t group, std::int64_t height, std::int64_t width) const;

  // Group 0's keys and values [B, N_g, C_0] from its channels on the grid [B, C_0, H, W].
  std::pair<torch::Tensor, torch::Tensor> coarse_keys_values(const torch::Tensor& grid0);
  // Group i >= 1: the per-position pooled windows [B, h, ws^2, d] of its kv [B, C_i, H, W] ...
  torch::Tensor pool_windows(const torch::Tensor& kv, std::int64_t group) const;
  // ... and its keys and values [B, h, ws^2, d] (Linears, then v + DWConv3x3 on ws x ws).
  std::pair<torch::Tensor, torch::Tensor> dilated_keys_values(const torch::Tensor& kv, std::int64_t group);

  torch::nn::Linear q{nullptr};                 // C -> C
  torch::nn::Linear kv_g{nullptr};              // C_0 -> 2 C_0, rows k | v
  torch::nn::Conv2d sr{nullptr};                // C_0 -> C_0, kernel = stride = sr
  torch::nn::LayerNorm norm{nullptr};           // C_0, eps 1e-5
  torch::nn::Conv2d local_conv_g{nullptr};      // depthwise 3x3 on v_0
  FasaSeparableConv kv_l{nullptr};              // C - C_0 channels
  torch::nn::ModuleList fcs{nullptr};           // per group i >= 1: d -> d
  torch::nn::ModuleList single_heads{nullptr};  // per group i >= 1: d -> 2d, columns k | v
  torch::nn::ModuleList local_convs{nullptr};   // per group i >= 1: depthwise 3x3 on C_i
  torch::nn::Linear proj{nullptr};              // C -> C

 private:
  FasaOptions options_;
  std::vector<std::int64_t> widths_;
};
TORCH_MODULE(FasaAttention);

const OptionsSchema<FasaOptions>& fasa_schema();

}  // namespace blocklab
