// Autoformer's encoder and decoder layers: Auto-Correlation, progressive series decomposition
// and a bias-free feed-forward network.
//
// Paper: "Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term Series
// Forecasting" (Wu et al., 2021, arXiv:2106.13008, §3.1, eqs. 3-4; layers/Autoformer_EncDec.py;
// shared/blocks catalog C8). With decomp = series_decomp_k (seasonal part kept, trend returned):
//   FFN(x)   = Drop(W_2 Drop(gelu(W_1 x)))      W_1 [d_ff, D], W_2 [D, d_ff], no biases (1x1 convs)
//   encoder  x = decomp(x + Drop(AC(x, x, x)));  x = decomp(x + FFN(x))
//   decoder  x, t1 = decomp(x + Drop(AC(x, x, x)))
//            x, t2 = decomp(x + Drop(AC(x, enc, enc)))
//            x, t3 = decomp(x + FFN(x))
//            r = Conv1d_{D -> c_out, kernel 3, circular, no bias}(t1 + t2 + t3);  returns (x, r)
//
// Shape contract: x [B, L, D] (encoder output enc [B, S, D]) -> x [B, L, D]; r [B, L, c_out].
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "blocks/forecast/auto_correlation.h"

namespace blocklab {

struct AutoformerLayerOptions {
  std::int64_t dim = 512, heads = 8, ffn_dim = 2048, kernel = 25;
  double factor = 1.0, drop = 0.05;
};

class AutoformerFfnImpl : public torch::nn::Module {
 public:
  AutoformerFfnImpl(std::int64_t dim, std::int64_t ffn_dim, double drop);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  double drop_;
};
TORCH_MODULE(AutoformerFfn);

class AutoformerEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit AutoformerEncoderLayerImpl(const AutoformerLayerOptions& o);
  torch::Tensor forward(const torch::Tensor& x);
  AutoCorrelation correlation{nullptr};
  AutoformerFfn ffn{nullptr};

 private:
  AutoformerLayerOptions options_;
};
TORCH_MODULE(AutoformerEncoderLayer);

struct DecoderOutput {
  torch::Tensor seasonal;  // x [B, L, D]
  torch::Tensor trend;     // r [B, L, c_out]
};

class AutoformerDecoderLayerImpl : public torch::nn::Module {
 public:
  AutoformerDecoderLayerImpl(const AutoformerLayerOptions& o, std::int64_t out_channels);
  DecoderOutput forward(const torch::Tensor& x, const torch::Tensor& encoded);
  AutoCorrelation self_correlation{nullptr}, cross_correlation{nullptr};
  AutoformerFfn ffn{nullptr};
  torch::nn::Conv1d trend_projection{nullptr};

 private:
  AutoformerLayerOptions options_;
};
TORCH_MODULE(AutoformerDecoderLayer);

}  // namespace blocklab
