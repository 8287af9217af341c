#include "blocks/attention/rcmha.h"

#include <cmath>

#include "blocks/common/relative_positions.h"

namespace blocklab {

namespace {

// Transformer-XL's sinusoids of the distances p [R] (float): [R, width], the sin half then the
// cos half (its PositionalEmbedding), w_k = 10000^(-2k/width); an odd width drops the last cosine.
torch::Tensor rcmha_sinusoid(const torch::Tensor& distances, std::int64_t width) {
  const auto half = (width + 1) / 2;
  const auto k = torch::arange(half, distances.options());
  const auto inv_freq = torch::pow(10000.0, k * (-2.0 / static_cast<double>(width)));
  const auto angles = distances.unsqueeze(1) * inv_freq.unsqueeze(0);  // [R, half]
  return torch::cat({angles.sin(), angles.cos()}, 1).narrow(1, 0, width);
}

// A causal depth-wise convolution along the tokens of z [B, h, N, d] with kernels w [g, d, K]
// and bias b [g, d] (or undefined), g = h or a divisor of h (grouped key/value heads: kernel g
// serves heads [g h/g', (g+1) h/g')): out_i = b + sum_t w_t ⊙ z_{i-(K-1)+t}, z before 0 is 0.
torch::Tensor rcmha_causal_dconv(const torch::Tensor& z, const torch::Tensor& w, const torch::Tensor& b) {
  const auto heads = z.size(1), n = z.size(2), d = z.size(3), groups = w.size(0), taps = w.size(2);
  const auto per_head = [&](const torch::Tensor& t) {  // [g, d, ...] -> [h, d, ...]
    if (groups == heads) return t;
    auto shape = t.sizes().vec();
    shape.insert(shape.begin() + 1, heads / groups);
    auto expanded = t.unsqueeze(1).expand(shape);
    shape.erase(shape.begin() + 1);
    shape[0] = heads;
    return expanded.reshape(shape);
  };
  const auto kernel = per_head(w.to(z.dtype()));
  const auto padded = torch::constant_pad_nd(z, {0, 0, taps - 1, 0});  // [B, h, N + K - 1, d]
  auto out = padded.narrow(2, taps - 1, n) * kernel.select(2, taps - 1).view({1, heads, 1, d});
  for (std::int64_t t = 0; t + 1 < taps; ++t)
    out = out + padded.narrow(2, t, n) * kernel.select(2, t).view({1, heads, 1, d});
  if (b.defined()) out = out + per_head(b.to(z.dtype())).view({1, heads, 1, d});
  return out;
}

}  // namespace

RcmhaImpl::RcmhaImpl(std::int64_t dim, const RcmhaOptions& options)
    : RcmhaImpl(dim, options, multi_head_config(options)) {}

RcmhaImpl::RcmhaImpl(std::int64_t dim, const RcmhaOptions& options, const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config),
      options_(options),
      kv_heads_(config.projection.kv_heads > 0 ? config.projection.kv_heads : heads()) {
  const auto taps = options.conv_kernel();
  TORCH_CHECK(taps >= 1, kKey, ": conv_kernel must be >= 1, got ", taps);
  const bool identity = options.conv_init() == "identity";
  TORCH_CHECK(identity || options.conv_init() == "default", kKey, ": conv_init must be default or identity, got ",
              options.conv_init());
  const auto d = head_dim();
  // PyTorch's Conv1d init for a depth-wise kernel (fan_in = K): U(-1/sqrt(K), 1/sqrt(K)), bias alike.
  const double bound = 1.0 / std::sqrt(static_cast<double>(taps));
  const auto kernel = [&](std::int64_t groups) {
    if (!identity) return torch::empty({groups, d, taps}).uniform_(-bound, bound);
    auto w = torch::zeros({groups, d, taps});
    w.select(2, taps - 1).fill_(1.0);  // the current token's tap
    return w;
  };
  const auto bias = [&](std::int64_t groups) {
    return identity ? torch::zeros({groups, d}) : torch::empty({groups, d}).uniform_(-bound, bound);
  };
  q_conv = register_parameter("q_conv", kernel(heads()));
  k_conv = register_parameter("k_conv", kernel(kv_heads_));
  v_conv = register_parameter("v_conv", kernel(kv_heads_));
  if (options.conv_bias()) {
    q_conv_bias = register_parameter("q_conv_bias", bias(heads()));
    k_conv_bias = register_parameter("k_conv_bias", bias(kv_heads_));
    v_conv_bias = register_parameter("v_conv_bias", bias(kv_heads_));
  }
  rel_proj = register_module("rel_proj", torch::nn::Linear(torch::nn::LinearOptions(dim, heads() * d).bias(false)));
  rel_bias_u = register_parameter("rel_bias_u", torch::zeros({heads(), d}));
  rel_bias_v = register_parameter("rel_bias_v", torch::zeros({heads(), d}));
}

std::vector<std::string> RcmhaImpl::no_weight_decay() const {
  std::vector<std::string> names{"rel_bias_u", "rel_bias_v"};
  if (options_.conv_bias()) names.insert(names.end(), {"q_conv_bias", "k_conv_bias", "v_conv_bias"});
  return names;
}

std::array<torch::Tensor, 3> RcmhaImpl::convolve(const torch::Tensor& q, const torch::Tensor& k,
                                                 const torch::Tensor& v) const {
  // Primer §3 (MDHA): a depth-wise convolution along the sequence after each projection.
  return {rcmha_causal_dconv(q, q_conv, q_conv_bias), rcmha_causal_dconv(k, k_conv, k_conv_bias),
          rcmha_causal_dconv(v, v_conv, v_conv_bias)};
}

torch::Tensor RcmhaImpl::relative_keys(std::int64_t tokens, bool causal, const torch::TensorOptions& options) const {
  // Row r <-> offset j - i = r - (L-1), i.e. distance i - j = (L-1) - r: L-1 down to -(L-1)
  // (Transformer-XL's pos_seq L-1 .. 0 when causal).
  const auto rows = causal ? tokens : 2 * tokens - 1;
  const auto distances = torch::arange(tokens - 1, tokens - 1 - rows, -1, options);
  const auto r = rcmha_sinusoid(distances, dim());                                // [R, C]
  const auto projected = torch::linear(r, rel_proj->weight.to(options.dtype()));  // [R, h d]
  return projected.view({rows, heads(), head_dim()}).transpose(0, 1);             // [h, R, d]
}

torch::Tensor RcmhaImpl::relative_logits(const torch::Tensor& q, bool causal) const {
  // Transformer-XL terms (b) + (d): (q_i + v_r) . W_R r per offset, [B, h, L, R].
  const auto qv = q + rel_bias_v.to(q.dtype()).view({1, heads(), 1, head_dim()});
  const auto rel = torch::matmul(qv, relative_keys(q.size(-2), causal, q.options()).transpose(-2, -1));
  return causal ? skew_causal(rel) : skew_bidirectional(rel);
}

torch::Tensor RcmhaImpl::scores(const torch::Tensor& q, const torch::Tensor& k, const MixerContext& ctx) {
  // Transformer-XL §3.3: (q_i + u) . k_j (terms (a) + (c)) plus the relative terms, scaled once.
  const auto qu = q + rel_bias_u.to(q.dtype()).view({1, heads(), 1, head_dim()});
  return (torch::matmul(qu, k.transpose(-2, -1)) + relative_logits(q, ctx.causal)) * scale();
}

torch::Tensor RcmhaImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == dim(), kKey, ": expected x [B, N, ", dim(), "], got ", x.sizes());
  const auto [q, k, v] = project(x);
  const auto [qc, kc, vc] = convolve(q, k, v);
  return merge(attend(qc, kc, vc, ctx), x);
}

const OptionsSchema<RcmhaOptions>& rcmha_schema() {
  static const auto schema = [] {
    using O = RcmhaOptions;
    OptionsSchema<O> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, conv_kernel, "taps K of the causal depth-wise convolutions on q, k and v (default 3, Primer's)")
        .min = 1;
    BLOCKLAB_OPTION(s, conv_bias, "a bias per convolved channel (default true, as the authors' Conv1d)");
    s.choice(
        "conv_init", {"default", "identity"},
        "convolution init: default (PyTorch's Conv1d init, U(-1/sqrt(K), 1/sqrt(K)), as the authors' code) or "
        "identity (current-token tap 1, the rest and the bias 0: starts as Transformer-XL attention) (default default)",
        [](O& o, const std::string& v) { o.conv_init(v); }, [](const O& o) { return o.conv_init(); });
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mixer_registry(),
    BLOCKLAB_ENTRY(RcmhaImpl::kKey)
        .summary("relative convolutional multi-head attention: causal depth-wise convs on q, k, v (Primer's MDHA), "
                 "then Transformer-XL relative logits")
        .paper("RCMHA: Relative Convolutional Multi-Head Attention for Natural Language Modelling (Sugiharto et al., "
               "2023), arXiv:2308.03429")
        .equation("softmax([(q~_i + u) . k~_j + (q~_i + v_r) . W_R r_{i-j}] / sqrt(d)) v~, "
                  "z~ = causal depth-wise conv_K(z) along the tokens, r sinusoidal")
        .schema(rcmha_schema().schema())
        .example("{heads: 2}"),
    [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
      return make_attention<RcmhaImpl>(rcmha_schema(), params, args);
    });

}  // namespace
}  // namespace blocklab
