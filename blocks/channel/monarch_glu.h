// monarch-glu: Monarch Mixer's GLU MLP, the channel mixer of M2-BERT.
//
// Paper: "Monarch Mixer: A Simple Sub-Quadratic GEMM-Based Architecture", Fu et al., 2023,
// arXiv:2310.12109, Section 3 (dimension mixing with Monarch matrices); official code
// HazyResearch/m2 (bert/src/bert_layers.py, BertGatedLinearUnitMLP with monarch_mlp_nblocks 4):
//   a, g = split(BD1(x))          BD1: C -> 2F, no bias
//   out  = BD2(act(a) ⊙ g) + b    BD2: F -> C (GELU by default)
// BD1, BD2 are block-diagonal (blockdiag, the released code, nblocks 4) or Monarch matrices
// (monarch, the paper's P L P^T R P) from blocks/common/monarch.h; dense gives the plain GLU.
// M2-BERT's post-LN residual (LayerNorm(out + x)) belongs to the enclosing block, not here.
//
// Shape contract: x [..., C] -> [..., C]; tokens are never mixed.
#pragma once

#include "blocks/common/ffn.h"
#include "blocks/common/init.h"
#include "blocks/common/monarch.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct MonarchGluOptions {
  TORCH_ARG(double, ratio) = 4.0;                // hidden width F / C (BERT's 3072 / 768)
  TORCH_ARG(std::int64_t, nblocks) = 4;          // blocks of the structured layers
  TORCH_ARG(std::string, linear) = "blockdiag";  // blockdiag (M2-BERT) | monarch | dense
  TORCH_ARG(std::string, activation) = "gelu";
  TORCH_ARG(double, drop) = 0.0;  // dropout after the gating
};

class MonarchGluImpl : public ChannelMixerImpl, public KeepsOwnInit {
 public:
  static constexpr const char* kKey = "monarch-glu";
  MonarchGluImpl(std::int64_t dim, const MonarchGluOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x) override;
  std::int64_t hidden() const { return hidden_; }

  torch::nn::AnyModule fc1, fc2;

 private:
  MonarchGluOptions options_;
  std::int64_t hidden_;
  ActivationFn act_;
};
TORCH_MODULE(MonarchGlu);

const OptionsSchema<MonarchGluOptions>& monarch_glu_schema();

}  // namespace blocklab
