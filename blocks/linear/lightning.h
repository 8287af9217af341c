// linear/lightning: TransNormerLLM's token mixer on Lightning Attention (decayed linear
// attention without a normaliser, computed by Lightning Attention-2's tiling).
//
// Papers: "TransNormerLLM: A Faster and Better Large Language Model with Improved
// TransNormer", Qin et al., 2023, arXiv:2307.14995 (§3: LRPE with decay, Lightning Attention,
// gated linear attention, SGLU, SRMSNorm); "Lightning Attention-2", Qin et al., 2024,
// arXiv:2401.04658 (Algorithm 1: intra-block quadratic, inter-block state). Official code:
// OpenNLPLab/lightning-attention (examples/module/tnl_attn.py; ops/torch reference) and the
// TransNormerLLM HF modelling file (NormLinearAttention). Catalog: catalog_002 B-03, B-04/B-41.
//
//   o_i = sum_{j <= i} lambda_h^(i - j) (q_i . k_j) v_j        (lambda_h = exp(-s_h), causal)
// variant tnl (2023, "NormLinearAttention", the default):
//   q, k = SiLU(x W_q), SiLU(x W_k); v = x W_v; u = x W_u   (no biases)
//   [optional LRPE on q, k: q' = [q ⊙ cos(theta n) || q ⊙ sin(theta n)], theta learnable,
//    init theta_c = 10000^(-2c/E); then q'_n . k'_m = sum_c q_c k_c cos(theta_c (n - m))]
//   out = (u ⊙ SRMSNorm(o)) W_o                              (SRMSNorm over the E channels)
// variant tnl2 (2024, tnl_attn.py):
//   q, k, v = SiLU(x W_q), SiLU(x W_k), SiLU(x W_v)
//   out = (LayerNorm(o) ⊙ sigmoid(x W_g1 W_g2)) W_o          (low-rank gate, W_g1: C x d)
// Decays (decay option): alibi_layerwise (the code's; default): s_h = 2^(-8h/H) (ALiBi's
// slopes, h = 1..H) times (1 - l / (L - 1) + 1e-5) at layer l of L, so the last layer barely
// decays; paper_text: s_h = (8h/H)(1 - l/L); none: s = 0 (plain causal linear attention).
// Causal only (the TNL code implements only the causal form). The TNL block around it is a
// config: norm: srms in the prenorm block and the glu channel mixer with activation none and
// no bias (SGLU: ((x W_1) ⊙ (x W_2)) W_3).
//
// Shape contract: x [B, N, C] -> [B, N, C]; C % heads == 0.
#pragma once

#include <vector>

#include "blocks/common/linear_mixer.h"

namespace blocklab {

struct LightningOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(std::string, variant) = "tnl";            // tnl | tnl2
  TORCH_ARG(std::string, decay) = "alibi_layerwise";  // alibi_layerwise | paper_text | none
  TORCH_ARG(bool, lrpe) = false;                      // LRPE-d on q and k (variant tnl)
  TORCH_ARG(std::int64_t, gate_rank) = 0;             // tnl2: width of the low-rank gate (0 = head width)
  TORCH_ARG(double, norm_eps) = 1e-6;
  TORCH_ARG(std::string, form) = "chunked";
  TORCH_ARG(std::int64_t, chunk) = 64;
};

// The decay rates s_h (lambda_h = exp(-s_h)) of layer `layer` of `layers` under `schedule`.
std::vector<double> lightning_decay_rates(std::int64_t heads, std::int64_t layer, std::int64_t layers,
                                          const std::string& schedule);

class LightningImpl : public LinearMixerImpl {
 public:
  static constexpr const char* kKey = "linear/lightning";
  // `layer` of `layers`: the position in the stack, for the per-layer decay.
  LightningImpl(std::int64_t dim, const LightningOptions& options = {}, std::int64_t layer = 0,
                std::int64_t layers = 1);

  torch::nn::Linear qkv{nullptr}, u{nullptr}, gate_down{nullptr}, gate_up{nullptr}, out{nullptr};
  torch::nn::LayerNorm norm{nullptr};  // tnl2
  torch::Tensor theta;                 // LRPE [h, 1, d]; undefined without

 protected:
  torch::Tensor log_decay() const override { return log_decay_; }
  LinearTerms terms(const torch::Tensor& x, const MixerContext& ctx) override;
  torch::Tensor output(const torch::Tensor& o, const torch::Tensor& x) override;
  StateDims state_dims() const override;

 private:
  torch::Tensor lrpe(const torch::Tensor& x, const torch::Tensor& positions) const;

  LightningOptions options_;
  std::int64_t dim_, head_dim_;
  torch::Tensor log_decay_;  // [h] buffer; undefined with decay none
};
TORCH_MODULE(Lightning);

const OptionsSchema<LightningOptions>& lightning_schema();

}  // namespace blocklab
