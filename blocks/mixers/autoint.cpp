#include "blocks/mixers/autoint.h"

#include "blocks/common/multi_head.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

std::int64_t autoint_head_dim(std::int64_t dim, std::int64_t heads) {
  TORCH_CHECK(heads >= 1 && dim % heads == 0, AutoIntMixerImpl::kKey, ": heads ", heads, " must divide the width ",
              dim);
  return dim / heads;
}

bool autoint_relu(const std::string& act) {
  TORCH_CHECK(act == "relu" || act == "none", AutoIntMixerImpl::kKey, ": qkv_act must be relu or none, got ", act);
  return act == "relu";
}

}  // namespace

AutoIntMixerImpl::AutoIntMixerImpl(std::int64_t dim, const AutoIntOptions& o)
    : DenseCore(*this, kKey, autoint_head_dim(dim, o.heads()), o.attn_drop()),
      dim_(dim),
      relu_(autoint_relu(o.qkv_act())),
      // One Linear C -> 3C with biases, [q | k | v], h heads of width C / h (the code's dense layers).
      projection_(*this, dim, ProjectionConfig{o.heads(), 0, 0, /*qkv_bias=*/true, /*qk_norm=*/false, "none"}),
      qkv(projection_.qkv) {
  res = register_module("res", torch::nn::Linear(dim, dim));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-8)));
}

std::array<torch::Tensor, 3> AutoIntMixerImpl::project(const torch::Tensor& x) {
  auto qkv_heads = projection_.split(x);
  if (relu_)
    for (auto& t : qkv_heads) t = torch::relu(t);  // Q, K, V = ReLU(E W + b), the code's dense layers
  return qkv_heads;
}

torch::Tensor AutoIntMixerImpl::merge(const torch::Tensor& o, const torch::Tensor& x) {
  const auto heads = o.transpose(1, 2).reshape({o.size(0), o.size(2), dim_});  // Concat_h(A^h V_h), no W_O
  return norm->forward(torch::relu(heads + torch::relu(res->forward(x))));
}

torch::Tensor AutoIntMixerImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == dim_, kKey, ": expected x [B, N, ", dim_, "], got ", x.sizes());
  const auto qkv_heads = project(x);
  return merge(attend(qkv_heads[0], qkv_heads[1], qkv_heads[2], ctx), x);
}

const OptionsSchema<AutoIntOptions>& autoint_schema() {
  static const auto schema = [] {
    using O = AutoIntOptions;
    OptionsSchema<O> s;
    BLOCKLAB_OPTION(s, heads, "attention heads h (default 2, the official code's); dim must be divisible by h").min = 1;
    s.choice(
        "qkv_act", {"relu", "none"},
        "activation on Q, K and V: relu (default, the official code) or none (the paper's linear projections)",
        [](O& o, const std::string& v) { o.qkv_act(v); }, [](const O& o) { return o.qkv_act(); });
    rate(BLOCKLAB_OPTION(s, attn_drop, "dropout on the attention weights (default 0)"));
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(AutoIntMixerImpl::kKey)
                      .summary("AutoInt's interacting layer: multi-head attention over fields with ReLU'd Q, K, V, "
                               "a ReLU'd projected residual, ReLU and LayerNorm")
                      .paper("AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks "
                             "(Song et al., 2019), arXiv:1810.11921")
                      .equation("Q, K, V = ReLU(E W + b); O = ReLU(Concat_h(softmax(Q_h K_h^T / sqrt(d)) V_h) + "
                                "ReLU(E W_res + b_res)); out = LayerNorm(O)")
                      .schema(autoint_schema().schema())
                      .example("{heads: 2}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto o = bind_options(autoint_schema(), params);
                    check_heads(args.dim, o.heads(), params);
                    return std::make_shared<AutoIntMixerImpl>(args.dim, o);
                  });

}  // namespace
}  // namespace blocklab
