// attention/selective: selective self-attention (SSA), softmax attention with a learned
// inverse temperature per query (by position and, optionally, by token) and per value.
//
// Paper: "Selective Attention: Enhancing Transformer through Principled Context Control",
// Zhang et al., 2024 (NeurIPS 2024), arXiv:2411.12892; official code umich-sota/selective_attention
// (lit_gpt/gpt_2_PTS.py, model_finetune_att.py), which holds the position-aware temperature only.
//   S_ij = tau_i q_i . k_j / sqrt(d),  A = softmax(S),  out = A (tau^v ⊙ V)
//   position-aware (the code): tau_i = 1 + exp(-exp(beta)) ln n_i, beta a learned scalar per
//     layer (init 1.5 as the GPT-2 pretraining code; 2.0 in its fine-tuning code), n_i = number
//     of keys query i sees (causal: i + 1, the code's 1-based query position; else N). tau_1 = 1
//     and tau grows with n: longer contexts get sharper softmaxes against attention dilution.
//   token-aware query temperature (query_temperature): tau_i += tanh(u_h . q_i), u_h in R^d per
//     head, zero-initialised (tau starts as the positional one).
//   value temperature (value_temperature): v_j <- (1 + tanh(w_h . v_j)) v_j, w_h zero-initialised
//     (identity at init); it lets the model shrink the values of irrelevant tokens.
// The token-aware forms are [verify] in the block catalog (catalog_003_004.md D14): the paper
// computes the temperatures from the token with parameters shared with existing projections
// (< 0.5% overhead); here they are read from the head's own query / value vectors (d extra
// weights per head and kind), a weight-shared reading of that description.
// With beta -> +inf (and the token terms zero) tau = 1: vanilla softmax attention.
//
// Shapes: x [B, N, C] -> [B, N, C]; C % heads == 0. Parameters: the MHSA's + 1 (beta)
// (+ h d per token temperature). Honours ctx.causal. The probe records softmax(S) (rows sum
// to 1; the value temperature scales the values, not the weights).
#pragma once

#include "blocks/common/multi_head.h"

namespace blocklab {

struct SelectiveAttentionOptions : MultiHeadOptions<SelectiveAttentionOptions> {
  TORCH_ARG(bool, position_temperature) = true;  // tau_i = 1 + exp(-exp(beta)) ln n_i (default true)
  TORCH_ARG(double, beta) = 1.5;                 // initial beta (default 1.5)
  TORCH_ARG(bool, query_temperature) = false;    // + tanh(u_h . q_i) (default false)
  TORCH_ARG(bool, value_temperature) = false;    // v_j scaled by 1 + tanh(w_h . v_j) (default false)
};

class SelectiveAttentionImpl : public MultiHeadAttentionImpl {
 public:
  static constexpr const char* kKey = "attention/selective";
  explicit SelectiveAttentionImpl(std::int64_t dim, const SelectiveAttentionOptions& options = {});
  SelectiveAttentionImpl(std::int64_t dim, const SelectiveAttentionOptions& options, const MultiHeadConfig& config);
  const SelectiveAttentionOptions& options() const { return options_; }
  MixerCapabilities capabilities() const override;

  // The query temperatures tau [B|1, h|1, N, 1] for queries q [B, h, N, d].
  torch::Tensor query_temperatures(const torch::Tensor& q, bool causal) const;

  torch::Tensor beta;        // [] (position_temperature)
  torch::Tensor query_gate;  // u [h, d] (query_temperature)
  torch::Tensor value_gate;  // w [h, d] (value_temperature)

 protected:
  torch::Tensor scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx) override;
  torch::Tensor values(const torch::Tensor& v, const MixerContext& ctx) override;

 private:
  SelectiveAttentionOptions options_;
};
TORCH_MODULE(SelectiveAttention);

const OptionsSchema<SelectiveAttentionOptions>& selective_attention_schema();

}  // namespace blocklab
