// mixer/fnet: FNet's Fourier token mixing, no weights: the real part of a 2-D discrete Fourier
// transform over the tokens and the channels. One of FlexiBERT's "linear transform" operations
// (catalog 003/004 C20, LT with p = DFT), and a weightless choice of model/supernet.
//
// Paper: "FNet: Mixing Tokens with Fourier Transforms", Lee-Thorp et al., NAACL 2022,
// arXiv:2105.03824, eq. (3):
//   y = Re(F_seq(F_hidden(x))),  (F_n z)_k = sum_j z_j exp(-2 pi i j k / n)
// unnormalised, as the paper and torch.fft's default; norm: ortho divides by sqrt(N C) (the
// unitary transform). Every token, prefix tokens included, is one position of the sequence.
//
// Shape contract: x [B, N, C] -> [B, N, C]; not causal (every output sees every token).
#pragma once

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct FnetMixerOptions {
  TORCH_ARG(std::string, norm) = "none";  // none (the paper) | ortho (unitary)
};

class FnetMixerImpl : public TokenMixerImpl {
 public:
  static constexpr const char* kKey = "mixer/fnet";
  explicit FnetMixerImpl(const FnetMixerOptions& options = {}) : options_(options) {}
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;

 private:
  FnetMixerOptions options_;
};
TORCH_MODULE(FnetMixer);

}  // namespace blocklab
