#include "blocks/mixers/dsc.h"

#include "blocks/attention/parts/dense_core.h"
#include "blocks/common/multi_head.h"
#include "blocks/common/options.h"

namespace blocklab {

DscMixerImpl::DscMixerImpl(std::int64_t dim, const DscMixerOptions& o) : options_(o) {
  TORCH_CHECK(o.kernel() >= 1 && o.kernel() % 2 == 1, kKey, ": kernel must be odd and >= 1, got ", o.kernel());
  TORCH_CHECK(o.heads() >= 1 && dim % o.heads() == 0, kKey, ": heads ", o.heads(), " must divide the width ", dim);
  const auto k = o.kernel();
  depthwise = register_module(
      "depthwise", torch::nn::Conv1d(torch::nn::Conv1dOptions(dim, dim, k).groups(dim).padding(k / 2).bias(false)));
  pointwise = register_module("pointwise", torch::nn::Linear(dim, dim));
  qv = register_module("qv", torch::nn::Linear(dim, 2 * dim));
  kernel_proj = register_module("kernel_proj", torch::nn::Linear(dim, o.heads() * k));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

MixerCapabilities DscMixerImpl::capabilities() const {
  MixerCapabilities c;
  c.variable_lengths = true;  // padded x and v are zeroed: a valid token sees a shorter sequence's zeros
  return c;
}

torch::Tensor DscMixerImpl::valid_only(const torch::Tensor& t, const MixerContext& ctx) const {
  if (!ctx.lengths.defined()) return t;
  const auto padded = padding_mask(ctx.lengths, t.size(1), t.device()).view({t.size(0), t.size(1), 1});
  return t.masked_fill(padded, 0.0);
}

torch::Tensor DscMixerImpl::kernels_of(const torch::Tensor& x, const torch::Tensor& q) {
  // Span-aware keys (ConvBERT §3.2): a depth-wise separable convolution over the sequence.
  const auto span_keys = pointwise->forward(depthwise->forward(x.transpose(1, 2)).transpose(1, 2));  // [B, N, C]
  const auto logits = kernel_proj->forward(q * span_keys);                                           // [B, N, h k]
  return torch::softmax(logits.view({x.size(0), x.size(1), options_.heads(), options_.kernel()}), -1);
}

torch::Tensor DscMixerImpl::kernels(const torch::Tensor& x_in, const MixerContext& ctx) {
  const auto x = valid_only(x_in, ctx);
  return kernels_of(x, qv->forward(x).chunk(2, -1)[0]);
}

torch::Tensor DscMixerImpl::forward(const torch::Tensor& x_in, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, kKey, ": no causal form (the kernel reaches (kernel - 1) / 2 tokens ahead)");
  TORCH_CHECK(x_in.dim() == 3, kKey, ": expected x [B, N, C], got ", x_in.sizes());
  const auto b = x_in.size(0), n = x_in.size(1), c = x_in.size(2);
  const auto h = options_.heads(), k = options_.kernel(), p = k / 2;
  const auto x = valid_only(x_in, ctx);
  const auto parts = qv->forward(x).chunk(2, -1);
  const auto kernel = kernels_of(x, parts[0]);  // [B, N, h, k]
  // Light-weight convolution with the dynamic kernels: windows v_{i-p .. i+p}, zeros outside.
  const auto v = valid_only(parts[1], ctx);
  const auto windows = torch::constant_pad_nd(v, {0, 0, p, p}).unfold(1, k, 1);              // [B, N, C, k]
  const auto o = torch::matmul(windows.reshape({b, n, h, c / h, k}), kernel.unsqueeze(-1));  // [B, N, h, d, 1]
  return proj->forward(o.reshape({b, n, c}));
}

namespace {

const OptionsSchema<DscMixerOptions>& dsc_schema() {
  static const auto schema = [] {
    OptionsSchema<DscMixerOptions> s;
    BLOCKLAB_OPTION(s, kernel, "taps k of the dynamic convolution, odd (default 9; FlexiBERT uses 5 or 9)").min = 1;
    BLOCKLAB_OPTION(s, heads, "heads h, each with its own dynamic kernel; must divide the width (default 4)").min = 1;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(DscMixerImpl::kKey)
                      .summary("dynamic span-based convolution (ConvBERT; FlexiBERT's DSC): per token and head a "
                               "softmax kernel over k taps from q ⊙ SepConv(x), convolving the values")
                      .paper("ConvBERT: Improving BERT with Span-based Dynamic Convolution (Jiang et al., 2020), "
                             "arXiv:2008.02496; FlexiBERT (Tuli et al., 2023), arXiv:2205.11656")
                      .equation("kernel_i = softmax_taps(W_f (q_i ⊙ SepConv(x)_i)) per head; o_i = sum_j "
                                "kernel_i[j] v_{i+j-(k-1)/2}; out = Concat_h(o) W_O")
                      .schema(dsc_schema().schema())
                      .example("{kernel: 5, heads: 2}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto o = bind_options(dsc_schema(), params);
                    if (o.kernel() % 2 == 0)
                      config_fail(params, "kernel",
                                  "mixer/dsc: kernel must be odd (centred taps), got " + std::to_string(o.kernel()),
                                  {"kernel: " + std::to_string(o.kernel() + 1), "kernel: 5", "kernel: 9"});
                    check_heads(args.dim, o.heads(), params);
                    return std::make_shared<DscMixerImpl>(args.dim, o);
                  });

}  // namespace
}  // namespace blocklab
