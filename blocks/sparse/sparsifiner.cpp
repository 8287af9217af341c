#include "blocks/sparse/sparsifiner.h"

#include <algorithm>
#include <cmath>

#include "blocks/common/init.h"
#include "blocks/local/local_attention.h"
#include "blocks/probe.h"
#include "registry/config_error.h"

namespace blocklab {

SparsifinerAttentionImpl::SparsifinerAttentionImpl(std::int64_t dim, const SparsifinerAttentionOptions& options,
                                                   const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config),
      options_(options),
      max_tokens_(config.max_tokens),
      attn_drop_(config.attn_drop) {
  TORCH_CHECK(max_tokens_ >= 1, kKey, ": needs max_tokens (the longest sequence) to size P_n and the basis");
  const auto reduced_c = std::max<std::int64_t>(1, head_dim() / options.reduce_c());
  const auto reduced_n = std::max<std::int64_t>(1, max_tokens_ / options.reduce_n());
  proj_c_q = register_module("proj_c_q", make_linear(head_dim(), reduced_c, /*bias=*/true));
  proj_c_k = register_module("proj_c_k", make_linear(head_dim(), reduced_c, /*bias=*/true));
  // Both tables trunc-normal std 0.02, as the code (separate tables: share_inout_proj false).
  proj_n = register_parameter("proj_n", trunc_normal_(torch::empty({max_tokens_, reduced_n}), 0.02));
  proj_back_n = register_parameter("proj_back_n", trunc_normal_(torch::empty({max_tokens_, reduced_n}), 0.02));
}

MixerCapabilities SparsifinerAttentionImpl::core_capabilities() const {
  MixerCapabilities c;
  c.weights = MixerCapabilities::Weights::normalised;  // softmax over each row's kept keys
  return c;
}

std::int64_t SparsifinerAttentionImpl::kept_keys(std::int64_t tokens) const {
  const auto k = static_cast<std::int64_t>(std::ceil(options_.keep_rate() * double(tokens)));
  return std::clamp<std::int64_t>(k, 1, tokens);
}

torch::Tensor SparsifinerAttentionImpl::coefficients(const torch::Tensor& q, const torch::Tensor& k,
                                                     std::int64_t prefix) {
  const auto tokens = k.size(2);
  const auto q_low = proj_c_q->forward(q.detach().narrow(2, prefix, q.size(2) - prefix));  // q~ [B, h, N_body, c]
  const auto k_low = proj_c_k->forward(k.detach());                                        // k~ [B, h, N, c]
  const auto k_hat = torch::matmul(k_low.transpose(-2, -1), proj_n.narrow(0, 0, tokens));  // k^ [B, h, c, N_max / r_n]
  return torch::softmax(torch::matmul(q_low, k_hat) / std::sqrt(double(heads())), -1);
}

torch::Tensor SparsifinerAttentionImpl::basis(std::int64_t tokens) const {
  return proj_back_n.narrow(0, 0, tokens).t();
}

SparsifinerScan SparsifinerAttentionImpl::scan(const torch::Tensor& q, const torch::Tensor& k,
                                               const torch::Tensor& coef, const torch::Tensor& basis,
                                               std::int64_t prefix, bool teacher) const {
  torch::NoGradGuard no_grad;
  const auto body = coef.size(2), kept = kept_keys(k.size(2));
  SparsifinerScan out;
  if (teacher) {
    out.loss = torch::zeros({}, coef.options());
    out.grad_basis = torch::zeros_like(basis);
  }
  std::vector<torch::Tensor> keys, grad_coef;
  for (std::int64_t start = 0; start < body; start += options_.query_chunk()) {
    const auto rows = std::min(options_.query_chunk(), body - start);
    const auto c = coef.narrow(2, start, rows);
    const auto approx = torch::matmul(c, basis);  // [B, h, rows, N]
    keys.push_back(std::get<1>(approx.topk(kept, -1)));
    if (!teacher) continue;
    // The dense attention rows of these queries (the teacher), and d/d(approx) of sum (approx - A)^2.
    const auto logits = torch::matmul(q.narrow(2, prefix + start, rows) * scale(), k.transpose(-2, -1));
    const auto diff = approx - torch::softmax(logits, -1);
    out.loss += diff.pow(2).sum();
    grad_coef.push_back(2.0 * torch::matmul(diff, basis.t()));
    out.grad_basis += 2.0 * torch::matmul(c.transpose(-2, -1), diff).sum(torch::IntArrayRef{0, 1});
  }
  out.keys = body > 0 ? torch::cat(keys, 2)
                      : torch::empty({coef.size(0), coef.size(1), 0, kept}, coef.options().dtype(torch::kLong));
  if (teacher) out.grad_coef = body > 0 ? torch::cat(grad_coef, 2) : torch::zeros_like(coef);
  return out;
}

std::vector<RoutedGroups> SparsifinerAttentionImpl::groups(const torch::Tensor& kept, std::int64_t tokens,
                                                           std::int64_t prefix) const {
  const auto index = kept.options();
  std::vector<RoutedGroups> out;
  if (const auto body = tokens - prefix; body > 0)  // one group per body query: it and its k keys
    out.push_back({torch::arange(prefix, tokens, index).view({1, 1, body, 1}), kept, {}, {}});
  if (prefix > 0)  // the prefix queries see every key (the code's class row of M is all ones)
    out.push_back({torch::arange(prefix, index).view({1, 1, 1, prefix}),
                   torch::arange(tokens, index).view({1, 1, 1, tokens}),
                   {},
                   {}});
  return out;
}

torch::Tensor SparsifinerAttentionImpl::attend(const torch::Tensor& q_in, const torch::Tensor& k_in,
                                               const torch::Tensor& v, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, key(),
              ": has no causal form (P_n mixes every key into the predictor, so later tokens change which "
              "earlier keys a query keeps)");
  const auto [q, k] = queries_keys(q_in, k_in, ctx);
  const auto tokens = k.size(2);
  TORCH_CHECK(tokens <= max_tokens_, key(), ": ", tokens,
              " tokens, but P_n and the basis have max_tokens = ", max_tokens_, " rows (the model's longest sequence)");
  const auto prefix = std::min(ctx.prefix_tokens, tokens);
  const auto coef = coefficients(q, k, prefix);
  const auto basis_n = basis(tokens);
  const bool teacher = is_training() && options_.recon_weight() > 0.0;
  const auto found = scan(q, k, coef, basis_n, prefix, teacher);
  const bool record = capturing(ctx.probe);
  torch::Tensor o, probe_map;
  for (const auto& g : groups(found.keys, tokens, prefix)) {  // disjoint queries: summed
    torch::Tensor w, lse;
    const auto part = routed_attend(q, k, v, g, scale(), RoutedMerge::mean, record ? &w : nullptr,
                                    record ? &lse : nullptr, attn_drop_, is_training());
    o = o.defined() ? o + part : part;
    if (record) {
      const auto dense = routed_weights_dense(w, lse, g, tokens, tokens, RoutedMerge::mean);
      probe_map = probe_map.defined() ? probe_map + dense : dense;
    }
  }
  if (record) ctx.probe->record(ctx.layer, key(), probe_map);
  if (teacher) {  // L_recon with its exact value and, through a first-order surrogate, its exact gradients
    const auto surrogate = (coef * found.grad_coef).sum() + (basis_n * found.grad_basis).sum();
    const double rows = static_cast<double>(q.size(0) * q.size(1) * (tokens - prefix));  // mean over (b, h, i)
    pending_loss_ = options_.recon_weight() / std::max(rows, 1.0) * (found.loss + surrogate - surrogate.detach());
  }
  // The mask is detached, so the task loss gives the predictor no gradient; this zero-weighted
  // term makes that gradient a defined zero (every parameter is in the task's graph).
  if (torch::GradMode::is_enabled()) o = o + 0.0 * (coef.sum() + basis_n.sum());
  return o;
}

torch::Tensor SparsifinerAttentionImpl::take_auxiliary_loss() {
  auto loss = pending_loss_;
  pending_loss_ = torch::Tensor();
  return loss;
}

const OptionsSchema<SparsifinerAttentionOptions>& sparsifiner_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<SparsifinerAttentionOptions> s;
    declare_multi_head_options(s);
    rate(BLOCKLAB_OPTION(s, keep_rate,
                         "fraction of the keys each body query keeps, k = ceil(keep_rate N), in (0, 1] (default "
                         "0.25; 1: softmax attention)"));
    BLOCKLAB_OPTION(s, reduce_n, "r_n: P_n reduces the max_tokens tokens to max_tokens / r_n (default 8)").min = 1;
    BLOCKLAB_OPTION(s, reduce_c, "r_c: the predictor's width is head_dim / r_c (default 2)").min = 1;
    BLOCKLAB_OPTION(s, recon_weight,
                    "weight of the reconstruction loss, per attention row sum_j (approx - dense attention)^2 "
                    "averaged over batch, heads and rows, that trains the predictor (default 1; 0: off)")
        .min = 0.0;
    BLOCKLAB_OPTION(s, query_chunk, "query rows per chunk of the N-wide predictor and teacher rows (default 64)").min =
        1;
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_sparsifiner(const ConfigNode& params, const MixerArgs& args) {
  return make_local_attention<SparsifinerAttentionImpl>(
      sparsifiner_attention_schema(), params, args, [&](SparsifinerAttentionOptions& options) {
        if (options.keep_rate() <= 0.0)
          config_fail(params, "keep_rate", "keep_rate must be in (0, 1]: every query keeps at least one key",
                      {"e.g. keep_rate: 0.25"});
        const auto width = options.head_dim() > 0 ? options.head_dim() : args.dim / options.heads();
        if (options.reduce_c() > width)
          config_fail(params, "reduce_c",
                      "reduce_c must be at most the head width " + std::to_string(width) + ", got " +
                          std::to_string(options.reduce_c()));
        longest_sequence(args, params, "reduce_n", 1,
                         "P_n and the basis have one row per token up to the longest sequence, but the model "
                         "gives none",
                         "build it inside a model that knows its sequence length (max_tokens)");
      });
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(SparsifinerAttentionImpl::kKey)
                      .summary("Sparsifiner attention: each query keeps the top-k keys of a low-rank connectivity "
                               "predictor trained to reconstruct the dense attention rows")
                      .paper("Sparsifiner: Learning Sparse Instance-Dependent Attention for Efficient Vision "
                             "Transformers (Wei et al., 2023), arXiv:2303.13755")
                      .equation("approx = softmax(q W_cq (k W_ck)^T P_n / sqrt(h)) P_back^T; M = top-k rows of "
                                "approx; A = softmax(q k^T / sqrt(d), -inf outside M); aux sum (approx - A_dense)^2")
                      .schema(sparsifiner_attention_schema().schema())
                      .example("{heads: 2, query_chunk: 8}"),
                  make_sparsifiner);

}  // namespace
}  // namespace blocklab
