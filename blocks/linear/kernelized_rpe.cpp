#include "blocks/linear/kernelized_rpe.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "blocks/attention/parts/dense_core.h"
#include "blocks/common/heads_layout.h"
#include "blocks/common/long_conv.h"
#include "blocks/common/multi_head.h"
#include "blocks/common/relative_positions.h"

namespace blocklab {

namespace {

// Checked before the projection is built (it divides dim by heads).
ProjectionConfig projection_config(std::int64_t dim, const KernelizedRpeOptions& o) {
  TORCH_CHECK(o.heads() >= 1 && dim % o.heads() == 0, KernelizedRpeImpl::kKey, ": heads ", o.heads(),
              " must divide dim ", dim);
  ProjectionConfig c;
  c.heads = o.heads();
  c.qkv_bias = o.qkv_bias();
  return c;
}

}  // namespace

torch::Tensor block_orthogonal_features(std::int64_t rows, std::int64_t dim) {
  TORCH_CHECK(rows >= 1 && dim >= 1, "block_orthogonal_features: need rows, dim >= 1, got ", rows, ", ", dim);
  std::vector<torch::Tensor> blocks;
  for (std::int64_t start = 0; start < rows; start += dim) {
    const auto [q, r] = torch::linalg_qr(torch::randn({dim, dim}, torch::kFloat64));
    const auto haar = q * torch::sign(r.diagonal()).unsqueeze(0);          // signs of the QR fixed: Q is Haar
    blocks.push_back(haar.t().narrow(0, 0, std::min(dim, rows - start)));  // orthonormal rows
  }
  const auto norms = torch::randn({rows, dim}, torch::kFloat64).norm(2, {-1}, true);  // chi_d
  return (torch::cat(blocks) * norms).to(torch::typeMetaToScalarType(torch::get_default_dtype()));
}

torch::Tensor toeplitz_product(const torch::Tensor& c, const torch::Tensor& u) {
  // y_i = sum_j c_{j-i} u_j = (g * u)_{i+n-1} with g_t = c_{n-1-t} (c reversed): the linear
  // convolution read at n-1..2n-2.
  const auto n = u.size(2);
  return fft_conv(u, c.flip({-1}).unsqueeze(0).unsqueeze(-1), 2, n - 1, n);  // c: [h, 2n-1] -> [1, h, 2n-1, 1]
}

bool dense_is_cheaper(std::int64_t n, std::int64_t features, std::int64_t value_dim) {
  const double size = static_cast<double>(power_of_two_at_least(2 * n - 1));
  const double fft = 3.0 * size * std::log2(size) * features * (value_dim + 1);  // 2 rfft + 1 irfft
  return static_cast<double>(n) * n * (features + value_dim + 1) <= fft;
}

torch::Tensor kernelized_rpe_attention(const torch::Tensor& phi_q, const torch::Tensor& phi_k, const torch::Tensor& v,
                                       const torch::Tensor& c, double eps) {
  const auto b = v.size(0), h = v.size(1), n = v.size(2), d = v.size(3), m = phi_k.size(3);
  // [V | 1]: the last channel carries the denominator through the same Toeplitz products.
  const auto values = torch::cat({v, torch::ones_like(v.narrow(-1, 0, 1))}, -1);
  const auto u = (phi_k.unsqueeze(-1) * values.unsqueeze(-2)).reshape({b, h, n, m * (d + 1)});
  const auto y = toeplitz_product(c, u).reshape({b, h, n, m, d + 1});  // [C (phi(K)_{:,l} ⊙ [V | 1])]_i
  const auto out = phi_q.unsqueeze(-2).matmul(y).squeeze(-2);          // sum_l phi(q_i)_l [...]_i
  return out.narrow(-1, 0, d) / out.narrow(-1, d, 1).clamp_min(eps);
}

KernelizedRpeImpl::KernelizedRpeImpl(std::int64_t dim, const KernelizedRpeOptions& options)
    : dim_(dim),
      max_length_(options.max_length()),
      qk_normalize_(options.qk_normalize()),
      eps_(options.eps()),
      projection_(*this, dim, projection_config(dim, options)),
      output_(*this, dim, dim, /*gate=*/false, options.proj_drop()) {
  TORCH_CHECK(max_length_ >= 1, kKey, ": max_length must be positive, got ", max_length_);
  TORCH_CHECK(options.features() >= 1, kKey, ": features must be positive, got ", options.features());
  const auto heads = options.heads();
  random_features =
      register_buffer("random_features", block_orthogonal_features(options.features(), projection_.head_dim()));
  rpe_bias = register_parameter("rpe_bias", torch::zeros({heads, 2 * max_length_ - 1}));
  if (qk_normalize_) qk_scale = register_parameter("qk_scale", torch::ones({heads}));
}

MixerCapabilities KernelizedRpeImpl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;
  c.weights = MixerCapabilities::Weights::normalised;
  c.variable_lengths = true;
  return c;
}

torch::Tensor KernelizedRpeImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == dim_, kKey, ": expected x [B, N, ", dim_, "], got ", x.sizes());
  const auto [q, k, v] = heads_contiguous(projection_.split(x));
  return output_.merge(mix(q, k, v, ctx), x, is_training());
}

void KernelizedRpeImpl::check_length(std::int64_t tokens) const {
  if (tokens > max_length_)
    throw std::invalid_argument(std::string(kKey) + ": " + std::to_string(tokens) +
                                " tokens exceed max_length = " + std::to_string(max_length_) +
                                " (the relative bias has offsets up to +-(max_length - 1)); set max_length (e.g. "
                                "model.mixer.max_length) to the longest sequence");
}

torch::Tensor KernelizedRpeImpl::scaled(const torch::Tensor& x) const {
  if (!qk_normalize_) return x / std::pow(static_cast<double>(x.size(-1)), 0.25);  // x / d^(1/4)
  // §3.3: unit-norm queries and keys, times a learnable per-head scale rho_h.
  const auto unit = x / x.norm(2, {-1}, true).clamp_min(1e-12);
  return unit * qk_scale.to(x.dtype()).view({1, -1, 1, 1});
}

torch::Tensor KernelizedRpeImpl::features(const torch::Tensor& x_scaled) const {
  const auto m = random_features.size(0);
  const auto exponent = x_scaled.matmul(random_features.to(x_scaled.dtype()).t()) -
                        x_scaled.square().sum(-1, true) / 2;  // W x~ - |x~|^2 / 2
  return exponent.exp() / std::sqrt(static_cast<double>(m));
}

torch::Tensor KernelizedRpeImpl::query_features(const torch::Tensor& q_scaled) const {
  const auto m = random_features.size(0);
  const auto exponent = q_scaled.matmul(random_features.to(q_scaled.dtype()).t());  // |q~|^2 / 2 cancels too
  return (exponent - exponent.amax(-1, true).detach()).exp() / std::sqrt(static_cast<double>(m));
}

torch::Tensor KernelizedRpeImpl::toeplitz_coefficients(std::int64_t tokens, bool causal) const {
  check_length(tokens);
  auto c = rpe_bias.narrow(1, max_length_ - tokens, 2 * tokens - 1).exp();  // c_r = exp(b_r), r = 1-n..n-1
  if (!causal) return c;
  const auto offsets = torch::arange(-(tokens - 1), tokens, torch::TensorOptions(torch::kLong).device(c.device()));
  return c * (offsets <= 0).to(c.dtype());  // lower-triangular C: c_r = 0 for r > 0
}

torch::Tensor KernelizedRpeImpl::attention_map(const torch::Tensor& phi_q, const torch::Tensor& phi_k,
                                               const torch::Tensor& c) const {
  const auto n = phi_q.size(2);
  const auto toeplitz = c.index_select(1, relative_index(n, n, c.device()).flatten()).view({c.size(0), n, n});
  const auto s = phi_q.matmul(phi_k.transpose(-1, -2)) * toeplitz;  // c_{j-i} phi(q_i).phi(k_j)
  return s / s.sum(-1, true).clamp_min(eps_);
}

torch::Tensor KernelizedRpeImpl::mix(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     const MixerContext& ctx) {
  const auto n = q.size(2);
  const auto c = toeplitz_coefficients(n, ctx.causal).to(q.dtype());
  const auto phi_q = query_features(scaled(q));
  auto phi_k = features(scaled(k));
  auto values = v;
  if (ctx.lengths.defined()) {  // padded keys leave num and den: [B, 1, N, 1]
    const auto padded = padding_mask(ctx.lengths, n, q.device()).transpose(-1, -2);
    phi_k = phi_k.masked_fill(padded, 0.0);
    values = values.masked_fill(padded, 0.0);
  }
  // The same sum two ways: the dense map c_{j-i} phi(q_i).phi(k_j) at O(n^2 (m + d)), or the
  // FFT Toeplitz products at O(n log n m d); the dense map is cheaper below about a thousand
  // tokens (49 patches: 15x fewer flops; 6.5 -> 213 images/s in the fmnist_linear sweep).
  const bool dense = dense_is_cheaper(n, phi_q.size(-1), v.size(-1));
  if (!dense && !capturing(ctx.probe)) return kernelized_rpe_attention(phi_q, phi_k, values, c, eps_);
  const auto map = attention_map(phi_q, phi_k, c);
  if (capturing(ctx.probe)) ctx.probe->record(ctx.layer, kKey, map);
  return dense ? map.matmul(values) : kernelized_rpe_attention(phi_q, phi_k, values, c, eps_);
}

const OptionsSchema<KernelizedRpeOptions>& kernelized_rpe_schema() {
  static const auto schema = [] {
    OptionsSchema<KernelizedRpeOptions> s;
    BLOCKLAB_OPTION(s, heads, "attention heads h (default 4); dim must be divisible by h").min = 1;
    BLOCKLAB_OPTION(s, features, "m positive random features of the FAVOR+ kernel estimate (default 64)").min = 1;
    BLOCKLAB_OPTION(s, max_length,
                    "n_max: the relative bias has 2 n_max - 1 offsets per head and sequences may not be longer "
                    "(default 0 = the model's longest sequence)")
        .min = 0;
    BLOCKLAB_OPTION(s, qk_normalize,
                    "l2-normalise q and k per head, times a learnable scale per head (paper §3.3; default true); "
                    "false: x / d^(1/4)");
    BLOCKLAB_OPTION(s, qkv_bias, "bias on the query/key/value projection (default true)");
    rate(BLOCKLAB_OPTION(s, proj_drop, "dropout after the output projection (default 0)"));
    BLOCKLAB_OPTION(s, eps, "lower bound of the denominator, for rows without a valid key (default 1e-30)").min = 0.0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mixer_registry(),
    BLOCKLAB_ENTRY(KernelizedRpeImpl::kKey)
        .summary("kernelized attention with relative positional encoding: FAVOR+ features, Toeplitz RPE by FFT")
        .paper("Stable, Fast and Accurate: Kernelized Attention with Relative Positional Encoding (Luo et al., 2021), "
               "arXiv:2106.12566")
        .equation(
            "z_i = sum_l phi(q_i)_l [C (phi(K)_l ⊙ V)]_i / sum_l phi(q_i)_l [C phi(K)_l]_i, C[i,j] = exp(b_{j-i}), "
            "phi(x) = m^-1/2 exp(W x - |x|^2/2): softmax(q.k/sqrt(d) + b_{j-i}) attention in O(m d n log n)")
        .schema(kernelized_rpe_schema().schema())
        .example("{heads: 2, features: 16}"),
    [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
      auto options = bind_options(kernelized_rpe_schema(), params);
      check_heads(args.dim, options.heads(), params);
      if (options.max_length() == 0)
        options.max_length(longest_sequence(args, params, "max_length", 1,
                                            "linear/kernelized-rpe sizes its relative bias by the longest sequence, "
                                            "and the enclosing model gave none",
                                            "set max_length, e.g. max_length: 512"));
      return std::make_shared<KernelizedRpeImpl>(args.dim, options);
    });

}  // namespace
}  // namespace blocklab
