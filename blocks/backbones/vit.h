// vit: the Vision Transformer backbone.
//
// Paper: "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
// Dosovitskiy et al., 2020, arXiv:2010.11929 (§3.1, eq. 1-4):
//   z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
//   z_l = block_l(z_{l-1}),  l = 1..depth      (registry kind "block", default prenorm)
//   y   = LN(z_L^0)  (pool=cls)   or   LN(mean_i z_L^i)  (pool=mean, timm's fc_norm)
// The patch embedding is stem/patch's (blocks/stems/patch.h), with a class token when pool=cls.
// This is the wave-1 backbone, kept for C++ callers and its parameter names; experiments use the
// model preset `vit` (blocks/models/vit.cpp), which composes the same parts and equals it bit for bit. Stochastic depth rises linearly from 0 at the first block to drop_path
// at the last (Huang et al. 2016, arXiv:1603.09382; as in DeiT/timm). Initialisation as timm's
// reference ViT: Linear weights trunc-normal std 0.02, biases 0, LayerNorm 1/0, class token
// normal std 1e-6, the patch Conv2d keeps PyTorch's default.
//
// Shape contract: images [B, C_in, H, W] -> features [B, dim]; H and W divisible by patch.
// Blocks see MixerContext{grid H/patch x W/patch, prefix_tokens 1 with pool=cls, layer i, probe}.
#pragma once

#include "blocks/common/weight_decay.h"
#include "blocks/interfaces.h"
#include "blocks/stems/patch.h"
#include "registry/options_schema.h"

namespace blocklab {

struct VitOptions {
  TORCH_ARG(std::int64_t, patch) = 4;       // patch side in pixels (default 4: 7x7 tokens on 28x28)
  TORCH_ARG(std::int64_t, dim) = 64;        // embedding width (default 64)
  TORCH_ARG(std::int64_t, depth) = 6;       // number of blocks (default 6)
  TORCH_ARG(std::string, pool) = "cls";     // cls | mean (default cls: a learned class token)
  TORCH_ARG(std::string, pos) = "learned";  // learned | sinusoidal | none (default learned)
  TORCH_ARG(double, drop_path) = 0.1;       // stochastic depth of the last block (default 0.1)
  TORCH_ARG(double, pos_drop) = 0.0;        // dropout after adding positions (default 0)
  TORCH_ARG(ConfigNode, block) = ConfigNode::string("prenorm");            // block kind (default prenorm)
  TORCH_ARG(ConfigNode, mixer) = ConfigNode::string("attention/softmax");  // token mixer (default attention/softmax)
  TORCH_ARG(ConfigNode, channel) = ConfigNode::string("mlp");              // channel mixer (default mlp)
};

class VitImpl : public BackboneImpl, public DeclaresNoWeightDecay {
 public:
  // The position table (when learned) and the class token: no decay (as timm's ViT).
  std::vector<std::string> no_weight_decay() const override;
  VitImpl(const BackboneArgs& args, const VitOptions& options = {});
  torch::Tensor forward(const torch::Tensor& images, AttentionProbe* probe = nullptr) override;
  std::int64_t feature_dim() const override { return options_.dim(); }
  const VitOptions& options() const { return options_; }
  std::int64_t grid_height() const { return patches.grid_h; }
  std::int64_t grid_width() const { return patches.grid_w; }
  std::int64_t prefix_tokens() const { return patches.prefix(); }

  PatchEmbedding patches;  // patch_embed, cls_token (pool=cls), pos_embed: stem/patch's tensors
  torch::nn::ModuleList block_list{nullptr};
  std::vector<Block> blocks;
  torch::nn::LayerNorm norm{nullptr};

 private:
  // "model.blocks.2 (attention/softmax)", for errors raised inside block i.
  std::string layer_name(std::size_t i) const;
  VitOptions options_;
};
TORCH_MODULE(Vit);

const OptionsSchema<VitOptions>& vit_schema();

// Throws ConfigError unless the options fit the images (patch divides H and W; sinusoidal
// positions need dim % 4 == 0); errors point at params' values when given.
void check_vit(const BackboneArgs& args, const VitOptions& options, const ConfigNode& params = {});

}  // namespace blocklab
