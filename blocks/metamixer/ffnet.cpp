#include "blocks/metamixer/ffnet.h"

#include <cmath>

#include "blocks/common/grid_mixer.h"
#include "blocks/common/options.h"

namespace blocklab {

RepDepthwiseImpl::RepDepthwiseImpl(std::int64_t channels, std::int64_t kernel) {
  large = register_module("large", DepthwiseConvBN(channels, kernel));
  small = register_module("small", DepthwiseConvBN(channels, kernel / 2));
}

torch::Tensor RepDepthwiseImpl::forward(const torch::Tensor& x) { return large->forward(x) + small->forward(x); }

namespace {

// A depth-wise k x k operation as FFNet builds it: RepVGG's pair at 7, else a conv with bias.
torch::nn::AnyModule ffnet_depthwise(std::int64_t channels, std::int64_t kernel) {
  if (kernel == 7) return torch::nn::AnyModule(RepDepthwise(channels, kernel));
  return torch::nn::AnyModule(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, kernel).padding(kernel / 2).groups(channels)));
}

torch::nn::AnyModule ffnet_pointwise(std::int64_t in, std::int64_t out) {
  return torch::nn::AnyModule(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)));
}

}  // namespace

FFNetMixerImpl::FFNetMixerImpl(std::int64_t dim, const FFNetMixerOptions& o) : gelu_(o.activation() == "gelu") {
  if (o.query() == "conv-bn") query = register_module("query", PointwiseConvBN(dim, dim));
  const auto hidden = o.key() == "pointwise" ? static_cast<std::int64_t>(std::lround(o.ratio() * dim)) : dim;
  key = o.key() == "pointwise" ? ffnet_pointwise(dim, hidden) : ffnet_depthwise(dim, o.key_kernel());
  value = o.value() == "pointwise" ? ffnet_pointwise(hidden, dim) : ffnet_depthwise(dim, o.value_kernel());
  register_module("key", key.ptr());
  register_module("value", value.ptr());
}

MixerCapabilities FFNetMixerImpl::capabilities() const {
  MixerCapabilities c;
  c.needs_grid = true;
  return c;
}

torch::Tensor FFNetMixerImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  auto image = grid_body_image(x, ctx, kKey);
  if (query) image = grid_tokens_to_image(query->forward(image_to_grid_tokens(image)), ctx.grid_height, ctx.grid_width);
  const auto k = key.forward(image);
  return grid_mixer_output(value.forward(gelu_ ? torch::gelu(k) : torch::relu(k)), ctx.prefix_tokens);
}

namespace {

const OptionsSchema<FFNetMixerOptions>& ffnet_schema() {
  static const auto schema = [] {
    using O = FFNetMixerOptions;
    OptionsSchema<O> s;
    s.choice(
        "query", {"conv-bn", "identity"}, "the query operation: a 1x1 Conv-BN (FFNet; default) or the identity",
        [](O& o, const std::string& v) { o.query(v); }, [](const O& o) { return o.query(); });
    s.choice(
        "key", {"depthwise", "pointwise"},
        "the key operation: a depth-wise key_kernel^2 convolution (FFNet; default) or a 1x1 convolution to "
        "ratio x C channels (the FFN's W_1)",
        [](O& o, const std::string& v) { o.key(v); }, [](const O& o) { return o.key(); });
    s.choice(
        "value", {"depthwise", "pointwise"},
        "the value operation: a depth-wise value_kernel^2 convolution (FFNet; default) or a 1x1 convolution back "
        "to C (the FFN's W_2)",
        [](O& o, const std::string& v) { o.value(v); }, [](const O& o) { return o.value(); });
    BLOCKLAB_OPTION(s, key_kernel, "k1, odd; 7 is RepVGG's 7x7 + 3x3 pair (FFNet: 3 early, 7 late; default 7)").min = 1;
    BLOCKLAB_OPTION(s, value_kernel, "k2, odd; 7 is RepVGG's pair (default 7)").min = 1;
    BLOCKLAB_OPTION(s, ratio, "hidden width / C of a pointwise key (default 1)").min = 0.0;
    s.choice(
        "activation", {"gelu", "relu"}, "the activation between key and value (FFNet: gelu; default gelu)",
        [](O& o, const std::string& v) { o.activation(v); }, [](const O& o) { return o.activation(); });
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(FFNetMixerImpl::kKey)
                      .summary("FFNet's FFNified token mixer (MetaMixer): 1x1 Conv-BN query, depth-wise key, GELU, "
                               "depth-wise value; sub-operations by option (identity/pointwise: an FFN)")
                      .paper("FFNet: MetaMixer-based Efficient Convolutional Mixer Design (Yun, Lee & Ro, 2024), "
                             "arXiv:2406.02021")
                      .equation("out = V(act(K(Q(x)))): Q = Conv1x1-BN, K = DW_k1, act = GELU, V = DW_k2")
                      .schema(ffnet_schema().schema())
                      .example("{key_kernel: 3, value_kernel: 7}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto o = bind_options(ffnet_schema(), params);
                    const auto odd = [&](const char* name, std::int64_t kernel) {
                      if (kernel % 2 == 0)
                        config_fail(
                            params, name,
                            std::string("metamixer/ffnet: ") + name + " must be odd, got " + std::to_string(kernel));
                    };
                    odd("key_kernel", o.key_kernel());
                    odd("value_kernel", o.value_kernel());
                    if (o.key() == "pointwise" && o.value() == "depthwise" &&
                        std::lround(o.ratio() * args.dim) != args.dim)
                      config_fail(params, "ratio",
                                  "metamixer/ffnet: a depth-wise value keeps the width, so a pointwise key needs "
                                  "ratio 1, got " +
                                      std::to_string(o.ratio()),
                                  {"use value: pointwise for an FFN-like mixer, or ratio: 1"});
                    if (o.key() == "pointwise" && std::lround(o.ratio() * args.dim) < 1)
                      config_fail(params, "ratio", "metamixer/ffnet: ratio x C must be at least 1");
                    return std::make_shared<FFNetMixerImpl>(args.dim, o);
                  });

}  // namespace
}  // namespace blocklab
