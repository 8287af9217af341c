#include "blocks/linear/elu.h"

#include "blocks/common/heads_layout.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

EluLinearImpl::EluLinearImpl(std::int64_t dim, const EluLinearOptions& options)
    : LinearMixerImpl(kKey, normalised_core_config(options)),
      projection_(*this, dim, linear_projection_config(options)),
      output_(*this, dim, dim, /*gate=*/false, options.proj_drop()) {}

LinearTerms EluLinearImpl::terms(const torch::Tensor& x, const MixerContext&) {
  auto [q, k, v] = heads_contiguous(projection_.split(x));
  return {torch::elu(q) + 1, torch::elu(k) + 1, v};  // phi(x) = elu(x) + 1, eq. (7)
}

torch::Tensor EluLinearImpl::output(const torch::Tensor& o, const torch::Tensor& x) {
  return output_.merge(o, x, is_training());
}

LinearMixerImpl::StateDims EluLinearImpl::state_dims() const {
  return {projection_.heads(), projection_.head_dim(), projection_.head_dim()};
}

const OptionsSchema<EluLinearOptions>& elu_linear_schema() {
  static const auto schema = [] {
    OptionsSchema<EluLinearOptions> s;
    declare_linear_attention_options(s);
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(EluLinearImpl::kKey)
                      .summary("linear attention with the elu + 1 feature map (causal: an RNN)")
                      .paper("Transformers are RNNs (Katharopoulos et al., 2020), arXiv:2006.16236")
                      .equation("phi(q_i)^T sum_j phi(k_j) v_j^T / (phi(q_i)^T sum_j phi(k_j) + eps), phi = elu + 1")
                      .schema(elu_linear_schema().schema())
                      .example("{heads: 2, chunk: 16}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto options = bind_options(elu_linear_schema(), params);
                    check_heads(args.dim, options.heads(), params);
                    return std::make_shared<EluLinearImpl>(args.dim, options);
                  });

}  // namespace
}  // namespace blocklab
