// stem/patch: image patches as tokens, the ViT embedding.
//
// Paper: "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
// Dosovitskiy et al., 2020, arXiv:2010.11929 (§3.1, eq. 1):
//   z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
// E is a Conv2d with kernel = stride = patch (PyTorch's default init). Positions: learned
// (trunc-normal std 0.02), fixed 2-D sin-cos (MAE, arXiv:2111.06377; a buffer) or none; the
// class token is drawn from normal std 1e-6 (timm). Both are drawn by init_weights(), after the
// model's Linear init, in the reference ViT's order.
//
// Shape contract: images [B, C_in, H, W] -> tokens [B, prefix + (H/patch)(W/patch), dim] with
// layout {grid H/patch x W/patch, prefix_tokens 1 with a class token}.
#pragma once

#include "blocks/common/weight_decay.h"
#include "blocks/model.h"
#include "registry/options_schema.h"

namespace blocklab {

struct PatchStemOptions {
  TORCH_ARG(std::int64_t, patch) = 4;       // patch side in pixels (default 4)
  TORCH_ARG(std::string, pos) = "learned";  // learned | sinusoidal | none (default learned)
  TORCH_ARG(bool, class_token) = true;      // a learned class token before the patches (default true)
  TORCH_ARG(double, pos_drop) = 0.0;        // dropout after adding positions (default 0)
};

// The patch embedding's tensors, registered on the module that owns them under the wave-1
// names (patch_embed, cls_token, pos_embed): stem/patch, and the backbone `vit`.
struct PatchEmbedding {
  PatchEmbedding() = default;
  PatchEmbedding(torch::nn::Module& owner, const ModelInputs& inputs, std::int64_t dim,
                 const PatchStemOptions& options);
  std::int64_t prefix() const { return options.class_token() ? 1 : 0; }
  std::int64_t tokens() const { return prefix() + grid_h * grid_w; }
  MixerContext layout() const;
  void init_weights();  // positions trunc-normal std 0.02 (learned), class token normal std 1e-6
  torch::Tensor forward(const torch::Tensor& images, bool training);  // [B, C, H, W] -> [B, N, dim]
  std::vector<std::string> no_weight_decay() const;                   // learned positions, class token

  torch::nn::Conv2d patch_embed{nullptr};
  torch::Tensor cls_token;  // [1, 1, dim] with class_token
  torch::Tensor pos_embed;  // [1, tokens, dim]: a parameter (learned) or a buffer (sinusoidal)
  PatchStemOptions options;
  std::int64_t image_h = 0, image_w = 0, grid_h = 0, grid_w = 0;
};

class PatchStemImpl : public StemImpl, public DeclaresNoWeightDecay {
 public:
  PatchStemImpl(const StemArgs& args, const PatchStemOptions& options = {});
  Tokens forward(const torch::Tensor& images, const torch::Tensor& lengths = {}) override;
  std::int64_t tokens() const override { return patches.tokens(); }
  MixerContext layout() const override { return patches.layout(); }
  void init_weights() override { patches.init_weights(); }
  // The position table (when learned) and the class token: no decay (as timm's ViT).
  std::vector<std::string> no_weight_decay() const override { return patches.no_weight_decay(); }

  PatchEmbedding patches;
};
TORCH_MODULE(PatchStem);

const OptionsSchema<PatchStemOptions>& patch_stem_schema();

// Throws ConfigError unless a patch stem fits the images: the patch divides H and W, sin-cos
// positions need dim % 4 == 0. Errors point at params' `patch` / `pos` when given.
void check_patch_stem(const ModelInputs& inputs, std::int64_t dim, std::int64_t patch, const std::string& pos,
                      const ConfigNode& params = {});

}  // namespace blocklab
