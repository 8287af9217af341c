// model/supernet: a weight-sharing ViT supernet over a SearchSpace (blocks/nas/space.h).
//
// Papers: AutoFormer (Chen et al., 2021, arXiv:2107.00651: every subnet takes the leading
// slices of the largest weights, "weight entanglement"); ElasticViT (Tang et al., 2023,
// arXiv:2303.09730: elastic layers slice the first c channels, depth the first d blocks);
// "Neural Architecture Search on Efficient Transformers and Beyond" (Liu et al., 2022,
// arXiv:2207.13955: the attention type is a per-layer choice and the types share the Q/K/V/O
// projections, only the score kernel differs).
//
// The macro design is the default ViT's (experiments/conf/model/vit_small.yaml): patches,
// learned positions, pre-norm blocks (LayerNorm eps 1e-6), mean pooling, LayerNorm, linear head.
// For the active subnet (width C, layer l with heads h_l, ratio r_l, mixer m_l, head width d):
//   z_0 = Patch(x) W_E[:C] + b_E[:C] + E_pos[:, :C]
//   u_l = z_{l-1} + Mix_l(LN(z_{l-1}; g1[:C], b1[:C]))
//   z_l = u_l + W_2[:C, :H] GELU(W_1[:H, :C] LN(u_l; g2[:C], b2[:C]) + b_1[:H]) + b_2[:C],  H = round(r_l C)
//   y   = W_head[:, :C] LN(mean_n z_L; g[:C], b[:C]) + b_head
// Mix_l for an attention-type mixer: Q, K, V = the first h_l heads of each of the shared W_Q,
// W_K, W_V (rows [0, h_l d) of each, columns [0, C)), then the mixer's kernel (softmax for
// attention/softmax, elu + 1 features for linear/elu), then W_O[:C, :h_l d]. A mixer without
// weights (mixer/pooling) is the registered block itself.
//
// ViT-ResNAS's residual spatial reduction (Liao et al., 2021, arXiv:2109.09542, §3.1; option
// `reductions`): before each layer j listed, the grid is halved (rounding up) by
//   z' = Conv3x3/2(LN(z))[:C] + E'_pos[:, :, :C] + AvgPool2x2/2(z)
// (the width stays C, so the residual needs no padding); a subnet shallower than j skips it.
//
// Every subnet is an ordinary model: subnet_config() writes it as model/composed with
// stack/plain (stack/stages with downsample: residual where a reduction runs) and one per-layer
// override per layer, and export_weights() fills that model's
// parameters with the slices, so the extracted model computes exactly the supernet's output on
// that path (tests/blocks/nas).
//
// Shape contract: images [B, channels, H, W] -> logits [B, outputs].
#pragma once

#include <map>
#include <string>

#include "blocks/model.h"
#include "blocks/nas/relation_kd.h"
#include "blocks/nas/space.h"
#include "blocks/stacks/stages.h"

namespace blocklab {

class SupernetLayerImpl : public torch::nn::Module {
 public:
  // Weights at the space's largest sizes; weightless mixers built by the registry.
  SupernetLayerImpl(const SearchSpace& space, std::int64_t tokens, const MixerContext& layout);
  // One layer of the subnet of width `width` with `choice`; an attention-type layer also writes its
  // queries, keys and values to `capture` when given.
  torch::Tensor forward(const torch::Tensor& x, std::int64_t width, const LayerChoice& choice, const MixerContext& ctx,
                        AttentionRelations* capture = nullptr);
  // The slices this layer uses, named as prenorm's parameters ("norm1.weight", "mixer.qkv.weight").
  std::map<std::string, torch::Tensor> slices(std::int64_t width, const LayerChoice& choice) const;

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr};  // shared by the attention-type mixers
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  std::map<std::string, TokenMixer> weightless;  // by registry key

 private:
  std::int64_t max_heads_, head_dim_;
};
TORCH_MODULE(SupernetLayer);

// Mixers a supernet layer offers with shared Q/K/V/O weights (their kernels live in supernet.cpp).
bool is_attention_type_mixer(const std::string& key);

class SupernetImpl : public NetworkImpl {
 public:
  // `reductions`: the layers before which the grid is halved (increasing, in 1..max depth - 1).
  SupernetImpl(const SearchSpace& space, const ModelInputs& inputs, std::int64_t outputs, std::int64_t patch,
               std::vector<std::int64_t> reductions = {});

  // The subnet forward() runs (at first the largest); throws std::invalid_argument when it is
  // not a point of the space.
  void set_subnet(const Subnet& subnet);
  const Subnet& subnet() const { return subnet_; }
  const SearchSpace& space() const { return space_; }

  torch::Tensor forward(const torch::Tensor& images, AttentionProbe* probe = nullptr,
                        const torch::Tensor& lengths = {}) override;
  // forward(), also giving the queries, keys and values of the subnet's last attention-type layer
  // (AutoDistil's relation distillation, blocks/nas/relation_kd.h); throws std::invalid_argument
  // when no layer of the subnet attends.
  torch::Tensor forward_relations(const torch::Tensor& images, AttentionRelations& relations);

  // The subnet as an ordinary model config (model/composed, stack/plain, per-layer overrides).
  ConfigNode subnet_config(const Subnet& subnet) const;
  // The subnet's weights, named as the parameters of the model subnet_config() builds.
  std::map<std::string, torch::Tensor> subnet_weights(const Subnet& subnet) const;
  // Copies subnet_weights() into `model` (built from subnet_config()); throws std::logic_error
  // when a parameter is missing on either side or differs in shape.
  void export_weights(const Subnet& subnet, torch::nn::Module& model) const;
  // Parameters of the extracted model.
  std::int64_t subnet_parameters(const Subnet& subnet) const;
  // Multiply-adds of one image through the subnet's matrix products and convolutions (LayerNorm,
  // softmax, activations and pooling not counted, as fvcore and thop count).
  double subnet_macs(const Subnet& subnet) const;

  torch::nn::Conv2d patch_embed{nullptr};
  torch::Tensor pos_embed;  // [1, N, C_max]
  torch::nn::ModuleList layer_list{nullptr};
  torch::nn::ModuleList reduction_list{nullptr};  // residual spatial reductions at the largest width
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  // forward() of the active subnet; the last attention-type layer leaves its Q/K/V in `capture`.
  torch::Tensor run(const torch::Tensor& images, AttentionRelations* capture);
  // The reductions a subnet of `depth` layers runs (their indices into reductions_).
  std::int64_t active_reductions(std::int64_t depth) const;
  // Token counts of each layer (the grid after the reductions before it).
  std::vector<std::int64_t> layer_tokens() const;

  SearchSpace space_;
  Subnet subnet_;
  std::int64_t patch_;
  MixerContext layout_;
  std::vector<SupernetLayer> layers_;
  std::vector<std::int64_t> reductions_;
  std::vector<Downsample> reduction_modules_;
};
using Supernet = std::shared_ptr<SupernetImpl>;

// The schema of model/supernet's space keys (depths, widths, heads, mlp_ratios, mixers, head_dim).
const Schema& supernet_schema();
// The space a model/supernet config describes.
SearchSpace supernet_space(const ConfigNode& params);

}  // namespace blocklab
