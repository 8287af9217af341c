#include "blocks/masks/mask.h"

namespace blocklab {

MaskRegistry& mask_registry() {
  static MaskRegistry registry("mask", "attention masks composed into attention logits or weights");
  return registry;
}

torch::Tensor AttentionMaskImpl::on_logits(const torch::Tensor& s, const MixerContext& ctx) {
  if (mode() == Mode::MultiplyWeights) return s;
  const torch::Tensor m = matrix(s.size(-1), ctx).to(s.dtype());
  return mode() == Mode::MultiplyLogits ? s * m : s + m;
}

torch::Tensor AttentionMaskImpl::on_weights(const torch::Tensor& a, const MixerContext& ctx) {
  if (mode() != Mode::MultiplyWeights) return a;
  return a * matrix(a.size(-1), ctx).to(a.dtype());
}

torch::Tensor token_positions(std::int64_t tokens, const MixerContext& ctx, const torch::Device& device) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(device);
  const std::int64_t grid = tokens - ctx.prefix_tokens;
  TORCH_CHECK(grid >= 0, "mask: ", tokens, " tokens but ", ctx.prefix_tokens, " prefix tokens");
  const torch::Tensor index = torch::arange(grid, opts);
  if (ctx.grid_height > 0 && ctx.grid_width > 0 && ctx.grid_height * ctx.grid_width == grid) {
    const torch::Tensor row = torch::floor(index / static_cast<double>(ctx.grid_width));
    return torch::stack({row, index - row * ctx.grid_width}, 1);
  }
  return index.unsqueeze(1);
}

torch::Tensor pairwise_distance(const torch::Tensor& positions, Metric metric) {
  const torch::Tensor diff = positions.unsqueeze(1) - positions.unsqueeze(0);  // [M, M, D]
  switch (metric) {
    case Metric::Manhattan: return diff.abs().sum(-1);
    case Metric::SquaredEuclidean: return diff.pow(2).sum(-1);
    default: return diff.pow(2).sum(-1).sqrt();
  }
}

torch::Tensor with_prefix(const torch::Tensor& grid_mask, std::int64_t prefix, double fill) {
  if (prefix == 0) return grid_mask;
  const std::int64_t h = grid_mask.size(0), m = grid_mask.size(-1);
  torch::Tensor out = torch::full({h, prefix + m, prefix + m}, fill, grid_mask.options());
  out.slice(1, prefix).slice(2, prefix).copy_(grid_mask);
  return out;
}

}  // namespace blocklab
