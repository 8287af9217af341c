// The grid tokens of an image as the image and back: [B, H*W, C] (row-major) <-> [B, C, H, W], for
// the blocks that run convolutions or pooling on the patch grid (MBConv, FaViT, SG-Former).
#pragma once

#include <torch/torch.h>

namespace blocklab {

inline torch::Tensor grid_tokens_to_image(const torch::Tensor& tokens, std::int64_t height, std::int64_t width) {
  return tokens.transpose(1, 2).unflatten(2, {height, width});
}

inline torch::Tensor image_to_grid_tokens(const torch::Tensor& image) { return image.flatten(2).transpose(1, 2); }

}  // namespace blocklab
