#include "blocks/linear/hedgehog.h"

#include <cmath>

#include "blocks/attention/parts/dense_core.h"
#include "blocks/common/heads_layout.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

HedgehogImpl::HedgehogImpl(std::int64_t dim, const HedgehogOptions& options)
    : LinearMixerImpl(kKey, normalised_core_config(options)),
      options_(options),
      projection_(*this, dim, linear_projection_config(options)),
      output_(*this, dim, dim, /*gate=*/false, options.proj_drop()),
      feature_dim_(options.feature_dim() > 0 ? options.feature_dim() : dim / options.heads()) {
  const auto h = options.heads(), d = dim / h;
  const auto identity = torch::eye(d, feature_dim_).expand({h, d, feature_dim_}).clone();  // fla's init
  q_map_weight = register_parameter("q_map_weight", identity.clone());
  k_map_weight = register_parameter("k_map_weight", identity.clone());
  q_map_bias = register_parameter("q_map_bias", torch::zeros({h, feature_dim_}));
  k_map_bias = register_parameter("k_map_bias", torch::zeros({h, feature_dim_}));
}

torch::Tensor HedgehogImpl::features(const torch::Tensor& x, const torch::Tensor& weight,
                                     const torch::Tensor& bias) const {
  const auto z = torch::einsum("bhnd,hde->bhne", {x, weight}) + bias.unsqueeze(1);
  const auto& map = options_.feature_map();
  if (map == "exp") return torch::cat({z.exp(), (-z).exp()}, -1);
  if (map == "joint_softmax") return torch::softmax(torch::cat({z, -z}, -1), -1);
  return torch::cat({torch::softmax(z, -1), torch::softmax(-z, -1)}, -1);  // softmax_dim
}

LinearTerms HedgehogImpl::terms(const torch::Tensor& x, const MixerContext&) {
  auto [q, k, v] = heads_contiguous(projection_.split(x));
  return {features(q, q_map_weight, q_map_bias), features(k, k_map_weight, k_map_bias), v};
}

torch::Tensor HedgehogImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  auto [q, k, v] = heads_contiguous(projection_.split(x));
  const auto fq = features(q, q_map_weight, q_map_bias), fk = features(k, k_map_weight, k_map_bias);
  if (is_training() && options_.distill_weight() > 0.0) {
    pending_loss_ = options_.distill_weight() * distillation_loss(q, k, causal(ctx));
  }
  return output(attend(fq, fk, v, ctx), x);
}

torch::Tensor HedgehogImpl::distillation_loss(const torch::Tensor& q, const torch::Tensor& k, bool causal) const {
  const auto n = q.size(2);
  auto logits = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(q.size(-1)));
  if (causal) logits = logits.masked_fill(causal_mask(n, q.device()), -std::numeric_limits<double>::infinity());
  const auto teacher = torch::softmax(logits, -1).detach();
  auto student =
      linear_weights(features(q, q_map_weight, q_map_bias), features(k, k_map_weight, k_map_bias), {}, causal);
  student = student / student.sum(-1, true);
  return -(teacher * student.clamp_min(1e-12).log()).sum(-1).mean();
}

torch::Tensor HedgehogImpl::take_auxiliary_loss() {
  auto loss = pending_loss_;
  pending_loss_ = torch::Tensor();
  return loss;
}

torch::Tensor HedgehogImpl::output(const torch::Tensor& o, const torch::Tensor& x) {
  return output_.merge(o, x, is_training());
}

LinearMixerImpl::StateDims HedgehogImpl::state_dims() const {
  return {projection_.heads(), 2 * feature_dim_, projection_.head_dim()};
}

const OptionsSchema<HedgehogOptions>& hedgehog_schema() {
  static const auto schema = [] {
    OptionsSchema<HedgehogOptions> s;
    declare_linear_attention_options(s);
    BLOCKLAB_OPTION(s, feature_dim, "d' of each learnable map, features 2d' (default 0 = the head width)").min = 0;
    s.choice(
        "feature_map", {"softmax_dim", "exp", "joint_softmax"},
        "phi from z = x W + b: softmax_dim [softmax(z) || softmax(-z)], exp [exp(z) || exp(-z)] (the paper's), "
        "joint_softmax softmax([z || -z]) (default softmax_dim)",
        [](HedgehogOptions& o, const std::string& v) { o.feature_map(v); },
        [](const HedgehogOptions& o) { return o.feature_map(); });
    BLOCKLAB_OPTION(s, distill_weight,
                    "weight of the attention-distillation loss -sum A^soft log A^hh added in training (default 0 = "
                    "off)")
        .min = 0.0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(HedgehogImpl::kKey)
                      .summary("Hedgehog: linear attention with learnable spiky feature maps (softmax mimicry)")
                      .paper("The Hedgehog & the Porcupine (Zhang et al., 2024), arXiv:2402.04347")
                      .equation("phi(q_i)^T sum_j phi(k_j) v_j^T / phi(q_i)^T sum_j phi(k_j), phi(x) = [softmax(xW+b) "
                                "|| softmax(-(xW+b))] per head")
                      .schema(hedgehog_schema().schema())
                      .example("{heads: 2, chunk: 16}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto options = bind_options(hedgehog_schema(), params);
                    check_heads(args.dim, options.heads(), params);
                    return std::make_shared<HedgehogImpl>(args.dim, options);
                  });

}  // namespace
}  // namespace blocklab
