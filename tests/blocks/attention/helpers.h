// Shared helpers of the attention variants' property tests (tests/blocks/attention/*.cpp).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "blocks/attention/softmax.h"
#include "blocks/common/conv_bn.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace blocklab::attention_tests {

inline bool close(const torch::Tensor& a, const torch::Tensor& b, double rtol = 1e-10, double atol = 1e-12) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, rtol, atol);
}

inline double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Every parameter drawn from N(0, 0.5) and the BatchNorm running statistics moved off their
// init, then eval mode: BN scales, biases and statistics all show in a by-hand formula.
inline void randomise_for_by_hand(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.normal_(0.0, 0.5);
  for (auto& b : m.named_buffers())
    if (b.key().find("running_var") != std::string::npos)
      b.value().uniform_(0.5, 2.0);
    else if (b.key().find("running_mean") != std::string::npos)
      b.value().normal_(0.0, 0.3);
  m.eval();
}

// A 1 x 1 ConvBN on tokens [B, N, C] by hand, eval mode (running statistics).
inline torch::Tensor conv_bn_by_hand(const PointwiseConvBNImpl& c, const torch::Tensor& x) {
  const auto& bn = *c.bn;
  const auto y = torch::matmul(x, c.conv->weight.t());
  return (y - bn.running_mean) / torch::sqrt(bn.running_var + bn.options.eps()) * bn.weight + bn.bias;
}

// Any BatchNorm (1d, 2d) in eval mode by hand on x [B, C, ...]: its running statistics, scale, shift.
template <class BatchNorm>
torch::Tensor batch_norm_by_hand(const BatchNorm& bn, const torch::Tensor& x) {
  std::vector<std::int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[1] = -1;
  const auto per_channel = [&](const torch::Tensor& t) { return t.view(shape); };
  return (x - per_channel(bn.running_mean)) / torch::sqrt(per_channel(bn.running_var) + bn.options.eps()) *
             per_channel(bn.weight) +
         per_channel(bn.bias);
}

inline ConfigNode yaml(const std::string& text) { return parse_yaml(text, "test"); }

inline std::int64_t parameter_count(const torch::nn::Module& m) {
  std::int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// MHSA parameters of width C: qkv C -> 3C (+ bias), proj C -> C with bias.
inline std::int64_t mhsa_count(std::int64_t c, bool qkv_bias) { return 3 * c * c + (qkv_bias ? 3 * c : 0) + c * c + c; }

// Copies the q/k/v and output projections of `from` into `to` (same width, same qkv_bias).
inline void copy_projections(const MultiHeadAttentionImpl& from, MultiHeadAttentionImpl& to) {
  torch::NoGradGuard no_grad;
  to.qkv->weight.copy_(from.qkv->weight);
  if (from.qkv->bias.defined()) to.qkv->bias.copy_(from.qkv->bias);
  to.proj->weight.copy_(from.proj->weight);
  to.proj->bias.copy_(from.proj->bias);
}

// Softmax attention (reference path) with the same width, heads and projections as `m`: the
// block a variant must equal when its extra terms vanish.
inline SoftmaxAttention softmax_twin(const MultiHeadAttentionImpl& m) {
  SoftmaxAttention ref(m.dim(),
                       SoftmaxAttentionOptions().heads(m.heads()).qkv_bias(m.qkv->bias.defined()).fused(false));
  ref->to(torch::kFloat64);
  ref->eval();
  copy_projections(m, *ref);
  return ref;
}

inline MixerContext context(std::int64_t grid_h = 0, std::int64_t grid_w = 0, std::int64_t prefix = 0,
                            bool causal = false) {
  MixerContext ctx;
  ctx.grid_height = grid_h;
  ctx.grid_width = grid_w;
  ctx.prefix_tokens = prefix;
  ctx.causal = causal;
  return ctx;
}

inline torch::Tensor randn(std::vector<std::int64_t> shape) { return torch::randn(shape, torch::kFloat64); }

// o [B, h, N, d] -> the output projection of the heads concatenated, by hand.
inline torch::Tensor merge_by_hand(const MultiHeadAttentionImpl& m, const torch::Tensor& o) {
  const auto b = o.size(0), n = o.size(2);
  return torch::linear(o.transpose(1, 2).reshape({b, n, m.dim()}), m.proj->weight, m.proj->bias);
}

// Row entropies of weights [..., N] (0 log 0 = 0).
inline torch::Tensor entropy(const torch::Tensor& w) {
  return -(w * torch::where(w > 0, w.log(), torch::zeros_like(w))).sum(-1);
}

}  // namespace blocklab::attention_tests
