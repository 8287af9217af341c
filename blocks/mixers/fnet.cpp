#include "blocks/mixers/fnet.h"

#include "blocks/common/options.h"

namespace blocklab {

torch::Tensor FnetMixerImpl::forward(const torch::Tensor& x, const MixerContext&) {
  const bool ortho = options_.norm() == "ortho";
  return torch::real(torch::fft::fft2(x, c10::nullopt, {-2, -1}, ortho ? "ortho" : "backward"));
}

namespace {

const OptionsSchema<FnetMixerOptions>& fnet_mixer_schema() {
  static const auto schema = [] {
    OptionsSchema<FnetMixerOptions> s;
    s.choice(
        "norm", {"none", "ortho"}, "none: the unnormalised DFT (FNet); ortho: divided by sqrt(N C) (default none)",
        [](FnetMixerOptions& o, const std::string& v) { o.norm(v); },
        [](const FnetMixerOptions& o) { return o.norm(); });
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(FnetMixerImpl::kKey)
                      .summary("FNet's Fourier mixing: the real part of the 2-D DFT over tokens and channels; no "
                               "weights")
                      .paper("FNet: Mixing Tokens with Fourier Transforms (Lee-Thorp et al., 2022), arXiv:2105.03824")
                      .equation("y = Re(F_seq(F_hidden(x)))")
                      .schema(fnet_mixer_schema().schema())
                      .example("{}"),
                  [](const ConfigNode& params, const MixerArgs&) -> TokenMixer {
                    return std::make_shared<FnetMixerImpl>(bind_options(fnet_mixer_schema(), params));
                  });

}  // namespace
}  // namespace blocklab
