// stack/stages: a hierarchical stack of stages, each with its own depth, width and token grid,
// and a downsampling layer between stages (Swin, PVT, MaxViT).
//
// Papers: "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows" (Liu et al.,
// 2021, arXiv:2103.14030, §3.1, "patch merging"): the features of each 2x2 group of neighbouring
// tokens are concatenated (4C), normalised and projected to the next stage's width,
//   x' = W LN([x_{2i,2j}; x_{2i+1,2j}; x_{2i,2j+1}; x_{2i+1,2j+1}])     (downsample: merge)
// or a strided 2x2 convolution does the same (downsample: conv; as PVT v2/ConvNeXt stems between
// stages), or ViT-ResNAS's residual spatial reduction (downsample: residual; Liao et al., 2021,
// "Searching for Efficient Multi-Stage Vision Transformers", arXiv:2109.09542, §3.1; catalog 002
// B-19): a normalised strided 3x3 convolution with new learned positions, plus the input itself
// average-pooled 2x2 and zero-padded to the new width,
//   x' = Conv3x3/2(LN(x)) + E'_pos + pad(AvgPool2x2/2(x))
// It halves odd grids too (ceil: the pool averages what a window covers). Stage s has dims[s] width and the grid halved
// s times; layers are numbered across stages, overrides can select a stage ({stage: 1, mixer: ...};
// blocks/stacks/layer_plan.h).
//
// Shape contract: tokens [B, H*W, dims[0]] on an H x W grid without prefix tokens ->
// [B, (H/2^(S-1)) * (W/2^(S-1)), dims[S-1]]; H and W divisible by 2^(S-1) (residual: any grid,
// each halving rounds up).
#pragma once

#include "blocks/common/weight_decay.h"
#include "blocks/model.h"
#include "blocks/stacks/layer_plan.h"

namespace blocklab {

struct StagesOptions {
  TORCH_ARG(std::vector<std::int64_t>, depths) = std::vector<std::int64_t>{2, 2};  // blocks per stage (default [2, 2])
  TORCH_ARG(std::vector<std::int64_t>, dims) = std::vector<std::int64_t>{};        // width per stage; [] = the stem's width doubling
  TORCH_ARG(std::string,
            downsample) = "merge";  // merge (Swin) | conv (strided 2x2) | residual (ViT-ResNAS) (default merge)
  TORCH_ARG(double, drop_path) = 0.1;            // stochastic depth of the last block (default 0.1)
  TORCH_ARG(ConfigNode, layers) = ConfigNode();  // named per-layer overrides (default none)
};

// ViT-ResNAS's residual spatial reduction with given weights (the supernet passes slices):
// x [B, h*w, C] -> Conv3x3/2(LN(x)) + pos [1, h'w', C'] + pad(AvgPool2x2/2(x)) [B, h'*w', C'],
// h' = ceil(h / 2); conv_weight [C', C, 3, 3], C' >= C.
torch::Tensor residual_spatial_reduction(const torch::Tensor& x, std::int64_t h, std::int64_t w,
                                         const torch::Tensor& norm_weight, const torch::Tensor& norm_bias,
                                         const torch::Tensor& conv_weight, const torch::Tensor& conv_bias,
                                         const torch::Tensor& pos_embed);

// Between two stages: [B, h*w, C] on an h x w grid -> [B, h'*w', C'], h' = half_grid(h).
class DownsampleImpl : public torch::nn::Module, public DeclaresNoWeightDecay {
 public:
  // `tokens_out`: h' * w' (residual's new positions).
  DownsampleImpl(const std::string& kind, std::int64_t in_dim, std::int64_t out_dim, std::int64_t tokens_out = 0);
  torch::Tensor forward(const torch::Tensor& x, std::int64_t h, std::int64_t w);
  // The side of the grid after it: h / 2, or ceil(h / 2) for residual.
  std::int64_t half_grid(std::int64_t h) const { return kind_ == "residual" ? (h + 1) / 2 : h / 2; }
  std::vector<std::string> no_weight_decay() const override {
    return kind_ == "residual" ? std::vector<std::string>{"pos_embed"} : std::vector<std::string>{};
  }

  torch::nn::LayerNorm norm{nullptr};    // merge (4C), residual (C)
  torch::nn::Linear reduction{nullptr};  // merge: 4C -> C'
  torch::nn::Conv2d conv{nullptr};       // conv (2x2), residual (3x3, stride 2, padding 1)
  torch::Tensor pos_embed;               // residual: [1, h'w', C']

 private:
  std::string kind_;
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
