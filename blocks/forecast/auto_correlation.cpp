#include "blocks/forecast/auto_correlation.h"

#include <algorithm>
#include <cmath>

namespace blocklab {

namespace {

// [B, S, D] -> [B, H, E, L]: heads split, zero-padded or cut to L steps (time last).
torch::Tensor heads_over_time(const torch::Tensor& x, std::int64_t heads, std::int64_t length) {
  torch::Tensor t = x.view({x.size(0), x.size(1), heads, -1});
  if (t.size(1) > length) t = t.narrow(1, 0, length);
  if (t.size(1) < length)
    t = torch::cat({t, torch::zeros({t.size(0), length - t.size(1), heads, t.size(3)}, t.options())}, 1);
  return t.permute({0, 2, 3, 1});
}

}  // namespace

std::int64_t delay_count(double factor, std::int64_t length) {
  const auto k = static_cast<std::int64_t>(factor * std::log(static_cast<double>(length)));
  return std::clamp<std::int64_t>(k, 1, length);
}

torch::Tensor period_correlation(const torch::Tensor& q, const torch::Tensor& k) {
  const std::int64_t length = q.size(-1);
  const torch::Tensor spectrum = torch::fft::rfft(q, length, -1) * torch::fft::rfft(k, length, -1).conj();
  return torch::fft::irfft(spectrum, length, -1);
}

torch::Tensor delay_aggregation_training(const torch::Tensor& v, const torch::Tensor& corr, double factor) {
  const std::int64_t batch = v.size(0), length = v.size(-1);
  const torch::Tensor mean = corr.mean({1, 2});  // m [B, L]
  const torch::Tensor delays = std::get<1>(mean.mean(0).topk(delay_count(factor, length)));
  const torch::Tensor weights = torch::softmax(mean.index_select(1, delays), -1);  // [B, k]
  torch::Tensor out = torch::zeros_like(v);
  for (std::int64_t i = 0; i < delays.size(0); ++i)
    out = out + torch::roll(v, {-delays[i].item<std::int64_t>()}, {-1}) * weights.select(1, i).view({batch, 1, 1, 1});
  return out;
}

torch::Tensor delay_aggregation_inference(const torch::Tensor& v, const torch::Tensor& corr, double factor) {
  const std::int64_t batch = v.size(0), length = v.size(-1);
  const auto [top, delays] = corr.mean({1, 2}).topk(delay_count(factor, length), -1);  // [B, k]
  const torch::Tensor weights = torch::softmax(top, -1);
  const torch::Tensor doubled = torch::cat({v, v}, -1);
  const torch::Tensor steps = torch::arange(length, delays.options()).view({1, 1, 1, length});
  torch::Tensor out = torch::zeros_like(v);
  for (std::int64_t i = 0; i < delays.size(1); ++i) {
    const torch::Tensor index = (steps + delays.select(1, i).view({batch, 1, 1, 1})).expand(v.sizes());
    out = out + doubled.gather(-1, index) * weights.select(1, i).view({batch, 1, 1, 1});
  }
  return out;
}

AutoCorrelationImpl::AutoCorrelationImpl(std::int64_t dim, std::int64_t heads, double factor)
    : heads_(heads), factor_(factor) {
  TORCH_CHECK(heads > 0 && dim % heads == 0, "auto-correlation: dim ", dim, " is not divisible by heads ", heads);
  query = register_module("query", torch::nn::Linear(dim, dim));
  key = register_module("key", torch::nn::Linear(dim, dim));
  value = register_module("value", torch::nn::Linear(dim, dim));
  out = register_module("out", torch::nn::Linear(dim, dim));
}

torch::Tensor AutoCorrelationImpl::forward(const torch::Tensor& queries, const torch::Tensor& keys,
                                           const torch::Tensor& values) {
  const std::int64_t batch = queries.size(0), length = queries.size(1);
  const torch::Tensor q = heads_over_time(query->forward(queries), heads_, length);
  const torch::Tensor k = heads_over_time(key->forward(keys), heads_, length);
  const torch::Tensor v = heads_over_time(value->forward(values), heads_, length);
  const torch::Tensor corr = period_correlation(q, k);
  const torch::Tensor agg =
      is_training() ? delay_aggregation_training(v, corr, factor_) : delay_aggregation_inference(v, corr, factor_);
  return out->forward(agg.permute({0, 3, 1, 2}).reshape({batch, length, -1}));
}

}  // namespace blocklab
