#include "blocks/mixers/dct.h"

#include <cmath>

#include "blocks/common/options.h"

namespace blocklab {

torch::Tensor dct_matrix(std::int64_t n, bool ortho, const torch::TensorOptions& options) {
  const auto k = torch::arange(n, options).unsqueeze(1), j = torch::arange(n, options).unsqueeze(0);
  auto d = 2.0 * torch::cos(M_PI * k * (2.0 * j + 1.0) / (2.0 * static_cast<double>(n)));
  if (ortho) {
    auto scale = torch::full({n, 1}, 1.0 / std::sqrt(2.0 * static_cast<double>(n)), options);
    scale[0][0] = 1.0 / std::sqrt(4.0 * static_cast<double>(n));
    d = d * scale;
  }
  return d;
}

torch::Tensor DctMixerImpl::forward(const torch::Tensor& x, const MixerContext&) {
  const bool ortho = options_.norm() == "ortho";
  const auto tokens = dct_matrix(x.size(1), ortho, x.options());
  const auto channels = dct_matrix(x.size(2), ortho, x.options());
  return torch::matmul(tokens, x).matmul(channels.t());
}

namespace {

const OptionsSchema<DctMixerOptions>& dct_mixer_schema() {
  static const auto schema = [] {
    OptionsSchema<DctMixerOptions> s;
    s.choice(
        "norm", {"none", "ortho"},
        "none: the unnormalised DCT-II (scipy's default, FlexiBERT); ortho: the orthogonal DCT-II (default none)",
        [](DctMixerOptions& o, const std::string& v) { o.norm(v); }, [](const DctMixerOptions& o) { return o.norm(); });
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(DctMixerImpl::kKey)
                      .summary("FlexiBERT's DCT mixing: a 2-D DCT-II over tokens and channels; no weights")
                      .paper("FlexiBERT (Tuli et al., 2023), arXiv:2205.11656; FNet (Lee-Thorp et al., 2022), "
                             "arXiv:2105.03824")
                      .equation("y = D_N x D_C^T, (D_n)_kj = 2 cos(pi k (2j + 1) / 2n)")
                      .schema(dct_mixer_schema().schema())
                      .example("{}"),
                  [](const ConfigNode& params, const MixerArgs&) -> TokenMixer {
                    return std::make_shared<DctMixerImpl>(bind_options(dct_mixer_schema(), params));
                  });

}  // namespace
}  // namespace blocklab
