// mixer/spectral: SpectFormer's spectral gating, the global filter of GFNet: a learned complex
// filter per channel multiplies the 2-D Fourier transform of the patch grid (a circular global
// convolution with an a x b kernel per channel), with no query, key or value.
//
// Paper: "SpectFormer: Frequency and Attention is what you need in a Vision Transformer" (Patro,
// Namboodiri, Agneeswaran, 2023, arXiv:2304.06446), §3.1, after "Global Filter Networks for
// Image Classification" (Rao et al., NeurIPS 2021, arXiv:2107.00645), eq. 5-6; read against the
// official spectformer.py (SpectralGatingNetwork):
//   X = rfft2(x on the a x b grid, norm "ortho")       [a, b/2 + 1] per channel, complex
//   X <- X ⊙ W,   W in C^{a x (b/2+1) x C}, stored real as [a, b/2 + 1, C, 2], init N(0, 0.02^2)
//   y = irfft2(X, s = (a, b), norm "ortho")
// W = 1 + 0i is the identity; y is x circularly convolved with irfft2(W) per channel. Computed
// in float32 for half precision inputs (the paper's code casts to float32).
// The filter is sized by the layer's grid (MixerArgs, as SpectFormer ties it to img/patch) or by
// filter_height/filter_width. On another grid (another resolution) the filter is resampled
// bilinearly (real and imaginary parts, corners aligned) to that grid's spectrum: our choice,
// the usual way a global filter is carried to a new resolution. SpectFormer's stacks (spectral
// layers first, attention later) are per-layer configs (model.stack.layers).
// Prefix tokens are not mixed (output 0); the block's residual keeps them.
//
// Shape contract: x [B, P + H*W, C] on ctx's grid -> the same; not causal.
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct SpectralGatingOptions {
  TORCH_ARG(std::int64_t, filter_height) = 0;  // a: the filter's grid rows (default 0 = the layer's grid)
  TORCH_ARG(std::int64_t, filter_width) = 0;   // b: its columns (default 0 = the layer's grid)
};

class SpectralGatingImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "mixer/spectral";
  // dim C; the filter's grid a x b (both > 0).
  SpectralGatingImpl(std::int64_t dim, std::int64_t height, std::int64_t width);
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  // The complex filter [C, h, w/2 + 1] for an h x w grid (resampled when the grid differs).
  torch::Tensor filter_for(std::int64_t h, std::int64_t w) const;

  torch::Tensor weight;  // [a, b/2 + 1, C, 2]: real and imaginary parts
 private:
  std::int64_t height_, width_;
};
TORCH_MODULE(SpectralGating);

}  // namespace blocklab
