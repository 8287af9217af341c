// memory/titans: the Titans token mixers, attention with a neural long-term memory.
//
// Paper: "Titans: Learning to Memorize at Test Time", Behrouz, Zhong, Mirrokni, 2024,
// arXiv:2501.00663, §4 (Figures 2-5, eqs. 21-29). No official code; lucidrains/titans-pytorch
// (unofficial) read for defaults. The memory (LMM) is blocks/memory/titans_memory.h.
//
// x [B, N, C] -> [B, N, C]; N_p learned persistent tokens P [N_p, C] (eq. 19); ⊗ is the paper's
// gate: RMSNorm(y) g_y ⊙ sigmoid(RMSNorm(m) g_m) (learnable vector weights, §4.1-4.2); every
// variant ends with W_O. Attention is multi-head softmax attention (its own W_Q, W_K, W_V, W_O).
//   mac  memory as a context (§4.1, eqs. 21-25): the sequence in segments S_i of `segment` tokens;
//        h = M*_{i-1}(q(S_i)) (read-out before the segment's update); y = Attn([P ‖ h ‖ S_i]) for
//        the segment's tokens, causal: token t sees P, h_{<=t} and S_{<=t} of its segment; the
//        memory is written with y (one chunk per segment) and o_t = y_t ⊗ M*_t(q(y_t)), read at
//        the weights after y_t's update (causal: gradients at the segment's start weights).
//   mag  memory as a gate (§4.2, eqs. 26-28): x~ = [P ‖ x]; y = SWA(x~), o = y ⊗ M(x~).
//   mal  memory as a layer (§4.3, eqs. 29-31): y = M(x~); o = SWA(y).
//   lmm  the memory alone (§4.3, "LMM"): o = M(x).
// SWA: causal sliding-window attention of `window` tokens, the persistent tokens always visible.
// M(.) is the LMM's read-out y_t = M_{W_t}(q_t) over chunks of `chunk` tokens.
//
// Always causal (ctx.causal = false changes nothing). Recurrent, every variant: the memory's step
// keeps the chunk's (mac: the segment's) start weights beside the running W and S, so it equals the
// chunked form at every chunk size; the attention keeps the keys and values of its window (mag,
// mal: the persistent tokens and the last window - 1 tokens; mac: the current segment's h and S).
#pragma once

#include <array>
#include <string>

#include "blocks/common/init.h"
#include "blocks/common/options.h"
#include "blocks/common/weight_decay.h"
#include "blocks/interfaces.h"
#include "blocks/memory/titans_memory.h"

namespace blocklab {

struct TitansOptions {
  TORCH_ARG(std::string, variant) = "mac";
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(std::int64_t, memory_depth) = 2;
  TORCH_ARG(std::int64_t, memory_expansion) = 4;
  TORCH_ARG(std::int64_t, chunk) = 16;
  TORCH_ARG(std::int64_t, segment) = 32;  // lucidrains/titans-pytorch train_mac.py: segment_len 32
  TORCH_ARG(std::int64_t, window) = 32;
  TORCH_ARG(std::int64_t, persistent) = 4;
  TORCH_ARG(double, max_lr) = 0.1;
  TORCH_ARG(std::int64_t, conv) = 4;
};

class TitansImpl : public TokenMixerImpl, public DeclaresNoWeightDecay, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "memory/titans";
  TitansImpl(std::int64_t dim, const TitansOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;
  // The persistent tokens are token embeddings: not decayed.
  std::vector<std::string> no_weight_decay() const override;

  NeuralMemory memory{nullptr};
  torch::nn::Linear attn_qkv{nullptr};   // attention W_Q, W_K, W_V (mac, mag, mal)
  torch::nn::Linear attn_proj{nullptr};  // attention W_O
  torch::Tensor persistent;              // P [N_p, C] (mac, mag, mal)
  torch::Tensor gate_y, gate_m;          // the gate's vector weights [C] (mac, mag)
  torch::nn::Linear proj{nullptr};       // W_O

  // Softmax attention of the last `queries` tokens of xs [B, n, C] over all of them, `allowed` [queries, n].
  torch::Tensor attention(const torch::Tensor& xs, std::int64_t queries, const torch::Tensor& allowed);
  // Sliding-window attention over xs = [P ‖ tokens] for the tokens: banded, in blocks of `window`;
  // and the same with the dense N x N mask (the tests' reference).
  torch::Tensor sliding_window(const torch::Tensor& xs);
  torch::Tensor sliding_window_dense(const torch::Tensor& xs);

 private:
  torch::Tensor mac(const torch::Tensor& x);
  MixerStep window_step(const torch::Tensor& x_t, const MixerState& state);  // mag, mal
  MixerStep mac_step(const torch::Tensor& x_t, const MixerState& state);
  std::array<torch::Tensor, 3> token_qkv(const torch::Tensor& t);  // [B, C] -> q, k, v [B, h, d]
  // One query q [B, h, d] over keys, values [B, h, n, d] where valid [n] (bool); then W_O.
  torch::Tensor attend_one(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                           const torch::Tensor& valid);
  std::int64_t head_dim() const { return memory->head_dim(); }
  torch::Tensor gate(const torch::Tensor& y, const torch::Tensor& m) const;
  torch::Tensor with_persistent(const torch::Tensor& x) const;  // [P ‖ x]

  std::string variant_;
  std::int64_t heads_, segment_, window_;
};
TORCH_MODULE(Titans);

const OptionsSchema<TitansOptions>& titans_schema();

}  // namespace blocklab
