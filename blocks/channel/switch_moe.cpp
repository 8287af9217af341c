#include "blocks/channel/switch_moe.h"

#include <cmath>

#include "blocks/common/options.h"

namespace blocklab {

SwitchMoeImpl::SwitchMoeImpl(std::int64_t dim, const SwitchMoeOptions& options) : options_(options) {
  TORCH_CHECK(options.top_k() >= 1 && options.top_k() <= options.experts(), kKey, ": top_k must be in [1, experts]");
  router = register_module("router", torch::nn::Linear(torch::nn::LinearOptions(dim, options.experts()).bias(false)));
  // Each expert an mlp; `hidden` as the ratio hidden / dim, which hidden_width rounds back to hidden.
  const double ratio = options.hidden() > 0 ? double(options.hidden()) / double(dim) : options.ratio();
  const auto expert_options = MlpOptions().ratio(ratio).drop(options.drop()).activation(options.activation());
  experts = register_module("experts", torch::nn::ModuleList());
  for (std::int64_t e = 0; e < options.experts(); ++e) experts->push_back(Mlp(dim, expert_options));
}

torch::Tensor SwitchMoeImpl::kept_assignments(const torch::Tensor& choice) const {
  if (options_.capacity_factor() <= 0.0) return torch::ones_like(choice, torch::kBool);
  const auto tokens = choice.size(0), k = choice.size(1), e = options_.experts();
  const auto capacity =
      static_cast<std::int64_t>(std::ceil(options_.capacity_factor() * double(k * tokens) / double(e)));
  // Priority: every first choice in token order, then every second choice (GShard).
  const auto order = choice.t().reshape({-1});
  const auto one_hot = torch::one_hot(order, e);
  const auto position = (one_hot.cumsum(0) * one_hot).sum(-1) - 1;  // place in its expert's queue
  return position.lt(capacity).view({k, tokens}).t();
}

torch::Tensor SwitchMoeImpl::router_loss(const torch::Tensor& logits, const torch::Tensor& probs,
                                         const torch::Tensor& first_choice) const {
  torch::Tensor loss;
  const auto tokens = probs.size(0), e = probs.size(1);
  if (tokens == 0) return loss;
  if (options_.balance_weight() > 0.0) {  // Switch eq. 4-6: alpha E sum_e f_e P_e
    const auto f = torch::bincount(first_choice.contiguous(), {}, e).to(probs.dtype()) / double(tokens);
    loss = options_.balance_weight() * double(e) * (f * probs.mean(0)).sum();
  }
  if (options_.z_loss_weight() > 0.0) {  // ST-MoE eq. 5
    const auto z = options_.z_loss_weight() * torch::logsumexp(logits, -1).pow(2).mean();
    loss = loss.defined() ? loss + z : z;
  }
  return loss;
}

torch::Tensor SwitchMoeImpl::forward(const torch::Tensor& x) {
  const auto tokens = x.reshape({-1, x.size(-1)});  // [T, C]
  auto router_input = tokens;
  if (is_training() && options_.jitter() > 0.0)  // Switch §2.4: multiplicative jitter on the router input
    router_input = tokens * torch::empty_like(tokens).uniform_(1.0 - options_.jitter(), 1.0 + options_.jitter());
  const auto logits = router->forward(router_input);  // [T, E]
  const auto probs = torch::softmax(logits, -1);
  const auto [top, choice] = probs.topk(options_.top_k(), -1);  // [T, k], largest first
  const auto gates = options_.top_k() > 1 ? top / top.sum(-1, true) : top;
  const auto kept = kept_assignments(choice);
  auto y = torch::zeros_like(tokens);
  for (std::int64_t e = 0; e < options_.experts(); ++e) {
    // Every expert runs (on no token at all, when none is routed to it): its weights stay in the graph.
    const auto where = choice.eq(e).logical_and(kept).nonzero();  // [n, 2]: token, slot
    const auto token = where.select(1, 0), slot = where.select(1, 1);
    const auto gate = gates.index({token, slot}).unsqueeze(-1);
    y = y.index_add(0, token, gate * expert(e).forward(tokens.index_select(0, token)));
  }
  {
    torch::NoGradGuard no_grad;
    routed_counts_ = torch::bincount(choice.reshape({-1}), {}, options_.experts());
    kept_counts_ = torch::bincount(choice.masked_select(kept), {}, options_.experts());
  }
  if (is_training()) pending_loss_ = router_loss(logits, probs, choice.select(1, 0));
  return y.view(x.sizes());
}

torch::Tensor SwitchMoeImpl::take_auxiliary_loss() {
  auto loss = pending_loss_;
  pending_loss_ = torch::Tensor();
  return loss;
}

const OptionsSchema<SwitchMoeOptions>& switch_moe_schema() {
  static const auto schema = [] {
    using O = SwitchMoeOptions;
    OptionsSchema<O> s;
    BLOCKLAB_OPTION(s, experts, "E, the number of expert FFNs (default 8)").min = 1;
    BLOCKLAB_OPTION(s, ratio, "each expert's hidden width / dim (default 4)").min = 1e-3;
    BLOCKLAB_OPTION(s, hidden, "each expert's hidden width, overriding ratio (default 0 = round(ratio * dim))").min = 0;
    declare_activation(s, {"gelu", "relu", "silu"}, "activation inside each expert (default gelu)");
    rate(BLOCKLAB_OPTION(s, drop, "dropout inside each expert, after the activation and the output (default 0)"));
    auto& top_k =
        BLOCKLAB_OPTION(s, top_k, "experts per token: 1 (Switch) or 2 (GShard, renormalised gates) (default 1)");
    top_k.min = 1;
    top_k.max = 2;
    BLOCKLAB_OPTION(s, capacity_factor,
                    "each expert takes at most ceil(capacity_factor k T / E) of the call's T tokens, the rest are "
                    "dropped (output 0); the paper uses 1.0-1.25 (default 0 = unlimited: tokens stay independent)")
        .min = 0.0;
    BLOCKLAB_OPTION(s, balance_weight,
                    "alpha of the load-balancing loss alpha E sum_e f_e P_e, training (default 0.01)")
        .min = 0.0;
    BLOCKLAB_OPTION(s, z_loss_weight,
                    "beta of the router z-loss beta mean logsumexp(r)^2, training (default 0; ST-MoE 1e-3)")
        .min = 0.0;
    rate(BLOCKLAB_OPTION(s, jitter, "router input times U(1 - jitter, 1 + jitter) in training (default 0 = off)"));
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(channel_registry(),
                  BLOCKLAB_ENTRY(SwitchMoeImpl::kKey)
                      .summary("Switch Transformer mixture-of-experts FFN: top-1 (or GShard top-2) routing to E "
                               "expert mlps, capacity dropping, load-balancing loss")
                      .paper("Switch Transformers (Fedus, Zoph & Shazeer, 2021), arXiv:2101.03961")
                      .equation("y = p_e(x) FFN_e(x), e = argmax softmax(x W_r); loss alpha E sum_e f_e P_e")
                      .schema(switch_moe_schema().schema())
                      .example("{experts: 4, ratio: 1}"),
                  [](const ConfigNode& params, std::int64_t dim) -> ChannelMixer {
                    const auto options = bind_options(switch_moe_schema(), params);
                    if (options.top_k() > options.experts())
                      config_fail(params, "top_k",
                                  std::string(SwitchMoeImpl::kKey) + ": top_k " + std::to_string(options.top_k()) +
                                      " needs at least as many experts, got experts " +
                                      std::to_string(options.experts()),
                                  {"top_k: 1", "experts: " + std::to_string(options.top_k())});
                    return std::make_shared<SwitchMoeImpl>(dim, options);
                  });

}  // namespace
}  // namespace blocklab
