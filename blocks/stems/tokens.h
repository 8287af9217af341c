// stem/tokens: token ids as embeddings, the input of language models.
//
// Papers: "Attention Is All You Need" (Vaswani et al., 2017, arXiv:1706.03762, §3.4) and GPT-2
// ("Language Models are Unsupervised Multitask Learners", Radford et al., 2019):
//   z_0[n] = E[id_n] + P[n]
// E [vocabulary, dim] normal std 0.02 and P [length, dim] learned (normal std 0.02) or none
// (for mixers with their own positions). A per-token head may tie its weight to E (Press & Wolf
// 2017, arXiv:1608.05859): embedding() hands it over.
// With short_conv = k > 0, a causal depthwise convolution of width k over the positions adds
// what the k-1 previous tokens hold: z_0 += sum_{j<k} w_j * z_0[n-j] (per channel, plus a bias).
// It is the short convolution before attention of zoology's MQAR baselines (Arora et al. 2023,
// arXiv:2312.04927, §4 and Based, arXiv:2402.18668) and H3's shift SSM (Fu et al. 2023,
// arXiv:2212.14052): a previous-token view the attention needs no head to learn.
//
// Shape contract: ids [B, N] (int64, N <= length) -> tokens [B, N, dim]; layout: no grid, no
// prefix, causal as configured (default true), the batch's lengths when padded.
#pragma once

#include "blocks/common/weight_decay.h"
#include "blocks/model.h"
#include "blocks/stems/sequence.h"
#include "registry/options_schema.h"

namespace blocklab {

struct TokenStemOptions {
  TORCH_ARG(std::int64_t, vocabulary) = 0;  // token ids in [0, vocabulary); 0 = from the data (default)
  TORCH_ARG(std::int64_t, length) = 0;      // longest sequence; 0 = from the data (default)
  TORCH_ARG(std::string, pos) = "learned";  // learned | none (default learned)
  TORCH_ARG(bool, causal) = true;           // tokens see only earlier tokens (default true: language models)
  TORCH_ARG(std::int64_t, short_conv) = 0;  // width of a causal depthwise convolution added to z_0; 0 = none
};

class TokenStemImpl : public StemImpl, public DeclaresNoWeightDecay {
 public:
  TokenStemImpl(const StemArgs& args, const TokenStemOptions& options = {});
  Tokens forward(const torch::Tensor& ids, const torch::Tensor& lengths = {}) override;
  std::int64_t tokens() const override { return length_; }
  MixerContext layout() const override { return sequence_layout(options_.causal()); }
  void init_weights() override;
  torch::Tensor embedding() const override { return embed->weight; }
  // z_t = E[id_t] + P[t]: one token at position t (< length with learned positions). Not with a
  // short convolution (it would need the previous tokens): such models generate by the full forward.
  bool can_step() const override { return !conv; }
  std::int64_t step_limit() const override { return positions.pos_embed.defined() ? length_ : 0; }
  torch::Tensor step(const torch::Tensor& ids_t, std::int64_t position) override;
  std::vector<std::string> no_weight_decay() const override { return positions.no_weight_decay(); }

  torch::nn::Embedding embed{nullptr};
  SequencePositions positions;      // pos_embed [1, N, dim] with pos=learned
  torch::nn::Conv1d conv{nullptr};  // depthwise [dim, 1, k] with short_conv = k

 private:
  torch::Tensor add_short_conv(const torch::Tensor& z);

  TokenStemOptions options_;
  std::int64_t length_;
};
TORCH_MODULE(TokenStem);

const OptionsSchema<TokenStemOptions>& token_stem_schema();

}  // namespace blocklab
