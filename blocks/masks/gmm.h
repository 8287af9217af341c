// mask/gmm: Gaussian mixture mask, multiplicative on the scaled attention logits.
//
// Paper: "Toward a Deeper Understanding: RetNet Viewed through Convolution", Li & Zhang, 2023,
// arXiv:2309.05375. Official code: CatworldLee/Gaussian-Mixture-Mask-Attention, models/gmm.py
// (Gaussian_Mixture_Mask, On_attention_gaussian_mask) and models/vit.py (where it is applied).
//
//   G_ij   = exp(-||p_i - p_j||^2 / 2)            p = (row, col) on the patch grid (index on sequences)
//   M_h    = sum_k alpha_{k,h} G^(1 / (sigma_{k,h}^2 + 1e-5))
//          = sum_k alpha_{k,h} exp(-||p_i - p_j||^2 / (2 (sigma_{k,h}^2 + 1e-5)))
//   logits' = M_h ⊙ (q k^T / sqrt(d)),   A = softmax(logits')      (MultiplyLogits)
//
// Parameters: sigma, alpha [K, h] (2 K h in all); init sigma ~ N(10, 10^2), alpha ~ N(0, 2^2)
// (the official defaults). We evaluate the exp form rather than the code's power of G: the
// same values, but G itself underflows to 0 in float32 beyond a distance of ~14 patches, and
// 0^p then loses the mask (and its gradient) where the wide kernels should still be ~1.
// Prefix tokens (class, registers) get multiplier 1 (mask.h); the paper's masked ViT has no
// class token and pools the token mean (vit pool: mean).
//
// Shape contract: matrix(N, ctx) -> [h, N, N].
#pragma once

#include "blocks/common/options.h"
#include "blocks/masks/mask.h"

namespace blocklab {

struct GmmMaskOptions {
  TORCH_ARG(std::int64_t, kernels) = 5;    // Gaussian kernels K per head (default 5)
  TORCH_ARG(double, sigma_mean) = 10.0;    // init: sigma ~ N(sigma_mean, sigma_std^2) (default 10)
  TORCH_ARG(double, sigma_std) = 10.0;     // (default 10)
  TORCH_ARG(double, alpha_std) = 2.0;      // init: alpha ~ N(0, alpha_std^2) (default 2)
};

class GmmMaskImpl : public AttentionMaskImpl {
 public:
  static constexpr const char* kKey = "mask/gmm";
  explicit GmmMaskImpl(std::int64_t heads, const GmmMaskOptions& options = {});
  Mode mode() const override { return Mode::MultiplyLogits; }
  torch::Tensor matrix(std::int64_t tokens, const MixerContext& ctx) override;
  const GmmMaskOptions& options() const { return options_; }

  torch::Tensor sigma;  // [K, h]
  torch::Tensor alpha;  // [K, h]

 private:
  GmmMaskOptions options_;
};
TORCH_MODULE(GmmMask);

const OptionsSchema<GmmMaskOptions>& gmm_mask_schema();

}  // namespace blocklab
