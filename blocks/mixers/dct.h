// mixer/dct: the discrete cosine transform analogue of FNet, no weights: a 2-D DCT-II over the
// tokens and the channels. FlexiBERT's "linear transform" operation with p = DCT (catalog
// 003/004 C20; Tuli et al. 2023, "FlexiBERT: Are Current Transformer Architectures too
// Homogeneous and Rigid?", arXiv:2205.11656), and a weightless choice of model/supernet.
//
//   y = D_N x D_C^T,  (D_n)_{k j} = 2 cos(pi k (2 j + 1) / (2 n))
// (DCT-II as scipy's default and FlexiBERT's dct.py); norm: ortho scales row 0 by
// 1 / sqrt(4 n) and the others by 1 / sqrt(2 n), which makes D_n orthogonal. Computed as two
// matrix products with the n x n cosine matrices (tokens and channels are few here).
//
// Shape contract: x [B, N, C] -> [B, N, C]; not causal.
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct DctMixerOptions {
  TORCH_ARG(std::string, norm) = "none";  // none (scipy's default) | ortho (orthogonal)
};

class DctMixerImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "mixer/dct";
  explicit DctMixerImpl(const DctMixerOptions& options = {}) : options_(options) {}
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;

 private:
  DctMixerOptions options_;
};
TORCH_MODULE(DctMixer);

// The DCT-II matrix D_n [n, n] (rows: frequencies k, columns: positions j).
torch::Tensor dct_matrix(std::int64_t n, bool ortho, const torch::TensorOptions& options);

}  // namespace blocklab
