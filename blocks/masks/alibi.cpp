#include "blocks/masks/alibi.h"

#include <cmath>

namespace blocklab {

namespace {

// m_i = 2^(-8 i / n), i = 1..n (n a power of two): start 2^(-2^-(log2 n - 3)), ratio = start.
std::vector<double> power_of_two_slopes(std::int64_t n) {
  std::vector<double> out;
  for (std::int64_t i = 1; i <= n; ++i)
    out.push_back(std::pow(2.0, -8.0 * static_cast<double>(i) / static_cast<double>(n)));
  return out;
}

}  // namespace

std::vector<double> alibi_slopes(std::int64_t heads) {
  TORCH_CHECK(heads >= 1, "alibi_slopes: heads must be >= 1, got ", heads);
  std::int64_t p = 1;
  while (p * 2 <= heads) p *= 2;
  std::vector<double> out = power_of_two_slopes(p);
  if (p == heads) return out;
  const std::vector<double> finer = power_of_two_slopes(2 * p);
  for (std::int64_t i = 0; static_cast<std::int64_t>(out.size()) < heads; i += 2) out.push_back(finer[i]);
  return out;
}

AlibiMaskImpl::AlibiMaskImpl(std::int64_t heads, const AlibiMaskOptions& options) : options_(options) {
  TORCH_CHECK(options.space() == "auto" || options.space() == "1d" || options.space() == "2d", kKey,
              ": space must be auto, 1d or 2d, got ", options.space());
  slopes = register_buffer("slopes", torch::tensor(alibi_slopes(heads), torch::kFloat64));
}

torch::Tensor AlibiMaskImpl::matrix(std::int64_t tokens, const MixerContext& ctx) {
  const auto device = slopes.device();
  const std::int64_t grid = tokens - ctx.prefix_tokens;
  TORCH_CHECK(grid >= 0, kKey, ": ", tokens, " tokens but ", ctx.prefix_tokens, " prefix tokens");
  torch::Tensor pos;
  if (options_.space() == "1d") {
    pos = torch::arange(grid, torch::TensorOptions().dtype(torch::kFloat64).device(device)).unsqueeze(1);
  } else {
    pos = token_positions(tokens, ctx, device);
    TORCH_CHECK(options_.space() != "2d" || pos.size(1) == 2, kKey,
                ": space 2d needs the tokens of an image grid (ctx grid ", ctx.grid_height, "x", ctx.grid_width, " + ",
                ctx.prefix_tokens, " prefix tokens, got ", tokens, " tokens); use space: auto or 1d for sequences");
  }
  const auto dist = pairwise_distance(pos, Metric::Euclidean);            // [M, M]
  const auto bias = -slopes.to(torch::kFloat64).view({-1, 1, 1}) * dist;  // [h, M, M]
  return with_prefix(bias, ctx.prefix_tokens, 0.0);
}

const OptionsSchema<AlibiMaskOptions>& alibi_mask_schema() {
  static const auto schema = [] {
    using O = AlibiMaskOptions;
    OptionsSchema<O> s;
    s.choice(
        "space", {"auto", "1d", "2d"},
        "distances: 2-D Euclidean on the patch grid (2d), |i - j| over the token order (1d), or 2d when the "
        "context has a grid and 1d otherwise (auto, default)",
        [](O& o, const std::string& v) { o.space(v); }, [](const O& o) { return o.space(); });
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mask_registry(),
    BLOCKLAB_ENTRY(AlibiMaskImpl::kKey)
        .summary("ALiBi: per-head linear distance penalty on the logits (2-D Euclidean on grids, CROMA)")
        .paper("Train Short, Test Long: Attention with Linear Biases Enables Input Length Extrapolation "
               "(Press et al., 2022), arXiv:2108.12409; 2-D: CROMA (Fuller et al., 2023), arXiv:2311.00566")
        .equation("s' = q k^T / sqrt(d) - m_h ||p_i - p_j||_2, m_h = 2^(-8h/H) (ALiBi slopes)")
        .schema(alibi_mask_schema().schema())
        .example("{}"),
    [](const ConfigNode& params, const MaskArgs& args) -> AttentionMask {
      return std::make_shared<AlibiMaskImpl>(args.heads, bind_options(alibi_mask_schema(), params));
    });

}  // namespace
}  // namespace blocklab
