#include "blocks/conv/hyena_filter.h"

#include <cmath>

#include "blocks/common/long_conv.h"

namespace blocklab {

ImplicitFilterMlpImpl::ImplicitFilterMlpImpl(std::int64_t in_features, std::int64_t channels,
                                             const HyenaFilterOptions& o)
    : inner_(o.filter_layers()) {
  const auto width = o.filter_width();
  frequency = register_parameter("frequency", torch::full({width}, o.frequency()));
  layers = register_module("layers", torch::nn::ModuleList());
  layers->push_back(torch::nn::Linear(in_features, width));
  for (std::int64_t i = 0; i < inner_; ++i) layers->push_back(torch::nn::Linear(width, width));
  layers->push_back(torch::nn::Linear(torch::nn::LinearOptions(width, channels).bias(false)));
}

torch::Tensor ImplicitFilterMlpImpl::forward(const torch::Tensor& z) {
  auto h = z;
  for (std::int64_t i = 0; i <= inner_; ++i)  // Linear -> sin(a x), Algorithm 3's FFN
    h = torch::sin(frequency * layers[i]->as<torch::nn::Linear>()->forward(h));
  return layers[inner_ + 1]->as<torch::nn::Linear>()->forward(h);
}

torch::Tensor hyena_positional_features(std::int64_t max_tokens, std::int64_t emb_dim) {
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const auto bands = (emb_dim - 1) / 2;
  const auto t = torch::linspace(0.0, 1.0, max_tokens, f64).unsqueeze(1);  // [L, 1]
  const auto w = 2.0 * M_PI * torch::arange(max_tokens, f64).unsqueeze(1) / static_cast<double>(max_tokens);
  const auto f = torch::linspace(1e-4, static_cast<double>(bands - 1), bands, f64).unsqueeze(0);  // [1, bands]
  // Re and Im of exp(-i f w): cos(f w), -sin(f w).
  return torch::cat({t, torch::cos(f * w), -torch::sin(f * w)}, 1).to(torch::kFloat);
}

torch::Tensor hyena_decay_rates(std::int64_t channels, const HyenaFilterOptions& o) {
  const double target = std::log(o.decay_target());
  return torch::linspace(target / o.slow_decay(), target / o.fast_decay(), channels, torch::kFloat64)
      .abs()
      .to(torch::kFloat);
}

HyenaFilterImpl::HyenaFilterImpl(std::int64_t channels, std::int64_t max_tokens, const HyenaFilterOptions& o,
                                 std::int64_t mlps_count)
    : shift_(o.window_shift()) {
  TORCH_CHECK(max_tokens >= 1, "hyena filter: max_tokens must be >= 1, got ", max_tokens);
  positions = register_parameter("positions", hyena_positional_features(max_tokens, o.emb_dim()));
  time = register_buffer("time", torch::linspace(0.0, 1.0, max_tokens, torch::kFloat64).to(torch::kFloat));
  decay = register_buffer("decay", hyena_decay_rates(channels, o));
  for (std::int64_t i = 0; i < mlps_count; ++i)
    mlps.push_back(register_module("mlp" + (i == 0 ? std::string() : std::to_string(i)),
                                   ImplicitFilterMlp(o.emb_dim(), channels, o)));
}

torch::Tensor HyenaFilterImpl::window(std::int64_t n) const {
  return torch::exp(-time.narrow(0, 0, n).unsqueeze(1) * decay.unsqueeze(0)) + shift_;
}

torch::Tensor HyenaFilterImpl::filter(std::int64_t n, std::int64_t mlp) {
  TORCH_CHECK(n >= 1 && n <= max_tokens(), "hyena filter: ", n, " tokens, but the filter was built for at most ",
              max_tokens(), " (raise the model's max_tokens)");
  return mlps.at(mlp)->forward(positions.narrow(0, 0, n)) * window(n);
}

torch::Tensor implicit_long_conv(const torch::Tensor& v, const torch::Tensor& h, const torch::Tensor& h_rev,
                                 bool direct) {
  const auto n = v.size(1);
  const bool two_sided = h_rev.defined() && n > 1;
  if (direct) {
    auto y = causal_direct_conv(v, h, 1);
    if (!two_sided) return y;
    // sum_{m >= 1} h_rev_{m-1} v_{t+m}: a causal convolution of the reversed sequence with [0, h_rev].
    const auto shifted = torch::cat({torch::zeros_like(h_rev.narrow(0, 0, 1)), h_rev.narrow(0, 0, n - 1)});
    return y + causal_direct_conv(v.flip(1), shifted, 1).flip(1);
  }
  if (!two_sided) return causal_fft_conv(v, h, 1);
  // One FFT with the kernel of offsets -(n-1)..n-1: [flip(h_rev_0..n-2), h_0..n-1], read from n - 1.
  const auto kernel = torch::cat({h_rev.narrow(0, 0, n - 1).flip(0), h});
  return fft_conv(v, kernel, 1, n - 1, n);
}

torch::Tensor long_conv_matrix(const torch::Tensor& h, const torch::Tensor& h_rev) {
  const auto n = h.size(0);
  const auto idx = torch::arange(n, torch::TensorOptions(torch::kLong).device(h.device()));
  const auto lag = idx.unsqueeze(1) - idx.unsqueeze(0);                           // t - s
  auto t = h.index({lag.clamp_min(0)}) * (lag >= 0).unsqueeze(-1).to(h.dtype());  // [n, n, C]
  if (h_rev.defined()) t = t + h_rev.index({(-lag - 1).clamp_min(0)}) * (lag < 0).unsqueeze(-1).to(h.dtype());
  return t.permute({2, 0, 1});
}

torch::Tensor zero_padding(const torch::Tensor& x, const MixerContext& ctx) {
  if (!ctx.lengths.defined()) return x;
  const auto n = x.size(1);
  const auto idx = torch::arange(n, torch::TensorOptions(torch::kLong).device(x.device()));
  auto padding = idx.unsqueeze(0) >= ctx.lengths.to(x.device()).unsqueeze(1);  // [B, N]
  for (auto d = padding.dim(); d < x.dim(); ++d) padding = padding.unsqueeze(-1);
  return x.masked_fill(padding, 0.0);
}

void check_hyena_filter_options(const ConfigNode& params, const HyenaFilterOptions& o, const std::string& key) {
  if (o.emb_dim() % 2 == 0)
    config_fail(params, "emb_dim",
                key + ": emb_dim must be odd (t plus a cos and a sin per band), got " + std::to_string(o.emb_dim()),
                {"use emb_dim 3 (one band) or 5 (two bands)"});
}

}  // namespace blocklab
