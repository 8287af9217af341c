// recurrent/aaren: attention as a many-to-many RNN, with a learned query.
//
// Paper: "Attention as an RNN", Feng, Tung, Ahmed, Bengio, Hajimirsadeghi, 2024, arXiv:2405.13956
// (no official code found; the spec is the paper's Section 3 and the catalog, B-10).
//
// Per head h, a learned query q_h [d] (input-independent; each layer has its own), keys
// k_i = x_i W_K, values v_i = x_i W_V, scores s_i = q_h . k_i / sqrt(d). Every prefix's attention
// output (eq. 1 of §3.1, many-to-many):
//   o_t = sum_{i<=t} softmax(s_1..s_t)_i v_i
// computed (§3.2-3.3) by a prefix scan of triples (m, u, w) from the leaves (s_i, 1, v_i) with
// the associative operator
//   (m_A, u_A, w_A) (+) (m_B, u_B, w_B) = (m, u_A e^(m_A - m) + u_B e^(m_B - m), w_A e^(m_A - m) + w_B e^(m_B - m)),
//   m = max(m_A, m_B);   o_t = w_t / u_t.
// The parallel form is a Hillis-Steele scan (log2 N rounds, each token combined with the one
// 2^r before it); the sequential form is the RNN (§3.2):
//   m_t = max(m_{t-1}, s_t), u_t = u_{t-1} e^(m_{t-1} - m_t) + e^(s_t - m_t), w_t = w_{t-1} e^(m_{t-1} - m_t) + v_t
//   e^(s_t - m_t)
// and the step carries (m, u, w) per head. Heads are merged and projected by W_O.
//
// Shape contract: x [B, N, C] -> [B, N, C]; C % heads == 0. Always causal. The attention map
// (row t = softmax(s_1..s_t), lower triangular) is recorded to the probe.
#pragma once

#include <array>
#include <string>

#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/common/weight_decay.h"
#include "blocks/interfaces.h"

namespace blocklab {

// The scan's triple per head: m [B, h, N], u [B, h, N], w [B, h, N, d].
struct SoftmaxScan {
  torch::Tensor m, u, w;
};

// The prefix scan of the leaves (s_i, 1, v_i), s [B, h, N], v [B, h, N, d]: the triple of every
// prefix 1..t, by the parallel (Hillis-Steele) or the sequential form.
SoftmaxScan softmax_prefix_scan(const torch::Tensor& s, const torch::Tensor& v, bool parallel);
// A (+) B, broadcasting.
SoftmaxScan combine(const SoftmaxScan& a, const SoftmaxScan& b);

struct AarenOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(bool, kv_bias) = true;
  TORCH_ARG(std::string, form) = "parallel";
};

class AarenImpl : public TokenMixerImpl, public DeclaresNoWeightDecay, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "recurrent/aaren";
  AarenImpl(std::int64_t dim, const AarenOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  // (m [B, h], u [B, h], w [B, h, d]) from (-inf, 0, 0).
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;
  // The learned query is a token-like embedding: not decayed.
  std::vector<std::string> no_weight_decay() const override { return {"query"}; }

  // Scores s [B, h, N] and values v [B, h, N, d].
  std::pair<torch::Tensor, torch::Tensor> scores_values(const torch::Tensor& x);
  // The attention map [B, h, N, N]: row t = softmax(s_1..s_t), zero above the diagonal.
  torch::Tensor weights(const torch::Tensor& x);

  torch::Tensor query;              // [h, d], the learned query
  torch::nn::Linear kv{nullptr};    // C -> 2C: [keys | values], heads contiguous in each
  torch::nn::Linear proj{nullptr};  // C -> C (W_O)

 private:
  torch::Tensor merge(const torch::Tensor& o);  // [B, h, N, d] -> [B, N, C]
  std::int64_t heads_, head_dim_;
  bool parallel_;
};
TORCH_MODULE(Aaren);

const OptionsSchema<AarenOptions>& aaren_schema();

}  // namespace blocklab
