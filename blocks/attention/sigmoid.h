// attention/sigmoid: multi-head attention with an elementwise sigmoid instead of the softmax.
//
// Paper: "Theory, Analysis, and Best Practices for Sigmoid Self-Attention", Ramapuram et al.,
// 2024, arXiv:2409.04431 (official code apple/ml-sigmoid-attention, attention_simulator
// layers/attention.py):
//   SigmoidAttn(X) = sigmoid(Q K^T / sqrt(d) + b) V,  b = -ln n (n = sequence length)
// elementwise, with no normalisation over keys: rows of the weights do not sum to 1 (with zero
// logits each row sums to n / (n + 1)). Masked (causal) entries get -inf logits, i.e. weight 0.
// bias_mode: neg_log_n (default, the paper's rule), constant (the repo configs use -10), or
// learned (a scalar initialised at -ln max_tokens, the paper's rule at the training length).
// qk_norm: LayerNorm over the head width on q and k, the stabiliser the paper and all the repo
// configs use (off by default, so that the block is the bare equation).
//
// Shapes: x [B, N, C] -> [B, N, C]; C % heads == 0. Parameters: the MHSA's (+ 4d with qk_norm,
// + 1 learned bias). Honours ctx.causal. The probe records the unnormalised sigmoid weights.
#pragma once

#include "blocks/common/multi_head.h"

namespace blocklab {

struct SigmoidAttentionOptions : MultiHeadOptions<SigmoidAttentionOptions> {
  TORCH_ARG(std::string, bias_mode) = "neg_log_n";  // neg_log_n (default), constant or learned
  TORCH_ARG(double, bias) = -10.0;                  // b for bias_mode constant (default -10)
};

class SigmoidAttentionImpl : public MultiHeadAttentionImpl {
 public:
  static constexpr const char* kKey = "attention/sigmoid";
  explicit SigmoidAttentionImpl(std::int64_t dim, const SigmoidAttentionOptions& options = {});
  SigmoidAttentionImpl(std::int64_t dim, const SigmoidAttentionOptions& options, const MultiHeadConfig& config);
  const SigmoidAttentionOptions& options() const { return options_; }

  // The bias b added to the logits of a sequence of `tokens` tokens.
  torch::Tensor logit_bias(std::int64_t tokens) const;

  torch::Tensor learned_bias;  // [] (bias_mode learned)

 protected:
  MixerCapabilities capabilities() const override;
  torch::Tensor normalise(const torch::Tensor& s, const MixerContext& ctx) override;

 private:
  SigmoidAttentionOptions options_;
};
TORCH_MODULE(SigmoidAttention);

const OptionsSchema<SigmoidAttentionOptions>& sigmoid_attention_schema();

}  // namespace blocklab
