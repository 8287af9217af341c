// stack/stages: a hierarchical stack of stages, each with its own depth, width and token grid,
// and a downsampling layer between stages (Swin, PVT, MaxViT).
//
// Papers: "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows" (Liu et al.,
// 2021, arXiv:2103.14030, §3.1, "patch merging"): the features of each 2x2 group of neighbouring
// tokens are concatenated (4C), normalised and projected to the next stage's width,
//   x' = W LN([x_{2i,2j}; x_{2i+1,2j}; x_{2i,2j+1}; x_{2i+1,2j+1}])     (downsample: merge)
// or a strided 2x2 convolution does the same (downsample: conv; as PVT v2/ConvNeXt stems between
// stages). Stage s has dims[s] width and the grid halved s times; layers are numbered across
// stages, overrides can select a stage ({stage: 1, mixer: ...}; blocks/stacks/layer_plan.h).
//
// Shape contract: tokens [B, H*W, dims[0]] on an H x W grid without prefix tokens ->
// [B, (H/2^(S-1)) * (W/2^(S-1)), dims[S-1]]; H and W divisible by 2^(S-1).
#pragma once

#include "blocks/model.h"
#include "blocks/stacks/layer_plan.h"

namespace blocklab {

struct StagesOptions {
  TORCH_ARG(std::vector<std::int64_t>, depths) = std::vector<std::int64_t>{2, 2};  // blocks per stage (default [2, 2])
  TORCH_ARG(std::vector<std::int64_t>, dims) = std::vector<std::int64_t>{};        // width per stage; [] = the stem's width doubling
  TORCH_ARG(std::string, downsample) = "merge";  // merge (Swin patch merging) | conv (strided 2x2 conv) (default merge)
  TORCH_ARG(double, drop_path) = 0.1;            // stochastic depth of the last block (default 0.1)
  TORCH_ARG(ConfigNode, layers) = ConfigNode();  // named per-layer overrides (default none)
};

// Between two stages: [B, h*w, C] on an h x w grid -> [B, (h/2)*(w/2), C'].
class DownsampleImpl : public torch::nn::Module {
 public:
  DownsampleImpl(const std::string& kind, std::int64_t in_dim, std::int64_t out_dim);
  torch::Tensor forward(const torch::Tensor& x, std::int64_t h, std::int64_t w);

  torch::nn::LayerNorm norm{nullptr};  // merge
  torch::nn::Linear reduction{nullptr};  // merge: 4C -> C'
  torch::nn::Conv2d conv{nullptr};       // conv

 private:
  bool merge_;
};
TORCH_MODULE(Downsample);

class StagesStackImpl : public StackImpl {
 public:
  StagesStackImpl(const StackArgs& args, const StagesOptions& options);
  Tokens forward(Tokens tokens, AttentionProbe* probe = nullptr) override;
  std::int64_t out_dim() const override { return dims_.back(); }
  std::int64_t out_tokens() const override { return out_tokens_; }
  std::int64_t depth() const override { return static_cast<std::int64_t>(blocks.size()); }
  std::string layer_name(std::int64_t i) const override;

  torch::nn::ModuleList block_list{nullptr}, downsample_list{nullptr};
  std::vector<Block> blocks;
  std::vector<Downsample> downsamples;

 private:
  std::vector<std::int64_t> dims_, stage_of_;
  std::int64_t out_tokens_ = 0;
  std::vector<std::string> mixer_keys_;
};
TORCH_MODULE(StagesStack);

}  // namespace blocklab
