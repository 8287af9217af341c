// mixer/matrix: Hydra's matrix-mixer family, one wrapper around a structured matrix type.
//
// Paper: "Hydra: Bidirectional State Space Models Through Generalized Matrix Mixers", Hwang et al.,
// 2024, arXiv:2407.09941, Section 2 (the matrix mixer framework) and Section 4.1 (the ablation of
// matrix classes); official code goombalab/hydra hydra/modules/matrix_mixer.py. Catalog:
// shared/blocks/catalog_000_001.md B 0-09.
//   [z, v, extra, raw] = u W_in             (D -> 2E + extra + raw, no bias; E = expand D, H = E / headdim)
//   [v, extra] = ShortConv_centred([v, extra]) (depthwise, d_conv = 7 taps, bias); v = SiLU(v), and
//                                            extra = SiLU(extra) for the types that activate it
//   y = M v (+ v)                           (M: the type's structured matrix per head, matrix_types.h)
//   out = (RMSNorm(y) w ⊙ SiLU(z)) W_out    (gated RMSNorm, norm before gate, eps 1e-5)
// matrix: dense | toeplitz | vandermonde | cauchy | low_rank | attention | semiseparable |
// quasiseparable; data_dependent picks the variant whose M comes from the tokens (the `extra`,
// `raw` channels) rather than from parameters sized for max_tokens (dense has only the latter).
// Not causal (the centred conv and the bidirectional matrices), not recurrent; no probe records
// (mixing_matrix materialises M).
//
// Shape contract: u [B, N, D] -> [B, N, D]; expand D divisible by headdim; data-independent
// types need N <= max_tokens (a shorter N uses the leading N x N block).
#pragma once

#include <string>

#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/common/ssm_parts.h"
#include "blocks/interfaces.h"
#include "blocks/mixers/matrix_types.h"

namespace blocklab {

struct MatrixMixerOptions {
  TORCH_ARG(std::string, matrix) = "quasiseparable";
  TORCH_ARG(bool, data_dependent) = true;
  TORCH_ARG(std::int64_t, expand) = 2;
  TORCH_ARG(std::int64_t, headdim) = 128;
  TORCH_ARG(std::int64_t, qk_dim) = 16;
  TORCH_ARG(std::int64_t, d_conv) = 7;
  TORCH_ARG(std::string, form) = "chunked";  // parallel | chunked (the SSD types)
  TORCH_ARG(std::int64_t, chunk) = 256;
};

class MatrixMixerImpl : public TokenMixerImpl, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "mixer/matrix";
  MatrixMixerImpl(std::int64_t dim, std::int64_t max_tokens, const MatrixMixerOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // Not causal (the centred conv reads later tokens); the probe gets each head's M.
  MixerCapabilities capabilities() const override {
    MixerCapabilities c;
    c.weights = MixerCapabilities::Weights::unnormalised;
    return c;
  }

  // The type's inputs for u [B, N, D] (projected and convolved), and the gate z [B, N, E].
  std::pair<MatrixInputs, torch::Tensor> inputs(const torch::Tensor& u);
  // M [B, H, N, N] with y = M v per head before the norm (the residual included as + I).
  torch::Tensor mixing_matrix(const torch::Tensor& u);
  torch::Tensor matrix_of(const MatrixInputs& in, std::int64_t batch, std::int64_t n);

  torch::nn::Linear in_proj{nullptr}, out_proj{nullptr};
  ShortConv conv{nullptr};
  MatrixType mixer;
  GatedRMSNorm norm{nullptr};

 private:
  void check_length(std::int64_t n) const;

  std::string name_;
  std::int64_t inner_;
};
TORCH_MODULE(MatrixMixer);

const OptionsSchema<MatrixMixerOptions>& matrix_mixer_schema();

}  // namespace blocklab
