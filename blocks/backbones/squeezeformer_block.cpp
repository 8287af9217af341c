#include "blocks/backbones/squeezeformer_block.h"

#include <algorithm>
#include <string>

#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

constexpr double kSqueezeformerLnEps = 1e-6;  // the project's LayerNorm eps
constexpr double kSqueezeformerBnEps = 1e-3;  // TF's BatchNormalization default (the reference)

// [B, N, 1]: 1 at the valid frames (t < lengths[b]), 0 at the padded ones.
torch::Tensor squeezeformer_valid_frames(const torch::Tensor& lengths, std::int64_t frames, const torch::Tensor& like) {
  const auto t = torch::arange(frames, torch::TensorOptions(torch::kLong).device(like.device()));
  return (t.view({1, frames}) < lengths.to(like.device(), torch::kLong).view({-1, 1})).unsqueeze(-1).to(like.dtype());
}

torch::Tensor squeezeformer_dropout(const torch::Tensor& t, double p, bool training) {
  return p > 0.0 ? torch::dropout(t, p, training) : t;
}

}  // namespace

SqueezeformerAdaptiveScaleImpl::SqueezeformerAdaptiveScaleImpl(std::int64_t dim) {
  scale = register_parameter("scale", torch::ones({dim}));
  bias = register_parameter("bias", torch::zeros({dim}));
}

torch::Tensor SqueezeformerAdaptiveScaleImpl::forward(const torch::Tensor& x) { return x * scale + bias; }

SqueezeformerConvModuleImpl::SqueezeformerConvModuleImpl(std::int64_t dim, const SqueezeformerBlockOptions& o)
    : dropout_(o.dropout()) {
  const auto wide = o.conv_expansion() * dim;
  pointwise1 = register_module("pointwise1", torch::nn::Linear(dim, wide));
  depthwise = register_module(
      "depthwise",
      torch::nn::Conv1d(torch::nn::Conv1dOptions(wide, wide, o.kernel()).padding(o.kernel() / 2).groups(wide)));
  norm = register_module(
      "norm",
      torch::nn::BatchNorm1d(torch::nn::BatchNormOptions(wide).momentum(o.bn_momentum()).eps(kSqueezeformerBnEps)));
  pointwise2 = register_module("pointwise2", torch::nn::Linear(wide, dim));
}

torch::Tensor SqueezeformerConvModuleImpl::forward(const torch::Tensor& x, const torch::Tensor& lengths) {
  auto h = torch::silu(pointwise1->forward(x));  // [B, N, e D]
  // Padded frames are zeroed before the convolution mixes frames (the reference's pad_mask).
  if (lengths.defined()) h = h * squeezeformer_valid_frames(lengths, x.size(1), h);
  h = torch::silu(norm->forward(depthwise->forward(h.transpose(1, 2))));  // [B, e D, N]
  return squeezeformer_dropout(pointwise2->forward(h.transpose(1, 2)), dropout_, is_training());
}

SqueezeformerBlockImpl::SqueezeformerBlockImpl(const BlockArgs& args, const SqueezeformerBlockOptions& o)
    : dropout_(o.dropout()), drop_path_(args.drop_path) {
  const auto ln = torch::nn::LayerNormOptions({args.dim}).eps(kSqueezeformerLnEps);
  // Registered in the order of the forward: module i's input map, the module, its post-LN.
  const auto add_input_map = [&](std::size_t i) {
    const auto name = std::to_string(i + 1);
    if (o.adaptive_scale())
      scales[i] = register_module("scale" + name, SqueezeformerAdaptiveScale(args.dim));
    else
      pre_norms[i] = register_module("pre_norm" + name, torch::nn::LayerNorm(ln));
  };
  const auto add_norm = [&](std::size_t i) {
    norms[i] = register_module("norm" + std::to_string(i + 1), torch::nn::LayerNorm(ln));
  };
  add_input_map(0);
  mixer = register_module("mixer", mixer_registry().create(args.mixer, mixer_args(args)));
  add_norm(0);
  add_input_map(1);
  ffn1 = register_module("ffn1", channel_registry().create(args.channel, args.dim));
  add_norm(1);
  add_input_map(2);
  conv = register_module("conv", SqueezeformerConvModule(args.dim, o));
  add_norm(2);
  add_input_map(3);
  ffn2 = register_module("ffn2", channel_registry().create(args.channel, args.dim));
  add_norm(3);
}

torch::Tensor SqueezeformerBlockImpl::module_input(std::size_t i, const torch::Tensor& x) {
  return scales[i] ? scales[i]->forward(x) : pre_norms[i]->forward(x);
}

torch::Tensor SqueezeformerBlockImpl::add_and_norm(std::size_t i, const torch::Tensor& x, const torch::Tensor& branch) {
  return norms[i]->forward(x + blocklab::drop_path(branch, drop_path_, is_training()));
}

torch::Tensor SqueezeformerBlockImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, kKey,
              ": no causal form (its depth-wise convolution sees later tokens and its BatchNorm pools over them); "
              "use it in a non-causal model");
  // MF: the token mixer, then F_1.
  const auto mixer_input = module_input(0, x);
  if (ctx.probe && ctx.probe->keeps_mixer_calls())
    ctx.probe->record_mixer_call(MixerCall{mixer, mixer_input.detach(), ctx.without_probe()});
  auto y = add_and_norm(0, x, squeezeformer_dropout(mixer->forward(mixer_input, ctx), dropout_, is_training()));
  y = add_and_norm(1, y, ffn1->forward(module_input(1, y)));
  // CF: the convolution module, then F_2.
  y = add_and_norm(2, y, conv->forward(module_input(2, y), ctx.lengths));
  return add_and_norm(3, y, ffn2->forward(module_input(3, y)));
}

SqueezeformerTimeReductionImpl::SqueezeformerTimeReductionImpl(std::int64_t dim, std::int64_t kernel,
                                                               std::int64_t stride)
    : kernel_(kernel), stride_(stride) {
  TORCH_CHECK(kernel >= 1 && stride >= 1, "squeezeformer time reduction: kernel and stride must be >= 1, got ", kernel,
              " and ", stride);
  depthwise = register_module("depthwise",
                              torch::nn::Conv1d(torch::nn::Conv1dOptions(dim, dim, kernel).stride(stride).groups(dim)));
  pointwise = register_module("pointwise", torch::nn::Linear(dim, dim));
}

SqueezeformerReduced SqueezeformerTimeReductionImpl::forward(const torch::Tensor& x, const torch::Tensor& lengths) {
  const auto frames = x.size(1);
  const auto out = (frames + stride_ - 1) / stride_;  // ceil(T / stride)
  auto h = lengths.defined() ? x * squeezeformer_valid_frames(lengths, frames, x) : x;
  // Zeros at the end so that the valid convolution gives exactly ceil(T / stride) frames.
  const auto pad = std::max<std::int64_t>(0, (out - 1) * stride_ + kernel_ - frames);
  h = torch::constant_pad_nd(h.transpose(1, 2), {0, pad});  // [B, D, T + pad]
  SqueezeformerReduced r;
  r.output = pointwise->forward(depthwise->forward(h).transpose(1, 2));
  if (lengths.defined()) r.lengths = torch::div(lengths.to(torch::kLong) + (stride_ - 1), stride_, "floor");
  return r;
}

SqueezeformerTimeRecoverImpl::SqueezeformerTimeRecoverImpl(std::int64_t dim, std::int64_t stride) : stride_(stride) {
  TORCH_CHECK(stride >= 1, "squeezeformer time recover: stride must be >= 1, got ", stride);
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor SqueezeformerTimeRecoverImpl::forward(const torch::Tensor& x, const torch::Tensor& skip) {
  const auto frames = skip.size(1);
  TORCH_CHECK(x.size(1) * stride_ >= frames, "squeezeformer time recover: ", x.size(1), " frames repeated ", stride_,
              " times cannot cover the ", frames, " frames of the skip connection");
  return proj->forward(x.repeat_interleave(stride_, 1).narrow(1, 0, frames)) + skip;
}

namespace {

const OptionsSchema<SqueezeformerBlockOptions>& squeezeformer_block_schema() {
  static const auto schema = [] {
    using O = SqueezeformerBlockOptions;
    OptionsSchema<O> s;
    BLOCKLAB_OPTION(s, kernel, "depth-wise convolution kernel along the tokens, odd (the paper: 31; default 31)").min =
        1;
    BLOCKLAB_OPTION(s, conv_expansion, "e: the convolution module's width e D (the paper: 2; default 2)").min = 1;
    auto& momentum =
        BLOCKLAB_OPTION(s, bn_momentum, "BatchNorm momentum, PyTorch's convention (TF's 0.985 = 0.015; default 0.015)");
    momentum.min = 0.0;
    momentum.max = 1.0;
    rate(BLOCKLAB_OPTION(s, dropout, "dropout on the mixer's and the convolution module's output (default 0.1)"));
    BLOCKLAB_OPTION(s, adaptive_scale,
                    "s * x + b (per channel, s = 1, b = 0 at init) before each module; false: a LayerNorm there (the "
                    "paper's pre-LN ablation; default true)");
    return s;
  }();
  return schema;
}

Block make_squeezeformer_block(const ConfigNode& params, const BlockArgs& args) {
  const auto options = bind_options(squeezeformer_block_schema(), params);
  if (options.kernel() % 2 == 0)
    config_fail(params, "kernel",
                "kernel must be odd (\"same\" padding keeps the tokens), got " + std::to_string(options.kernel()),
                {"kernel: " + std::to_string(options.kernel() + 1)});
  return std::make_shared<SqueezeformerBlockImpl>(args, options);
}

BLOCKLAB_REGISTER(
    block_registry(),
    BLOCKLAB_ENTRY(SqueezeformerBlockImpl::kKey)
        .summary("Squeezeformer: token mixer, FFN, convolution module, FFN, each x = LN(x + module(s * x + b)) "
                 "(adaptive scale instead of pre-LN); two FFNs of the channel config; no causal form")
        .paper("Squeezeformer: An Efficient Transformer for Automatic Speech Recognition (Kim et al., 2022), "
               "arXiv:2206.00888")
        .equation("x = LN(x + Drop(A(s1 x + b1))); x = LN(x + F1(s2 x + b2)); x = LN(x + Conv(s3 x + b3)); "
                  "x = LN(x + F2(s4 x + b4)); Conv = Drop(PW(Swish(BN(DWConv_k(Swish(PW u))))))")
        .schema(squeezeformer_block_schema().schema())
        .example("{kernel: 7}"),
    make_squeezeformer_block);

}  // namespace
}  // namespace blocklab
