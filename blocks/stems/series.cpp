#include "blocks/stems/series.h"

#include "blocks/common/options.h"

namespace blocklab {

namespace {

void check_series(const SeriesStemOptions& o, std::int64_t length, const ConfigNode& params) {
  if (o.patch() > length)
    config_fail(
        params, "patch",
        "patch " + std::to_string(o.patch()) + " is longer than the series (" + std::to_string(length) + " steps)",
        {"use a patch of at most " + std::to_string(length) + " steps, or 0 for one token per step"});
  if (o.stride() > 0 && o.patch() == 0)
    config_fail(params, "stride", "stride needs patch: without patching every step is a token", {"set patch > 0"});
}

}  // namespace

SeriesStemImpl::SeriesStemImpl(const StemArgs& args, const SeriesStemOptions& options)
    : options_(options),
      channels_(size_from_option_or_data(options.channels(), args.inputs.channels, {}, "stem/series", "channels")),
      length_(size_from_option_or_data(options.length(), args.inputs.length, {}, "stem/series", "length")),
      patch_(std::max<std::int64_t>(options.patch(), 1)),
      stride_(options.stride() > 0 ? options.stride() : std::max<std::int64_t>(options.patch(), 1)) {
  check_series(options, length_, {});
  proj = register_module("proj", torch::nn::Linear(patch_ * channels_, args.dim));
  positions = SequencePositions(*this, options.pos() == "learned", tokens(), args.dim);
}

std::int64_t SeriesStemImpl::tokens_of(std::int64_t steps) const {
  return steps < patch_ ? 0 : (steps - patch_) / stride_ + 1;
}

Tokens SeriesStemImpl::forward(const torch::Tensor& series, const torch::Tensor& lengths) {
  TORCH_CHECK(series.dim() == 3 && series.size(2) == channels_ && series.size(1) <= length_ && series.size(1) >= patch_,
              "stem/series: expected a series [B, ", patch_, "..", length_, ", ", channels_, "], got ", series.sizes());
  // [B, L, C] -> patches [B, N, C, patch] -> [B, N, patch * C] in time-major order.
  const torch::Tensor patches = series.unfold(1, patch_, stride_).transpose(2, 3).flatten(2);
  const torch::Tensor token_lengths =
      lengths.defined() ? torch::where(lengths < patch_, torch::zeros_like(lengths), (lengths - patch_).div(stride_, "floor") + 1)
                        : torch::Tensor();
  return {positions.add(proj->forward(patches)), sequence_layout(options_.causal(), token_lengths)};
}

const OptionsSchema<SeriesStemOptions>& series_stem_schema() {
  static const auto schema = [] {
    using O = SeriesStemOptions;
    OptionsSchema<O> s;
    BLOCKLAB_OPTION(s, channels, "series channels; 0 = from the data (default)").min = 0;
    BLOCKLAB_OPTION(s, length, "longest series in steps (position table); 0 = from the data (default)").min = 0;
    BLOCKLAB_OPTION(s, patch, "time steps per token (PatchTST); 0 = one token per step (default)").min = 0;
    BLOCKLAB_OPTION(s, stride, "steps between patches; 0 = patch, no overlap (default)").min = 0;
    s.choice(
        "pos", {"learned", "none"}, "positions: learned table (default) or none",
        [](O& o, const std::string& v) { o.pos(v); }, [](const O& o) { return o.pos(); });
    BLOCKLAB_OPTION(s, causal, "each token sees only earlier ones (default false)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(stem_registry(),
                  BLOCKLAB_ENTRY("stem/series")
                      .summary("a series [B,L,channels] as tokens: one per step, or per patch of steps (PatchTST)")
                      .paper("A Time Series is Worth 64 Words: Long-term Forecasting with Transformers (Nie et al., "
                             "2023), arXiv:2211.14730")
                      .equation("z0[n] = W [x_{n*stride} .. x_{n*stride+patch-1}] + P[n]; N = (L - patch) / stride + 1")
                      .schema(series_stem_schema().schema())
                      .example("{channels: 3, length: 16, patch: 4, stride: 2}"),
                  [](const ConfigNode& params, const StemArgs& args) -> Stem {
                    const auto options = bind_options(series_stem_schema(), params);
                    size_from_option_or_data(options.channels(), args.inputs.channels, params, "stem/series",
                                             "channels");
                    check_series(
                        options,
                        size_from_option_or_data(options.length(), args.inputs.length, params, "stem/series", "length"),
                        params);
                    return std::make_shared<SeriesStemImpl>(args, options);
                  });

}  // namespace
}  // namespace blocklab
