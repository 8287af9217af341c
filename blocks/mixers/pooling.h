// mixer/pooling: PoolFormer's token mixer, average pooling minus the input: no weights at all,
// the point of the MetaFormer paper (the macro design, not the mixer, carries the model).
//
// Paper: "MetaFormer Is Actually What You Need for Vision", Yu et al., CVPR 2022,
// arXiv:2111.11418, §3.2 (eq. 4); read against timm's metaformer.py (Pooling):
//   T'_{:, i, j} = (1 / |W_ij|) sum_{(p, q) in W_ij} T_{:, p, q} - T_{:, i, j}
// over the K x K window W_ij around (i, j) clipped to the grid (stride 1, padding K / 2, the
// padding not counted: count_include_pad false), so a constant map gives exactly 0. The input is
// subtracted because the block adds it back (residual). Prefix tokens are not mixed (output 0).
//
// Shape contract: x [B, P + H*W, C] on ctx's grid -> the same; not causal.
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct PoolingMixerOptions {
  TORCH_ARG(std::int64_t, pool_size) = 3;  // K, odd (PoolFormer: 3)
};

class PoolingMixerImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "mixer/pooling";
  explicit PoolingMixerImpl(const PoolingMixerOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;

 private:
  std::int64_t pool_size_;
};
TORCH_MODULE(PoolingMixer);

}  // namespace blocklab
