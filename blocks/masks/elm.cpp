#include "blocks/masks/elm.h"

namespace blocklab {

ElmMaskImpl::ElmMaskImpl(std::int64_t tokens) {
  TORCH_CHECK(tokens >= 1, kKey, ": the mask needs a size (tokens >= 1), got ", tokens);
  weight = register_parameter("weight", torch::zeros({tokens, tokens}));
}

torch::Tensor ElmMaskImpl::matrix(std::int64_t tokens, const MixerContext&) {
  const std::int64_t side = weight.size(0);
  TORCH_CHECK(tokens <= side, kKey, ": the learned mask is ", side, " x ", side, " but the sequence has ", tokens,
              " tokens; size it with `tokens: ", tokens, "` (or a larger max_tokens)");
  return weight.slice(0, 0, tokens).slice(1, 0, tokens).unsqueeze(0);
}

const OptionsSchema<ElmMaskOptions>& elm_mask_schema() {
  static const auto schema = [] {
    OptionsSchema<ElmMaskOptions> s;
    BLOCKLAB_OPTION(s, tokens,
                    "side T of the learned T x T mask; longer sequences are an error (default 0: the attention's "
                    "max_tokens)")
        .min = 0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mask_registry(),
    BLOCKLAB_ENTRY(ElmMaskImpl::kKey)
        .summary("element-wise learnable mask: a zero-initialised N x N matrix (shared by heads) multiplying "
                 "the logits")
        .paper("Toward a Deeper Understanding: RetNet Viewed through Convolution (Li & Zhang, 2023), "
               "arXiv:2309.05375")
        .equation("s' = s ⊙ M[:N, :N], M learned T x T (zeros at init), s = q k^T / sqrt(d)")
        .schema(elm_mask_schema().schema())
        .example("{}"),
    [](const ConfigNode& params, const MaskArgs& args) -> AttentionMask {
      const auto options = bind_options(elm_mask_schema(), params);
      const std::int64_t tokens = options.tokens() > 0 ? options.tokens() : args.max_tokens;
      if (tokens < 1)
        config_fail(params, "tokens", "mask/elm needs the sequence length: the attention was built without max_tokens",
                    {"give the mask size, e.g. {type: mask/elm, tokens: 50}"});
      return std::make_shared<ElmMaskImpl>(tokens);
    });

}  // namespace
}  // namespace blocklab
