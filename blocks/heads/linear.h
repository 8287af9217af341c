// linear: a linear classification head.
//
// Paper: "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2020, arXiv:2010.11929, §3.1:
// "the classification head is implemented by ... a single linear layer at fine-tuning time"):
//   y = W drop(f) + b.
// Init: W trunc-normal std 0.02, b = 0 (timm's ViT head); init_zero: W = 0 and b = 0 (the
// paper's zero-initialised head for fine-tuning).
//
// tie (Press & Wolf 2017, arXiv:1608.05859): W is the token stem's embedding E [K, D], so a
// language-model head predicts token k with the vector that embeds it; the bias stays the head's.
//
// Shape contract: features [B, D] -> outputs [B, K], or every token [B, N, D] -> [B, N, K].
#pragma once

#include "blocks/model.h"
#include "registry/options_schema.h"

namespace blocklab {

struct LinearHeadOptions {
  TORCH_ARG(double, drop) = 0.0;       // dropout before the linear layer (default 0)
  TORCH_ARG(bool, init_zero) = false;  // zero weights and bias at init (default false)
  TORCH_ARG(bool, tie) = false;        // weight = the token stem's embedding (default false)
};

class LinearHeadImpl : public HeadImpl, public TiesEmbedding {
 public:
  LinearHeadImpl(std::int64_t in_dim, std::int64_t outputs, const LinearHeadOptions& options = {});
  torch::Tensor forward(const torch::Tensor& features) override;
  std::vector<std::int64_t> output_dims() const override { return {outputs_}; }
  const LinearHeadOptions& options() const { return options_; }
  bool wants_tie() const override { return options_.tie(); }
  // With tie: the weight is `embedding` [outputs, in_dim] (the stem owns it); only the bias is the head's.
  void tie(const torch::Tensor& embedding) override;

  torch::nn::Linear fc{nullptr};  // without tie
  torch::Tensor bias, tied;       // with tie: bias [outputs] and the stem's embedding

 private:
  LinearHeadOptions options_;
  std::int64_t outputs_;
};
TORCH_MODULE(LinearHead);

const OptionsSchema<LinearHeadOptions>& linear_head_schema();

}  // namespace blocklab
