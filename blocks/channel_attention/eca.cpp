#include "blocks/channel_attention/eca.h"

#include <cmath>

#include "blocks/common/options.h"

namespace blocklab {

std::int64_t eca_kernel_size(std::int64_t channels, std::int64_t gamma, std::int64_t b) {
  const auto t = static_cast<std::int64_t>(
      std::abs((std::log2(static_cast<double>(channels)) + static_cast<double>(b)) / static_cast<double>(gamma)));
  return t % 2 == 1 ? t : t + 1;
}

EcaImpl::EcaImpl(std::int64_t channels, const EcaOptions& o)
    : kernel_(o.kernel() > 0 ? o.kernel() : eca_kernel_size(channels, o.gamma(), o.b())) {
  TORCH_CHECK(kernel_ % 2 == 1, kKey, ": the kernel must be odd (the gates keep the channel count), got ", kernel_);
  // Conv1d's default init: uniform in +-1/sqrt(fan_in), fan_in = k.
  const double bound = 1.0 / std::sqrt(static_cast<double>(kernel_));
  weight = register_parameter("weight", torch::empty({o.shared() ? 1 : channels, kernel_}).uniform_(-bound, bound));
}

torch::Tensor EcaImpl::gates(const torch::Tensor& x) {
  const auto pad = (kernel_ - 1) / 2;
  const auto z = torch::constant_pad_nd(global_average(x), {pad, pad});  // [B, C + k - 1]
  const auto neighbours = z.unfold(1, kernel_, 1);                       // [B, C, k]: z_{c-p .. c+p}
  return torch::sigmoid((neighbours * weight).sum(-1));
}

torch::Tensor EcaImpl::forward(const torch::Tensor& x) { return scale_channels(x, gates(x)); }

namespace {

const OptionsSchema<EcaOptions>& eca_schema() {
  static const auto schema = [] {
    OptionsSchema<EcaOptions> s;
    BLOCKLAB_OPTION(s, kernel, "taps k, odd (default 0: psi(C) = |(log2 C + b) / gamma|_odd)").min = 0;
    BLOCKLAB_OPTION(s, gamma, "psi's gamma (paper: 2; default 2)").min = 1;
    BLOCKLAB_OPTION(s, b, "psi's b (paper: 1; default 1)");
    BLOCKLAB_OPTION(s, shared, "one kernel for all channels (ECA, default true) or one per channel (ECA-NS, false)");
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(channel_attention_registry(),
                  BLOCKLAB_ENTRY(EcaImpl::kKey)
                      .summary("efficient channel attention: a k-tap 1-D convolution across the pooled channels, "
                               "k adaptive to C (shared: false = ECA-NS)")
                      .paper("ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks (Wang et "
                             "al., 2020), arXiv:1910.03151")
                      .equation("out = x ⊙ sigmoid(conv1d_k(GAP(x))), k = |(log2 C + 1) / 2|_odd")
                      .schema(eca_schema().schema())
                      .example("{}"),
                  [](const ConfigNode& params, const ChannelAttentionArgs& args) -> ChannelAttention {
                    const auto options = bind_options(eca_schema(), params);
                    if (options.kernel() > 0 && options.kernel() % 2 == 0)
                      config_fail(params, "kernel",
                                  "channel/eca: kernel must be odd, got " + std::to_string(options.kernel()),
                                  {"use 0 for the adaptive size, or an odd number such as 3 or 5"});
                    return std::make_shared<EcaImpl>(args.channels, options);
                  });

}  // namespace
}  // namespace blocklab
