// stack/plain: depth x block, the stack of ViT and GPT.
//
// Paper: "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2020, arXiv:2010.11929, eq. 2-3):
//   z_l = block_l(z_{l-1}),  l = 1..depth
// Every layer's block comes from the model's default block and the per-layer overrides
// (blocks/stacks/layer_plan.h). Stochastic depth rises linearly from 0 at the first block to
// drop_path at the last (Huang et al. 2016, arXiv:1603.09382; as DeiT/timm).
//
// Shape contract: tokens [B, N, C] -> [B, N, C]; layer i sees the stem's layout with layer = i.
#pragma once

#include "blocks/model.h"
#include "blocks/stacks/layer_plan.h"

namespace blocklab {

struct PlainStackOptions {
  TORCH_ARG(std::int64_t, depth) = 6;            // number of blocks (default 6)
  TORCH_ARG(double, drop_path) = 0.1;            // stochastic depth of the last block (default 0.1)
  TORCH_ARG(ConfigNode, layers) = ConfigNode();  // named per-layer overrides (default none)
};

class PlainStackImpl : public StackImpl {
 public:
  PlainStackImpl(const StackArgs& args, const PlainStackOptions& options);
  Tokens forward(Tokens tokens, AttentionProbe* probe = nullptr) override;
  std::int64_t out_dim() const override { return dim_; }
  std::int64_t out_tokens() const override { return tokens_; }
  std::int64_t depth() const override { return static_cast<std::int64_t>(blocks.size()); }
  std::string layer_name(std::int64_t i) const override;
  bool recurrent() const override;
  std::vector<MixerState> init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  // z_l,t = block_l.step(z_{l-1},t), l = 1..depth, each with its own state.
  torch::Tensor step(const torch::Tensor& x_t, std::vector<MixerState>& states, MixerContext ctx) override;

  torch::nn::ModuleList block_list{nullptr};
  std::vector<Block> blocks;

 private:
  std::int64_t dim_, tokens_;
  std::vector<std::string> mixer_keys_;
};
TORCH_MODULE(PlainStack);

const Schema& plain_stack_schema();
PlainStackOptions bind_plain_stack(const ConfigNode& params);

// The spec of per-layer overrides, shared by the stack and presets that forward `layers`.
ParamSpec layers_param();

}  // namespace blocklab
