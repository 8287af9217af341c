// Attention masks: a registry kind ("mask") composed into any attention built on
// MultiHeadAttentionImpl through its `mask` option:
//   mixer: {type: attention/softmax, heads: 4, mask: {type: mask/gmm, kernels: 5}}
//
// A mask is a matrix over token pairs, per head or shared, applied the way its paper's
// official code applies it (see each mask's file):
//   MultiplyLogits   s' = M ⊙ s      on the scaled logits before the softmax (GMM, ELM masks)
//   AddLogits        s' = s + M      an additive bias (ALiBi, relative position tables)
//   MultiplyWeights  A' = M ⊙ A      on the normalised weights (RMT's paper form of the decay;
//                                    mask/retnet-decay defaults to its official code's form,
//                                    an additive log-decay on the logits)
// An additive mask is a bias: the dense core adds it inside the fused kernel (small_attention
// on CPU, SDPA's float attn_mask otherwise), with its gradient. A multiplicative mask needs the
// explicit weights, so an attention with one takes the reference path (blocks/attention/parts/
// dense_core.h).
// Image tokens use 2-D positions from the context's grid (ctx.grid_height x ctx.grid_width);
// plain sequences use 1-D positions. Prefix tokens (class, registers) have no position: masks
// over positions leave their rows and columns alone (multiplier 1, bias 0); mask/elm, which
// indexes token pairs rather than positions, covers them too.
#pragma once

#include <torch/torch.h>

#include "blocks/interfaces.h"

namespace blocklab {

struct MaskArgs {
  std::int64_t heads = 1;
  std::int64_t dim = 0;         // embedding width of the attention
  std::int64_t max_tokens = 0;  // longest sequence (for tables sized by N)
};

class AttentionMaskImpl : public torch::nn::Module {
 public:
  enum class Mode { MultiplyLogits, AddLogits, MultiplyWeights };
  virtual Mode mode() const = 0;
  // True when the mask needs 2-D grid positions (the attention's capabilities say so).
  virtual bool needs_grid() const { return false; }
  // The mask for `tokens` tokens under `ctx`: [h, N, N] or [1, N, N] (shared by heads).
  virtual torch::Tensor matrix(std::int64_t tokens, const MixerContext& ctx) = 0;

  // Scaled logits s [B, h, N, N] -> masked logits (a no-op for MultiplyWeights).
  torch::Tensor on_logits(const torch::Tensor& s, const MixerContext& ctx);
  // Normalised weights A [B, h, N, N] -> masked weights (a no-op unless MultiplyWeights).
  torch::Tensor on_weights(const torch::Tensor& a, const MixerContext& ctx);
};
using AttentionMask = std::shared_ptr<AttentionMaskImpl>;
using MaskRegistry = Registry<AttentionMask, const MaskArgs&>;
MaskRegistry& mask_registry();

// ---- Shared geometry ----------------------------------------------------------------------
// Positions of the N - prefix grid tokens: [N - prefix, 2] (row, col) when ctx has a grid
// matching N, else [N - prefix, 1] (index). Float64 on `device`.
torch::Tensor token_positions(std::int64_t tokens, const MixerContext& ctx, const torch::Device& device);
// Pairwise distances between positions [M, D] -> [M, M]: Euclidean, Manhattan or squared.
enum class Metric { Euclidean, Manhattan, SquaredEuclidean };
torch::Tensor pairwise_distance(const torch::Tensor& positions, Metric metric);
// Embeds a mask over the grid tokens [h, M, M] into [h, N, N], prefix rows/columns = `fill`.
torch::Tensor with_prefix(const torch::Tensor& grid_mask, std::int64_t prefix, double fill);

}  // namespace blocklab
