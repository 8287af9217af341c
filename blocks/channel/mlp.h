// mlp: the position-wise feed-forward network of the Transformer.
//
// Paper: "Attention Is All You Need", Vaswani et al., 2017, arXiv:1706.03762 (§3.3,
// FFN(x) = max(0, x W1 + b1) W2 + b2), with the GELU of ViT (Dosovitskiy et al. 2020,
// arXiv:2010.11929) as the default activation:
//   y = drop(W2 drop(act(W1 x + b1)) + b2),  hidden width H = round(ratio * C).
//
// Shape contract: x [..., C] -> [..., C]; tokens are never mixed.
#pragma once

#include "blocks/common/ffn.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct MlpOptions {
  TORCH_ARG(double, ratio) = 4.0;               // hidden width / dim (default 4)
  TORCH_ARG(double, drop) = 0.0;                // dropout after the activation and the output (default 0)
  TORCH_ARG(std::string, activation) = "gelu";  // gelu | relu | silu (default gelu)
};

class MlpImpl : public ChannelMixerImpl {
 public:
  MlpImpl(std::int64_t dim, const MlpOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x) override;
  const MlpOptions& options() const { return options_; }

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  MlpOptions options_;
  ActivationFn act_;
};
TORCH_MODULE(Mlp);

const OptionsSchema<MlpOptions>& mlp_schema();

}  // namespace blocklab
