// conv/hyena-2d: the two-dimensional Hyena operator on a patch grid (Hyena N-D).
//
// Paper: "Multi-Dimensional Hyena for Spatial Inductive Bias", Zimerman & Wolf, 2023,
// arXiv:2309.13600; official code Itamarzimm/HyenaND (timm/models/layers/hyena2d.py:
// HyenaOperator2d, HyenaFilter2d with hyena2d_filter, ExponentialModulation, fftconv2d).
// Order N (default 2) on the grid tokens u [B, H, W, C]:
//   z = DWConv_3x3(u W_in + b_in)                           W_in: C -> (N+1) C
//   x_0, ..., x_{N-1}, v = split(z)
//   for j = 0 .. N-2:  v <- v ⊙ x_{N-1-j};  v <- h_j ** v + beta_j ⊙ v   (2-D long convolution)
//   y = (v ⊙ x_0) W_out + b_out
// 2-D implicit filters h [Kh, Kw, (N-1) C]: an FFN with Sin activations (hyena_filter.h) of the
// concatenated per-axis positional features [z(d_r); z(d_c)] of the offset (d_r, d_c),
// z(d) = [d / (L-1), cos(f 2 pi d / L), -sin(f 2 pi d / L)] (L the grid side), times the window
// (exp(-|d_r|/(H-1) |delta_c|) exp(-|d_c|/(W-1) |delta_c|) + shift).
// span: full (default) convolves over every offset -(H-1)..H-1 x -(W-1)..W-1, a non-causal
//   2-D convolution (each token sees the whole grid); quadrant is the code's fftconv2d, offsets
//   0..H-1 x 0..W-1 (token (i, j) sees (i', j') with i' <= i, j' <= j).
// Our choices where the code differs or is silent: the features are computed for the grid at
// hand (normalised by its sides, not a learned table of l_max; any grid works); the code's
// 1/(2L) scale of the FFT kernel is not reproduced (learned filters absorb it); prefix tokens
// (class, registers) skip the 3x3 convolution and their long convolution is the mean over the
// grid (a global-average filter), so they read the whole image; grid tokens do not read them.
//
// Shape contract: x [B, P + H W, C] -> same; needs ctx.grid_height x ctx.grid_width body tokens.
#pragma once

#include "blocks/common/init.h"
#include "blocks/conv/hyena_filter.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct Hyena2dOptions {
  TORCH_ARG(std::int64_t, order) = 2;
  TORCH_ARG(std::string, span) = "full";  // full | quadrant
  TORCH_ARG(std::string, conv) = "fft";   // fft | direct
  TORCH_ARG(std::int64_t, filter_width) = 64;
  TORCH_ARG(std::int64_t, emb_dim) = 3;
  TORCH_ARG(std::int64_t, filter_layers) = 2;
  TORCH_ARG(double, frequency) = 1.0;
  TORCH_ARG(double, fast_decay) = 0.3;
  TORCH_ARG(double, slow_decay) = 1.5;
  TORCH_ARG(double, decay_target) = 1e-2;
  TORCH_ARG(double, window_shift) = 0.0;
};

// The 2-D implicit filter: FFN of the two axes' positional features, windowed.
class HyenaFilter2dImpl : public torch::nn::Module {
 public:
  HyenaFilter2dImpl(std::int64_t channels, const HyenaFilterOptions& options);
  // h [Kh, Kw, channels] for a grid of height x width: offsets 0.. (quadrant) or -(L-1).. (full).
  torch::Tensor filter(std::int64_t height, std::int64_t width, bool full);

  ImplicitFilterMlp mlp{nullptr};
  torch::Tensor decay;  // [channels] buffer: |delta_c|

 private:
  std::int64_t emb_dim_;
  double shift_;
};
TORCH_MODULE(HyenaFilter2d);

// Positional features [K, emb_dim] of the offsets `offsets` [K] along an axis of `extent` tokens.
torch::Tensor hyena_offset_features(const torch::Tensor& offsets, std::int64_t extent, std::int64_t emb_dim);

// Window [from_h, from_w] of the linear 2-D convolution of u [B, H, W, C] with k [Kh, Kw, C]:
//   y[i, j] = sum_{a, b} k[a, b] u[i + from_h - a, j + from_w - b],  y [B, H, W, C];
// by FFT or by direct summation over the taps (the reference).
torch::Tensor conv_2d(const torch::Tensor& u, const torch::Tensor& k, std::int64_t from_h, std::int64_t from_w,
                      bool direct);

class Hyena2dImpl : public TokenMixerImpl, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "conv/hyena-2d";
  Hyena2dImpl(std::int64_t dim, const Hyena2dOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  // The filters of a grid: [N - 1, Kh, Kw, C].
  torch::Tensor filters(std::int64_t height, std::int64_t width);

  torch::nn::Linear in_proj{nullptr}, out_proj{nullptr};
  torch::nn::Conv2d short_conv{nullptr};
  HyenaFilter2d filter{nullptr};
  torch::Tensor skip;  // beta [(N-1) C]

 private:
  // The long convolution of grid values [B, H, W, C] with h [Kh, Kw, C].
  torch::Tensor grid_conv(const torch::Tensor& v, const torch::Tensor& h) const;
  std::int64_t dim_, order_;
  bool full_, direct_;
};
TORCH_MODULE(Hyena2d);

const OptionsSchema<Hyena2dOptions>& hyena_2d_schema();

}  // namespace blocklab
