// For token mixers and blocks that run image operations (pooling, convolutions, FFTs) on the
// patch grid: the body tokens of x [B, P + H*W, C] as an image [B, C, H, W], and the image output
// back as tokens, with zeros for the P prefix (class, register) tokens (a mixer: such a mixer
// does not mix them, and the residual keeps their value) or with them unchanged (a block).
#pragma once

#include <torch/torch.h>

#include "blocks/common/grid_image.h"
#include "blocks/layout.h"

namespace blocklab {

// The grid body of x as [B, C, H, W]; refuses causal use and tokens that are not ctx's grid.
inline torch::Tensor grid_body_image(const torch::Tensor& x, const MixerContext& ctx, const char* who) {
  TORCH_CHECK(!ctx.causal, who, ": an image operation on the grid has no causal form; use it in a non-causal model");
  TORCH_CHECK(ctx.has_grid() && x.size(1) == ctx.prefix_tokens + ctx.grid_height * ctx.grid_width, who,
              ": needs the tokens of an image grid (a patch stem), got ", x.size(1), " tokens with a ", ctx.grid_height,
              "x", ctx.grid_width, " grid and ", ctx.prefix_tokens, " prefix tokens");
  return grid_tokens_to_image(x.narrow(1, ctx.prefix_tokens, ctx.grid_height * ctx.grid_width), ctx.grid_height,
                              ctx.grid_width);
}

// x's prefix tokens [B, P, C] unchanged, then `body` [B, H*W, C]: a block's output on the grid.
inline torch::Tensor keep_prefix_tokens(const torch::Tensor& x, std::int64_t prefix, const torch::Tensor& body) {
  return prefix > 0 ? torch::cat({x.narrow(1, 0, prefix), body}, 1) : body;
}

// The image [B, C, H, W] as grid tokens after `prefix` zero tokens: [B, P + H*W, C].
inline torch::Tensor grid_mixer_output(const torch::Tensor& image, std::int64_t prefix) {
  const auto tokens = image_to_grid_tokens(image);
  if (prefix == 0) return tokens;
  return torch::cat({torch::zeros({tokens.size(0), prefix, tokens.size(2)}, tokens.options()), tokens}, 1);
}

}  // namespace blocklab
