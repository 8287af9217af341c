#include "blocks/linear/elu.h"

#include "blocks/common/heads_layout.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

namespace {

ProjectionConfig elu_projection_config(const EluLinearOptions& options) {
  ProjectionConfig c = linear_projection_config(options);
  c.head_dim = options.head_dim();
  return c;
}

std::int64_t elu_inner_width(std::int64_t dim, const EluLinearOptions& options) {
  return options.head_dim() > 0 ? options.heads() * options.head_dim() : dim;
}

}  // namespace

EluLinearImpl::EluLinearImpl(std::int64_t dim, const EluLinearOptions& options)
    : LinearMixerImpl(kKey, normalised_core_config(options)),
      projection_(*this, dim, elu_projection_config(options)),
      output_(*this, elu_inner_width(dim, options), dim, /*gate=*/false, options.proj_drop()) {}

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
    BLOCKLAB_OPTION(s, head_dim, "width d of each head (default 0 = dim / heads)").min = 0;
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
                    if (options.head_dim() == 0) check_heads(args.dim, options.heads(), params);
                    return std::make_shared<EluLinearImpl>(args.dim, options);
                  });

}  // namespace
}  // namespace blocklab
