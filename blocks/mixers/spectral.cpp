#include "blocks/mixers/spectral.h"

#include "blocks/common/grid_mixer.h"
#include "blocks/common/options.h"

namespace blocklab {

SpectralGatingImpl::SpectralGatingImpl(std::int64_t dim, std::int64_t height, std::int64_t width)
    : height_(height), width_(width) {
  TORCH_CHECK(height > 0 && width > 0, kKey, ": the filter's grid must be positive, got ", height, "x", width);
  weight = register_parameter("weight", torch::randn({height, width / 2 + 1, dim, 2}) * 0.02);
}

MixerCapabilities SpectralGatingImpl::capabilities() const {
  MixerCapabilities c;
  c.needs_grid = true;
  return c;
}

torch::Tensor SpectralGatingImpl::filter_for(std::int64_t h, std::int64_t w) const {
  auto parts = weight.permute({2, 3, 0, 1});  // [C, 2, a, b/2 + 1]
  if (h != height_ || w != width_) {
    const auto channels = parts.size(0);
    parts = torch::nn::functional::interpolate(parts.reshape({1, channels * 2, height_, width_ / 2 + 1}),
                                               torch::nn::functional::InterpolateFuncOptions()
                                                   .size(std::vector<std::int64_t>{h, w / 2 + 1})
                                                   .mode(torch::kBilinear)
                                                   .align_corners(true))
                .reshape({channels, 2, h, w / 2 + 1});
  }
  return torch::complex(parts.select(1, 0), parts.select(1, 1));  // [C, h, w/2 + 1]
}

torch::Tensor SpectralGatingImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  auto image = grid_body_image(x, ctx, kKey);
  const bool low_precision = image.scalar_type() == torch::kHalf || image.scalar_type() == torch::kBFloat16;
  if (low_precision) image = image.to(torch::kFloat);
  const auto h = ctx.grid_height, w = ctx.grid_width;
  auto filter = filter_for(h, w);
  if (low_precision) filter = filter.to(torch::kComplexFloat);
  const auto spectrum = torch::fft::rfft2(image, c10::nullopt, {2, 3}, "ortho") * filter;
  auto y = torch::fft::irfft2(spectrum, std::vector<std::int64_t>{h, w}, {2, 3}, "ortho");
  return grid_mixer_output(y.to(x.scalar_type()), ctx.prefix_tokens);
}

namespace {

const OptionsSchema<SpectralGatingOptions>& spectral_gating_schema() {
  static const auto schema = [] {
    OptionsSchema<SpectralGatingOptions> s;
    BLOCKLAB_OPTION(s, filter_height, "the filter's grid rows a (default 0 = the layer's token grid)").min = 0;
    BLOCKLAB_OPTION(s, filter_width, "the filter's grid columns b (default 0 = the layer's token grid)").min = 0;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(
    mixer_registry(),
    BLOCKLAB_ENTRY(SpectralGatingImpl::kKey)
        .summary("SpectFormer's spectral gating (GFNet's global filter): a learned complex filter per "
                 "channel on the grid's 2-D FFT; no attention weights")
        .paper("SpectFormer: Frequency and Attention is what you need in a Vision Transformer (Patro et "
               "al., 2023), arXiv:2304.06446; Global Filter Networks (Rao et al., 2021), arXiv:2107.00645")
        .equation("y = irfft2(rfft2(x, ortho) ⊙ W, ortho), W in C^{a x (b/2+1) x C}")
        .schema(spectral_gating_schema().schema())
        .example("{filter_height: 4, filter_width: 4}"),
    [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
      const auto o = bind_options(spectral_gating_schema(), params);
      const auto height = o.filter_height() > 0 ? o.filter_height() : args.grid_height;
      const auto width = o.filter_width() > 0 ? o.filter_width() : args.grid_width;
      if (height <= 0 || width <= 0)
        config_fail(params, o.filter_height() > 0 ? "filter_width" : "filter_height",
                    std::string(SpectralGatingImpl::kKey) +
                        ": the filter is sized by the layer's token grid, and this builder gave none",
                    {"use it in an image model (a patch stem), or set filter_height and filter_width"});
      return std::make_shared<SpectralGatingImpl>(args.dim, height, width);
    });

}  // namespace
}  // namespace blocklab
