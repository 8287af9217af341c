// channel/switch-moe: the Switch Transformer's mixture-of-experts FFN (top-1 routing), with
// GShard's top-2 as an option: each token goes through one (two) of E expert FFNs.
//
// Papers: "Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient
// Sparsity", Fedus, Zoph & Shazeer, 2021, arXiv:2101.03961 (§2.1 routing and capacity, eq. 4-6
// the load-balancing loss, §2.4 jitter); "GShard", Lepikhin et al. 2020, arXiv:2006.16668
// (Algorithm 1: top-2 with renormalised gates); router z-loss from "ST-MoE", Zoph et al. 2022,
// arXiv:2202.08906 (eq. 5). Used in "Robust QA System with Transformer-based MoE" (catalog
// 003/004 C34). On the T tokens of the flattened input x [T, C]:
//   r = x W_r (C -> E, no bias; training: x multiplied by U(1 - jitter, 1 + jitter) first)
//   p = softmax(r);  top_k 1: e(t) = argmax p_t, g_t = p_{t,e(t)}
//                    top_k 2: e1, e2 the two largest, g_i = p_{t,e_i} / (p_{t,e1} + p_{t,e2})
//   y_t = sum over the token's kept choices of g_i FFN_{e_i}(x_t),  FFN_e = W2 act(W1 x + b1) + b2
// each expert an `mlp` (blocks/channel/mlp.h): hidden width round(ratio C) (or `hidden`), GELU.
// Capacity (capacity_factor > 0): each expert takes at most ceil(capacity_factor k T / E)
// assignments (Switch: k = 1; GShard's 2T/E for k = 2), in priority order: every token's first
// choice in token order, then every second choice; a dropped assignment contributes 0 (a token
// dropped by all its choices outputs exactly 0: the block's residual carries it). Gates are
// normalised before dropping (GShard's Algorithm 1).
// Auxiliary loss (blocks/auxiliary_loss.h), training forwards only:
//   balance_weight E sum_e f_e P_e + z_loss_weight mean_t logsumexp(r_t)^2
// f_e = fraction of the T tokens whose first choice is e (before capacity; GShard counts the
// first choice for top-2 too), P_e = mean_t p_{t,e} (the differentiable part).
//
// Decisions where the catalog is silent:
// - capacity_factor 0 (default) means unlimited: no token is ever dropped, so the layer keeps the
//   channel-mixer contract (changing token j changes only token j's output). With a finite
//   capacity (the paper's 1.0-1.25) the T tokens of the whole call, batch included, compete for
//   the slots (Switch's group): an earlier token can then push a later one out.
// - z_loss_weight 0 by default (the Switch baseline has no z-loss; ST-MoE uses 1e-3).
// - jitter 0 by default (Switch found it unnecessary without selective precision).
//
// Shape contract: x [..., C] -> [..., C]; tokens are mixed only through capacity dropping.
#pragma once

#include "blocks/auxiliary_loss.h"
#include "blocks/channel/mlp.h"
#include "blocks/interfaces.h"

namespace blocklab {

struct SwitchMoeOptions {
  TORCH_ARG(std::int64_t, experts) = 8;         // E (default 8)
  TORCH_ARG(double, ratio) = 4.0;               // expert hidden width / dim (default 4)
  TORCH_ARG(std::int64_t, hidden) = 0;          // expert hidden width; 0 = round(ratio * dim) (default 0)
  TORCH_ARG(std::string, activation) = "gelu";  // gelu | relu | silu (default gelu)
  TORCH_ARG(double, drop) = 0.0;                // dropout inside each expert (default 0)
  TORCH_ARG(std::int64_t, top_k) = 1;           // experts per token, 1 (Switch) or 2 (GShard) (default 1)
  TORCH_ARG(double, capacity_factor) = 0.0;     // capacity ceil(cf k T / E); 0 = unlimited (default 0)
  TORCH_ARG(double, balance_weight) = 0.01;     // alpha of the load-balancing loss (default 0.01)
  TORCH_ARG(double, z_loss_weight) = 0.0;       // beta of the router z-loss (default 0 = off)
  TORCH_ARG(double, jitter) = 0.0;              // multiplicative router-input noise in training (default 0)
};

class SwitchMoeImpl : public ChannelMixerImpl, public AuxiliaryLoss {
 public:
  static constexpr const char* kKey = "channel/switch-moe";
  SwitchMoeImpl(std::int64_t dim, const SwitchMoeOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x) override;
  torch::Tensor take_auxiliary_loss() override;
  const SwitchMoeOptions& options() const { return options_; }

  // Expert e (an mlp).
  MlpImpl& expert(std::int64_t e) const { return *experts->ptr<MlpImpl>(e); }
  // Of the last forward, per expert [E] (int64): the assignments it processed (after capacity)
  // and those routed to it (before capacity; sum k T).
  const torch::Tensor& expert_counts() const { return kept_counts_; }
  const torch::Tensor& routed_counts() const { return routed_counts_; }

  torch::nn::Linear router{nullptr};  // W_r: C -> E, no bias
  torch::nn::ModuleList experts{nullptr};

 private:
  // Which of the [T, k] assignments `choice` an expert keeps under the capacity (all when unlimited).
  torch::Tensor kept_assignments(const torch::Tensor& choice) const;
  // alpha E sum_e f_e P_e + beta mean lse(r)^2 from the router logits [T, E] and probabilities.
  torch::Tensor router_loss(const torch::Tensor& logits, const torch::Tensor& probs,
                            const torch::Tensor& first_choice) const;

  SwitchMoeOptions options_;
  torch::Tensor pending_loss_, kept_counts_, routed_counts_;
};
TORCH_MODULE(SwitchMoe);

const OptionsSchema<SwitchMoeOptions>& switch_moe_schema();

}  // namespace blocklab
