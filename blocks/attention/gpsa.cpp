#include "blocks/attention/gpsa.h"

#include <cmath>

#include "blocks/common/init.h"
#include "blocks/common/relative_positions.h"

namespace blocklab {

MixerCapabilities GpsaImpl::capabilities() const {
  auto c = MultiHeadAttentionImpl::capabilities();
  c.causal = false;            // positional attention spans the whole 2-D grid
  c.variable_lengths = false;  // and its padded cells
  return c;
}

GpsaImpl::GpsaImpl(std::int64_t dim, const GpsaOptions& options) : GpsaImpl(dim, options, multi_head_config(options)) {}

GpsaImpl::GpsaImpl(std::int64_t dim, const GpsaOptions& options, const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options) {
  const auto h = heads();
  pos_weight = register_parameter("pos_weight", torch::empty({h, 3}));
  pos_bias = register_parameter("pos_bias", torch::zeros({h}));
  gating = register_parameter("gating", torch::full({h}, options.gate_init()));
  // ConViT's GPSA applies timm's init to its own Linears (qkv, proj, pos_proj), then the local init.
  init_vit_weights(*this);
  trunc_normal_(pos_weight, 0.02);
  if (!options.local_init()) return;
  torch::NoGradGuard no_grad;
  // W_v = I (when the values are as wide as the input: kv_heads d = dim).
  const auto rows = qkv->weight.size(0), value_rows = (rows - heads() * head_dim()) / 2;
  if (value_rows == dim) qkv->weight.narrow(0, rows - dim, dim).copy_(torch::eye(dim));
  const auto s = static_cast<std::int64_t>(std::floor(std::sqrt(static_cast<double>(h)) + 1e-9));
  const double c = s % 2 == 0 ? (static_cast<double>(s) - 1.0) / 2.0 : static_cast<double>(s / 2);
  for (std::int64_t h1 = 0; h1 < s; ++h1)
    for (std::int64_t h2 = 0; h2 < s; ++h2) {
      const auto p = h1 + s * h2;
      pos_weight[p][0] = 2.0 * (static_cast<double>(h2) - c);  // dx
      pos_weight[p][1] = 2.0 * (static_cast<double>(h1) - c);  // dy
      pos_weight[p][2] = -1.0;                                 // dx^2 + dy^2
    }
  pos_weight.mul_(options.locality_strength());
}

torch::Tensor GpsaImpl::positional_weights(std::int64_t tokens, const MixerContext& ctx) const {
  const auto prefix = ctx.prefix_tokens, grid = tokens - prefix;
  TORCH_CHECK(prefix >= 0 && grid >= 1, kKey, ": ", tokens, " tokens with ", prefix, " prefix tokens leave no grid");
  std::int64_t height = ctx.grid_height, width = ctx.grid_width;
  if (height == 0 && width == 0) {
    height = 1;  // a plain sequence: a 1 x N grid
    width = grid;
  }
  TORCH_CHECK(height * width == grid, kKey, ": the context's grid ", ctx.grid_height, "x", ctx.grid_width,
              " does not match ", grid, " grid tokens (", tokens, " tokens, ", prefix, " prefix)");
  // r_ij . w_h + b_h: [M, M, 3] @ [3, h] -> [M, M, h] -> [h, M, M]; softmax over the grid keys.
  const auto r = grid_offsets(height, width, pos_weight.options().requires_grad(false));
  const auto logits = (torch::matmul(r, pos_weight.t()) + pos_bias).permute({2, 0, 1});
  const auto p = torch::softmax(logits, -1);
  return prefix ? torch::constant_pad_nd(p, {prefix, 0, prefix, 0}, 0.0) : p;
}

torch::Tensor GpsaImpl::normalise(const torch::Tensor& s, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, kKey, ": gated positional attention over a 2-D grid cannot be causal");
  const auto n = s.size(-1), prefix = ctx.prefix_tokens;
  const auto content = torch::softmax(s, -1);
  const auto positional = positional_weights(n, ctx).to(s.dtype());
  // sigma(lambda_h) per head on grid query rows; prefix query rows take content attention only.
  auto gate = torch::sigmoid(gating).to(s.dtype()).view({1, heads(), 1, 1}).expand({1, heads(), n, 1});
  if (prefix)
    gate = torch::cat({torch::zeros({1, heads(), prefix, 1}, gate.options()), gate.narrow(2, prefix, n - prefix)}, 2);
  const auto a = (1.0 - gate) * content + gate * positional;
  return a / a.sum(-1, true);  // renormalised as in the official code (rows already sum to 1)
}

const OptionsSchema<GpsaOptions>& gpsa_schema() {
  static const auto schema = [] {
    OptionsSchema<GpsaOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, local_init,
                    "convolution-like init: W_v = I and head p's positional attention peaked at its own offset "
                    "(default true)");
    BLOCKLAB_OPTION(s, locality_strength, "alpha of the local init: how sharply each head is peaked (default 1)").min =
        0.0;
    BLOCKLAB_OPTION(s, gate_init, "initial gate lambda_h; sigma(lambda) is the weight on position (default 1)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(GpsaImpl::kKey)
                      .summary("gated positional self-attention (ConViT): content and 2-D positional "
                               "softmaxes mixed by a learned gate per head")
                      .paper("ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases (d'Ascoli "
                             "et al., 2021), arXiv:2103.10697")
                      .equation("((1 - sigma(l_h)) softmax(Q K^T / sqrt(d)) + sigma(l_h) softmax(r_ij . w_h + b_h)) V, "
                                "r_ij = (dx, dy, dx^2 + dy^2)")
                      .schema(gpsa_schema().schema())
                      .example("{heads: 4}"),
                  [](const ConfigNode& params, const MixerArgs& args) {
                    return make_attention<GpsaImpl>(gpsa_schema(), params, args);
                  });

}  // namespace
}  // namespace blocklab
