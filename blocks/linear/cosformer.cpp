#include "blocks/linear/cosformer.h"

#include <cmath>

#include "blocks/common/heads_layout.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

CosformerImpl::CosformerImpl(std::int64_t dim, const CosformerOptions& options)
    : LinearMixerImpl(kKey, normalised_core_config(options)),
      max_length_(options.max_length()),
      projection_(*this, dim, linear_projection_config(options)),
      output_(*this, dim, dim, /*gate=*/false, options.proj_drop()) {
  TORCH_CHECK(max_length_ > 0, "linear/cosformer: max_length must be positive");
}

torch::Tensor CosformerImpl::features(const torch::Tensor& x, const torch::Tensor& positions) const {
  const auto last = positions.max().item<std::int64_t>();
  if (last >= max_length_)
    throw std::invalid_argument("linear/cosformer: token position " + std::to_string(last) +
                                " is beyond its re-weighting length max_length = " + std::to_string(max_length_) +
                                "; set max_length (e.g. model.mixer.max_length) to the longest sequence");
  const auto angle = positions.to(x.dtype()).view({-1, 1}) * (M_PI / (2.0 * static_cast<double>(max_length_)));
  const auto phi = torch::relu(x);
  return torch::cat({phi * angle.cos(), phi * angle.sin()}, -1);  // eq. (10)
}

LinearTerms CosformerImpl::terms(const torch::Tensor& x, const MixerContext& ctx) {
  auto [q, k, v] = heads_contiguous(projection_.split(x));
  const auto positions = ctx.token_positions(x.size(1), x.device());
  return {features(q, positions), features(k, positions), v};
}

torch::Tensor CosformerImpl::output(const torch::Tensor& o, const torch::Tensor& x) {
  return output_.merge(o, x, is_training());
}

LinearMixerImpl::StateDims CosformerImpl::state_dims() const {
  return {projection_.heads(), 2 * projection_.head_dim(), projection_.head_dim()};
}

const OptionsSchema<CosformerOptions>& cosformer_schema() {
  static const auto schema = [] {
    OptionsSchema<CosformerOptions> s;
    declare_linear_attention_options(s);
    BLOCKLAB_OPTION(s, max_length,
                    "M of the re-weighting cos(pi/2 (i - j) / M); positions must stay below it (default 0 = the "
                    "model's longest sequence)")
        .min = 0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(CosformerImpl::kKey)
                      .summary("cosFormer: ReLU linear attention re-weighted by cos(pi/2 (i - j) / M)")
                      .paper("cosFormer: Rethinking Softmax in Attention (Qin et al., 2022), arXiv:2202.08791")
                      .equation("sum_j relu(q_i).relu(k_j) cos(pi/2 (i-j)/M) v_j / sum_j (same), by the "
                                "decomposition [relu(x) cos(pi i/2M) || relu(x) sin(pi i/2M)]")
                      .schema(cosformer_schema().schema())
                      .example("{heads: 2, chunk: 16}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    auto options = bind_options(cosformer_schema(), params);
                    check_heads(args.dim, options.heads(), params);
                    if (options.max_length() == 0)
                      options.max_length(longest_sequence(args, params, "max_length", 1,
                                                          "cosFormer's re-weighting needs the longest sequence M",
                                                          "set max_length"));
                    return std::make_shared<CosformerImpl>(args.dim, options);
                  });

}  // namespace
}  // namespace blocklab
