// block/squeezeformer: Squeezeformer's block, a Conformer block rearranged as MF then CF (token
// mixer, FFN, convolution module, FFN) with a LayerNorm after every residual addition (post-LN)
// and a learned per-channel scale and shift in front of every module instead of the pre-LN.
//
// Paper: "Squeezeformer: An Efficient Transformer for Automatic Speech Recognition", Kim, Gholami,
// Shaw, Lee, Mangalam, Malik, Mahoney, Keutzer 2022, arXiv:2206.00888, §3.2-3.3 (Fig. 2); read
// against kssteven418/Squeezeformer src/models/conformer_encoder.py (FFModule, MHSAModule,
// ConvModule, ConformerBlock with fixed_arch [M, s, C, s], no_post_ln, adaptive_scale) and
// src/models/submodules/time_reduction.py:
//   MF:  x = LN_1(x + Drop(A(s_1 ⊙ x + b_1)));  x = LN_2(x + F_1(s_2 ⊙ x + b_2))
//   CF:  x = LN_3(x + Conv(s_3 ⊙ x + b_3));     x = LN_4(x + F_2(s_4 ⊙ x + b_4))
//   Conv(u) = Drop(PW_2(Swish(BN(DW_k(mask ⊙ Swish(PW_1 u))))))
// s_i, b_i: adaptive scaling, per channel, s init 1 and b init 0 (identity at init);
// adaptive_scale false gives the paper's ablation, a LayerNorm in their place (pre-LN + post-LN).
// A is the block's token mixer (the paper: relative-position MHSA), F_1 and F_2 two channel
// mixers from the block's channel config (separate weights; the paper: Linear D -> 4D, Swish,
// Linear 4D -> D with fc_factor 1, i.e. `{type: mlp, ratio: 4, activation: silu}`; their dropout
// is the channel mixer's own). PW_1: Linear D -> e D (e = conv_expansion, 2; Swish instead of
// Conformer's GLU), DW_k: depth-wise convolution along the tokens, kernel k (31), "same" padding,
// with bias; BN: BatchNorm over the e D channels, momentum 0.015 (TF's 0.985) and eps 1e-3 (TF's
// default); PW_2: Linear e D -> D. Drop: dropout `dropout` (0.1) on the mixer's output and on the
// convolution module's output (the paper's MHSAModule and ConvModule dropouts). Every residual
// branch also has the block's stochastic depth (args.drop_path; the paper has none).
//
// Decisions where the catalog is silent:
// - the convolution runs along the token sequence (1-D, as over speech frames), prefix (class)
//   tokens and an image grid's row-major order included: the block is a sequence block;
// - ctx.lengths: frames at or after lengths[b] are zeroed before DW (the reference's pad_mask),
//   so in eval mode padding never changes valid outputs (attention masks its keys itself); in
//   training BatchNorm's batch statistics include padded frames, as in the reference;
// - no causal form: DW sees later frames and BatchNorm pools over time; forward refuses
//   ctx.causal (the paper's model is a non-streaming encoder). Not recurrent;
// - LayerNorms use the project's eps 1e-6 (TF's default would be 1e-3);
// - init: PyTorch's defaults, uniform ±fan_in^{-1/2} as the reference for PW_1, DW and F (the
//   reference bounds PW_2 by D^{-1/2}, PyTorch by (e D)^{-1/2}); model/composed re-initialises
//   every Linear with the ViT init, as for every block.
//
// The Temporal U-Net of the encoder (an encoder-level feature, no registry entry here):
// SqueezeformerTimeReduction halves the frame rate (padded frames zeroed, zero padding at the end,
// depth-wise convolution kernel 5 stride 2 "valid", then a pointwise Linear D -> D; output
// ceil(T / 2) frames, lengths ceil(len / 2)); SqueezeformerTimeRecover undoes it (every frame
// repeated twice, cropped to the saved T, Linear D -> D, plus the activation saved before the
// reduction). Decision: the reference pads the end by k - stride = 3 and, for odd T, appends a
// zero frame; here the end is padded so that the last of the ceil(T / 2) frames is computed
// (by 4 for odd T), the same frames for even T.
//
// Shape contract: x [B, N, C] -> [B, N, C]; any N (plain sequences and grids alike).
#pragma once

#include <array>

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

struct SqueezeformerBlockOptions {
  TORCH_ARG(std::int64_t, kernel) = 31;         // depth-wise convolution kernel, odd (default 31)
  TORCH_ARG(std::int64_t, conv_expansion) = 2;  // e, PW_1's width D -> e D (default 2)
  TORCH_ARG(double, bn_momentum) = 0.015;       // BatchNorm momentum, PyTorch's convention (default 0.015)
  TORCH_ARG(double, dropout) = 0.1;             // dropout on the mixer's and the conv module's output (default 0.1)
  TORCH_ARG(bool, adaptive_scale) = true;       // s ⊙ x + b before each module; false: pre-LN (default true)
};

// x -> s ⊙ x + b, per channel; s starts at 1 and b at 0 (the identity).
class SqueezeformerAdaptiveScaleImpl : public torch::nn::Module {
 public:
  explicit SqueezeformerAdaptiveScaleImpl(std::int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);  // [..., C]

  torch::Tensor scale, bias;  // [C]
};
TORCH_MODULE(SqueezeformerAdaptiveScale);

// The convolution module: x [B, N, D] (already scaled) -> Drop(PW_2(Swish(BN(DW(mask ⊙ Swish(PW_1 x)))))).
class SqueezeformerConvModuleImpl : public torch::nn::Module {
 public:
  SqueezeformerConvModuleImpl(std::int64_t dim, const SqueezeformerBlockOptions& options = {});
  // `lengths` [B] (int64): frames at or after lengths[b] are zeroed before DW; undefined = all valid.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& lengths = {});

  torch::nn::Linear pointwise1{nullptr}, pointwise2{nullptr};
  torch::nn::Conv1d depthwise{nullptr};
  torch::nn::BatchNorm1d norm{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(SqueezeformerConvModule);

class SqueezeformerBlockImpl : public BlockImpl {
 public:
  static constexpr const char* kKey = "block/squeezeformer";
  SqueezeformerBlockImpl(const BlockArgs& args, const SqueezeformerBlockOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;

  // Module i (0: mixer, 1: F_1, 2: conv, 3: F_2): its adaptive scale (null when adaptive_scale is
  // false), its pre-LN (null when true), the LayerNorm after its residual addition.
  std::array<SqueezeformerAdaptiveScale, 4> scales{nullptr, nullptr, nullptr, nullptr};
  std::array<torch::nn::LayerNorm, 4> pre_norms{nullptr, nullptr, nullptr, nullptr};
  std::array<torch::nn::LayerNorm, 4> norms{nullptr, nullptr, nullptr, nullptr};
  TokenMixer mixer;
  ChannelMixer ffn1, ffn2;
  SqueezeformerConvModule conv{nullptr};

 private:
  torch::Tensor module_input(std::size_t i, const torch::Tensor& x);  // s_i ⊙ x + b_i (or LN x)
  // LN_i(x + drop_path(branch)).
  torch::Tensor add_and_norm(std::size_t i, const torch::Tensor& x, const torch::Tensor& branch);
  double dropout_, drop_path_;
};
TORCH_MODULE(SqueezeformerBlock);

// The output of a time reduction: the frames at half rate and their valid lengths.
struct SqueezeformerReduced {
  torch::Tensor output;   // [B, ceil(T / stride), D]
  torch::Tensor lengths;  // [B] ceil(lengths / stride); undefined when the input's were
};

// The Temporal U-Net's downsampling: padded frames zeroed, the end zero-padded, a depth-wise
// convolution (kernel, stride, "valid", with bias), then a pointwise Linear D -> D.
class SqueezeformerTimeReductionImpl : public torch::nn::Module {
 public:
  SqueezeformerTimeReductionImpl(std::int64_t dim, std::int64_t kernel = 5, std::int64_t stride = 2);
  SqueezeformerReduced forward(const torch::Tensor& x, const torch::Tensor& lengths = {});  // x [B, T, D]
  std::int64_t stride() const { return stride_; }

  torch::nn::Conv1d depthwise{nullptr};
  torch::nn::Linear pointwise{nullptr};

 private:
  std::int64_t kernel_, stride_;
};
TORCH_MODULE(SqueezeformerTimeReduction);

// The Temporal U-Net's upsampling: Linear(repeat each frame `stride` times, cropped to T) + skip.
class SqueezeformerTimeRecoverImpl : public torch::nn::Module {
 public:
  explicit SqueezeformerTimeRecoverImpl(std::int64_t dim, std::int64_t stride = 2);
  // x [B, T', D] at the reduced rate, skip [B, T, D] the activation saved before the reduction
  // (T' * stride >= T) -> [B, T, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& skip);

  torch::nn::Linear proj{nullptr};

 private:
  std::int64_t stride_;
};
TORCH_MODULE(SqueezeformerTimeRecover);

}  // namespace blocklab
