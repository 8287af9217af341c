#include "blocks/attention/softplus.h"

#include <cmath>
#include <limits>

namespace blocklab {

SoftplusAttentionImpl::SoftplusAttentionImpl(std::int64_t dim, const SoftplusAttentionOptions& options)
    : SoftplusAttentionImpl(dim, options, multi_head_config(options)) {}

SoftplusAttentionImpl::SoftplusAttentionImpl(std::int64_t dim, const SoftplusAttentionOptions& options,
                                             const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options) {
  TORCH_CHECK(options.length_base() > 1.0, kKey, ": length_base must be > 1, got ", options.length_base());
  TORCH_CHECK(options.power() >= 1.0, kKey, ": power must be >= 1, got ", options.power());
}

torch::Tensor SoftplusAttentionImpl::normalise_logits(const torch::Tensor& s) const {
  // Keys with a -inf logit are masked: not counted in n_i, and softplus(-inf) = 0 with zero
  // gradient, so no masked_fill is needed. A row with one visible key has weight 1 whatever
  // its scale; its k_i = 0 (n_i = 1) is raised to k(2) so that it never meets -inf (0 * -inf).
  const auto n = (s != -std::numeric_limits<double>::infinity()).sum(-1, /*keepdim=*/true).to(s.dtype());
  const auto kappa = n.log().clamp_min(std::log(2.0)) / std::log(options_.length_base());  // k_i = ln n_i / ln base
  const auto positive = torch::softplus(kappa * s);
  const auto a = positive / positive.sum(-1, true);  // l1 normalisation (LSSA)
  if (!options_.reweight()) return a;
  // LSSAR: ReLU(n_i A - 1)^p, l1-normalised; rows with nothing above uniform keep A. The
  // denominator is kept nonzero on those rows so that no NaN reaches the gradient.
  const auto r = torch::relu(n * a - 1.0).pow(options_.power());
  const auto total = r.sum(-1, true);
  const auto some = total > 0;
  return torch::where(some, r / torch::where(some, total, torch::ones_like(total)), a);
}

torch::Tensor SoftplusAttentionImpl::normalise(const torch::Tensor& s, const MixerContext&) {
  return normalise_logits(s);
}

const OptionsSchema<SoftplusAttentionOptions>& softplus_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<SoftplusAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, length_base,
                    "base of the length scale ln n / ln base; > 1 (default 512); 0 uses the longest sequence the "
                    "model sees, so the scale is 1 at the training length")
        .min = 0.0;
    BLOCKLAB_OPTION(s, reweight, "LSSAR: sharpen by ReLU(n A - 1)^p and renormalise (default false: LSSA)");
    BLOCKLAB_OPTION(s, power, "p of the LSSAR re-weighting, >= 1 (default 3)").min = 1.0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mixer_registry(),
    BLOCKLAB_ENTRY(SoftplusAttentionImpl::kKey)
        .summary("length-scaled softplus attention (LSSA), optionally re-weighted (LSSAR)")
        .paper("Softplus Attention with Re-weighting Boosts Length Extrapolation in Large Language Models "
               "(Gao & Spratling, 2025), arXiv:2501.13428")
        .equation("l1norm(softplus(ln n / ln base * Q K^T / sqrt(d))) V; LSSAR: l1norm(ReLU(n A - 1)^p)")
        .schema(softplus_attention_schema().schema())
        .example("{heads: 2, reweight: true}"),
    [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
      auto options = bind_options(softplus_attention_schema(), params);
      if (options.length_base() == 0.0) {
        options.length_base(static_cast<double>(
            longest_sequence(args, params, "length_base", 2,
                             "length_base 0 means the longest sequence, and the enclosing model gave none (or a "
                             "single token)",
                             "set length_base > 1, e.g. length_base: 512")));
      } else if (options.length_base() <= 1.0) {
        config_fail(params, "length_base",
                    "length_base must be > 1 (it is the base of a logarithm), or 0 for the longest "
                    "sequence",
                    {"length_base: 512", "length_base: 0"});
      }
      return std::make_shared<SoftplusAttentionImpl>(args.dim, options, multi_head_config(options, params, args));
    });

}  // namespace
}  // namespace blocklab
