#include "blocks/masks/gmm.h"

namespace blocklab {

GmmMaskImpl::GmmMaskImpl(std::int64_t heads, const GmmMaskOptions& options) : options_(options) {
  TORCH_CHECK(heads >= 1 && options.kernels() >= 1, kKey, ": heads and kernels must be >= 1");
  const std::vector<std::int64_t> shape{options.kernels(), heads};
  sigma = register_parameter("sigma", torch::randn(shape) * options.sigma_std() + options.sigma_mean());
  alpha = register_parameter("alpha", torch::randn(shape) * options.alpha_std());
}

torch::Tensor GmmMaskImpl::matrix(std::int64_t tokens, const MixerContext& ctx) {
  const auto pos = token_positions(tokens, ctx, sigma.device()).to(sigma.scalar_type());
  const auto d2 = pairwise_distance(pos, Metric::SquaredEuclidean);     // [M, M]
  const auto var = (sigma.pow(2) + 1e-5).unsqueeze(-1).unsqueeze(-1);   // [K, h, 1, 1]
  const auto kernels = torch::exp(-d2 / (2.0 * var));                   // [K, h, M, M]
  const auto m = (alpha.unsqueeze(-1).unsqueeze(-1) * kernels).sum(0);  // [h, M, M]
  return with_prefix(m, ctx.prefix_tokens, 1.0);
}

const OptionsSchema<GmmMaskOptions>& gmm_mask_schema() {
  static const auto schema = [] {
    OptionsSchema<GmmMaskOptions> s;
    BLOCKLAB_OPTION(s, kernels, "Gaussian kernels K per head (default 5, the official --num_kernals)").min = 1;
    BLOCKLAB_OPTION(s, sigma_mean, "init mean of the kernel widths sigma (default 10)");
    BLOCKLAB_OPTION(s, sigma_std, "init std of sigma (default 10)").min = 0.0;
    BLOCKLAB_OPTION(s, alpha_std, "init std of the mixture weights alpha, mean 0 (default 2)").min = 0.0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mask_registry(),
    BLOCKLAB_ENTRY(GmmMaskImpl::kKey)
        .summary("Gaussian mixture mask: learned per-head mixture of grid Gaussians multiplying the logits")
        .paper("Toward a Deeper Understanding: RetNet Viewed through Convolution (Li & Zhang, 2023), "
               "arXiv:2309.05375")
        .equation("s' = s ⊙ M_h, M_h = sum_k alpha_kh exp(-||p_i - p_j||^2 / (2 (sigma_kh^2 + 1e-5))), "
                  "s = q k^T / sqrt(d)")
        .schema(gmm_mask_schema().schema())
        .example("{kernels: 2}"),
    [](const ConfigNode& params, const MaskArgs& args) -> AttentionMask {
      return std::make_shared<GmmMaskImpl>(args.heads, bind_options(gmm_mask_schema(), params));
    });

}  // namespace
}  // namespace blocklab
