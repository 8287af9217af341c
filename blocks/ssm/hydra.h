// ssm/hydra: Hydra, the quasiseparable bidirectional state space mixer.
//
// Paper: "Hydra: Bidirectional State Space Models Through Generalized Matrix Mixers", Hwang,
// Lahoti, Puduppully, Dao & Gu, 2024, arXiv:2407.09941 (Section 3, Appendix B); official code
// goombalab/hydra hydra/modules/hydra.py. Catalog: shared/blocks/catalog_000_001.md B 0-09.
//   [z, xBC, dt] = u W_in                          (D -> 2E + 4N + 2H, no bias; E = expand D, H = E / P)
//   xBC = SiLU(ShortConv_centred(xBC))             (depthwise, d_conv = 7 taps, padding 3, bias)
//   [x, B_f, C_f, B_b, C_b] = xBC                  (E, N, N, N, N: one group shared by the heads)
//   dt_f, dt_b = softplus(dt[:H] + b_dt), softplus(dt[H:] + b_dt);  A = -exp(A_log) per head
//   y = shift(SSD_f(x)) + flip(shift(SSD_b(flip x))) + x ⊙ (x W_fcD + D)        (the core)
//   out = (RMSNorm(y) w ⊙ SiLU(z)) W_out           (gated RMSNorm, norm before gate, eps 1e-5)
// SSD is Mamba-2's scan (blocks/common/ssd.h); shift moves every output one step later (the first
// is 0), so neither direction holds the diagonal, which comes from x W_fcD + D alone. The core is
// y = M x per head with the quasiseparable matrix (catalog B 0-09, the paper's eq. (6)):
//   M_ij = C_f[i-1] . B_f[j] dt_f[j] exp(A sum_{j<r<i} dt_f[r])     i > j
//   M_ij = C_b[i+1] . B_b[j] dt_b[j] exp(A sum_{i<r<j} dt_b[r])     i < j
//   M_ii = x_i W_fcD,h + D_h
// Bidirectional: not causal, not recurrent.
//
// Shape contract: u [B, L, D] -> [B, L, D]; expand D divisible by headdim.
#pragma once

#include <string>

#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/common/ssm_parts.h"
#include "blocks/interfaces.h"

namespace blocklab {

// The quasiseparable core's inputs, per head h and token t (one group of B, C shared by the heads).
struct QuasiseparableInputs {
  torch::Tensor x;                   // [B, L, H, P]
  torch::Tensor dt_f, dt_b;          // [B, L, H], after the softplus
  torch::Tensor A;                   // [H], negative
  torch::Tensor B_f, C_f, B_b, C_b;  // [B, L, N]
  torch::Tensor diagonal;            // [B, L, H]: x W_fcD + D
};

// y [B, L, H, P] by two SSD scans (form parallel | chunked, chunk tokens), shifted, plus the diagonal.
torch::Tensor quasiseparable(const QuasiseparableInputs& in, const std::string& form, std::int64_t chunk);
// The matrix M [B, H, L, L] of the core, y = M x per head (built from the two SSD matrices).
torch::Tensor quasiseparable_matrix(const QuasiseparableInputs& in);

// The core's parameters, shared by ssm/hydra and mixer/matrix's quasiseparable type: b_dt [H]
// (softplus(b_dt) log-uniform in [dt_min, dt_max]), A_log [H] = 0 (A = -1), D [H] = 1 and
// W_fcD: E -> H (no bias).
class QuasiseparableCoreImpl : public torch::nn::Module {
 public:
  QuasiseparableCoreImpl(std::int64_t inner, std::int64_t heads, double dt_min = 1e-3, double dt_max = 0.1,
                         double dt_floor = 1e-4);
  // x [B, L, E], dt [B, L, 2H] (forward then backward, before the bias), B_f..C_b [B, L, N].
  QuasiseparableInputs inputs(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& B_f,
                              const torch::Tensor& C_f, const torch::Tensor& B_b, const torch::Tensor& C_b);
  std::int64_t heads() const { return dt_bias.size(0); }

  torch::Tensor dt_bias, A_log, D;  // [H]
  torch::nn::Linear fc_D{nullptr};  // E -> H
};
TORCH_MODULE(QuasiseparableCore);

struct HydraOptions {
  TORCH_ARG(std::int64_t, d_state) = 64;
  TORCH_ARG(std::int64_t, expand) = 2;
  TORCH_ARG(std::int64_t, headdim) = 64;
  TORCH_ARG(std::int64_t, d_conv) = 7;
  TORCH_ARG(std::string, form) = "chunked";  // parallel | chunked
  TORCH_ARG(std::int64_t, chunk) = 256;
  TORCH_ARG(double, dt_min) = 1e-3;
  TORCH_ARG(double, dt_max) = 0.1;
  TORCH_ARG(double, dt_init_floor) = 1e-4;
};

class HydraImpl : public TokenMixerImpl, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "ssm/hydra";
  HydraImpl(std::int64_t dim, const HydraOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // Bidirectional, not recurrent; the probe gets the quasiseparable matrix M (its matrix view).
  MixerCapabilities capabilities() const override {
    MixerCapabilities c;
    c.weights = MixerCapabilities::Weights::unnormalised;
    return c;
  }

  // The core's inputs for u [B, L, D] (after the projection and the conv), and the gate z [B, L, E].
  std::pair<QuasiseparableInputs, torch::Tensor> core_inputs(const torch::Tensor& u);
  // M [B, H, L, L] of the core: y = M x per head (x after the conv), as in the header.
  torch::Tensor mixing_matrix(const torch::Tensor& u);

  torch::nn::Linear in_proj{nullptr}, out_proj{nullptr};
  ShortConv conv{nullptr};
  QuasiseparableCore core{nullptr};
  GatedRMSNorm norm{nullptr};

 private:
  std::int64_t inner_, state_, heads_, headdim_, chunk_;
  std::string form_;
};
TORCH_MODULE(Hydra);

const OptionsSchema<HydraOptions>& hydra_schema();

}  // namespace blocklab
