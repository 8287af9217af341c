// mask/elm: element-wise learnable mask (ELM), multiplicative on the scaled attention logits.
//
// Paper: "Toward a Deeper Understanding: RetNet Viewed through Convolution", Li & Zhang, 2023,
// arXiv:2309.05375 (the ELM baseline the Gaussian mixture mask is compared with). Official
// code: CatworldLee/Gaussian-Mixture-Mask-Attention, models/gmm.py (Simple_Mask).
//
//   logits' = M[:N, :N] ⊙ (q k^T / sqrt(d)),   A = softmax(logits')   (MultiplyLogits)
//
// M is one learned T x T matrix shared by all heads (T = `tokens`, default the attention's
// max_tokens), initialised to zeros: at init every query attends uniformly. A sequence of
// N <= T tokens uses the top-left N x N block; N > T is an error. ELM indexes token pairs, not
// grid positions, so unlike the positional masks it covers prefix tokens (class, registers)
// too: they are token 0.. of the sequence like any other (the official masked ViT has no class
// token, so this choice is ours).
//
// Shape contract: matrix(N, ctx) -> [1, N, N]. Parameters: T^2.
#pragma once

#include "blocks/common/options.h"
#include "blocks/masks/mask.h"

namespace blocklab {

struct ElmMaskOptions {
  TORCH_ARG(std::int64_t, tokens) = 0;  // side T of the mask (default 0: the attention's max_tokens)
};

class ElmMaskImpl : public AttentionMaskImpl {
 public:
  static constexpr const char* kKey = "mask/elm";
  explicit ElmMaskImpl(std::int64_t tokens);
  Mode mode() const override { return Mode::MultiplyLogits; }
  torch::Tensor matrix(std::int64_t tokens, const MixerContext& ctx) override;

  torch::Tensor weight;  // [T, T], zeros at init
};
TORCH_MODULE(ElmMask);

const OptionsSchema<ElmMaskOptions>& elm_mask_schema();

}  // namespace blocklab
