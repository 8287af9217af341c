#include "blocks/sparse/hyper.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <optional>

#include "blocks/local/local_attention.h"
#include "blocks/probe.h"
#include "registry/config_error.h"

namespace blocklab {

namespace {

// Softmax of logits [..., m] (-inf: not seen) applied to v [..., m, e] -> (o [..., e], lse [...]);
// a row that sees no key gives o = 0 and lse = -inf (without NaN in either direction).
HyperResult hyper_softmax_rows(const torch::Tensor& logits, const torch::Tensor& v, double attn_drop, bool training) {
  const auto seen = (logits != kMinusInf).any(-1);
  const auto safe = logits.masked_fill(seen.logical_not().unsqueeze(-1), 0.0);
  const auto w = torch::softmax(safe, -1) * seen.unsqueeze(-1).to(safe.scalar_type());
  const auto lse = torch::logsumexp(safe, -1).masked_fill(seen.logical_not(), kMinusInf);
  const auto dropped = attn_drop > 0.0 ? torch::dropout(w, attn_drop, training) : w;
  return {torch::matmul(dropped, v), lse};
}

// Rows of x [B, h, N, w] in the order index [B, h, N].
torch::Tensor hyper_rows(const torch::Tensor& x, const torch::Tensor& index) {
  return x.gather(2, index.unsqueeze(-1).expand({-1, -1, -1, x.size(3)}));
}

// x [B, h, N, w] padded with zero rows to G * b and cut into [B, h, G, b, w].
torch::Tensor hyper_blocks(const torch::Tensor& x, std::int64_t groups, std::int64_t block) {
  return torch::constant_pad_nd(x, {0, 0, 0, groups * block - x.size(2)}).unflatten(2, {groups, block});
}

}  // namespace

torch::Tensor hyper_samples(std::int64_t seed, std::int64_t heads, std::int64_t tokens, std::int64_t count) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(seed));
  return torch::randint(tokens, {heads, count}, generator, torch::kLong);
}

HyperResult hyper_merge(const HyperResult& first, const HyperResult& second) {
  const auto& [o1, lse1] = first;
  const auto& [o2, lse2] = second;
  const auto c = torch::sigmoid(lse1 - lse2);  // 1 / (1 + exp(lse2 - lse1))
  const auto cw = c.unsqueeze(-1);
  return {cw * o1 + (1.0 - cw) * o2, lse1 + torch::softplus(lse2 - lse1)};  // lse1 - log c
}

HyperResult hyper_exact(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                        bool causal, std::int64_t chunk, double attn_drop, bool training) {
  const auto queries = q.size(2), keys = k.size(2);
  const auto key_position = torch::arange(keys, q.options().dtype(torch::kLong)).view({1, -1});
  std::vector<torch::Tensor> outputs, normalisers;
  for (std::int64_t start = 0; start < queries; start += chunk) {
    const auto length = std::min(chunk, queries - start);
    auto logits = torch::matmul(q.narrow(2, start, length) * scale, k.transpose(-2, -1));  // [B, h, c, N_k]
    if (causal) {
      const auto query_position = torch::arange(start, start + length, key_position.options()).view({-1, 1});
      logits = logits.masked_fill(key_position > query_position, kMinusInf);
    }
    auto [o, lse] = hyper_softmax_rows(logits, v, attn_drop, training);
    outputs.push_back(o);
    normalisers.push_back(lse);
  }
  return {torch::cat(outputs, 2), torch::cat(normalisers, 2)};
}

HyperAttentionImpl::HyperAttentionImpl(std::int64_t dim, const HyperAttentionOptions& options,
                                       const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options), attn_drop_(config.attn_drop) {
  lsh_directions = register_buffer("lsh_directions", torch::randn({head_dim(), options.lsh_projections()}));
}

MixerCapabilities HyperAttentionImpl::core_capabilities() const {
  MixerCapabilities c;
  c.causal = true;
  c.weights = MixerCapabilities::Weights::normalised;
  return c;
}

torch::Tensor HyperAttentionImpl::buckets(const torch::Tensor& x) const {
  const auto bits = torch::matmul(x.detach(), lsh_directions.to(x.dtype())).gt(0).to(torch::kLong);  // [B, h, N, r]
  const auto powers = torch::pow(2, torch::arange(options_.lsh_projections(), bits.options()));
  const auto value = (bits * powers).sum(-1);
  return torch::bitwise_xor(value, value.div(2, "floor"));  // the reflected Gray code of the bit pattern
}

HyperPattern HyperAttentionImpl::pattern(const torch::Tensor& q, const torch::Tensor& k, bool by_keys) const {
  HyperPattern p;
  const auto tokens = k.size(2);
  p.block = std::min(options_.block_size(), tokens);
  const auto stable = std::optional<bool>(true);
  const auto key_buckets = buckets(k);
  p.key_order = std::get<1>(key_buckets.sort(stable, /*dim=*/2, /*descending=*/false));
  if (by_keys) {  // the key block where the query's bucket falls among the sorted keys
    const auto place = torch::searchsorted(key_buckets.gather(2, p.key_order), buckets(q));
    p.query_block = place.clamp_max(tokens - 1).div(p.block, "floor");
  } else {  // the code: the i-th sorted query takes the block of the i-th sorted key
    TORCH_CHECK(q.size(2) == tokens, key(), ": queries and keys must be as many");
    p.query_order = std::get<1>(buckets(q).sort(stable, /*dim=*/2, /*descending=*/false));
    const auto rank_block = torch::arange(tokens, p.query_order.options()).div(p.block, "floor");
    p.query_block = torch::empty_like(p.query_order).scatter_(2, p.query_order, rank_block.expand_as(p.query_order));
  }
  if (tokens > p.block && options_.sample_size() > 0)
    p.samples = hyper_samples(options_.seed(), q.size(1), tokens, options_.sample_size()).to(q.device());
  return p;
}

HyperResult HyperAttentionImpl::block_part(const torch::Tensor& q, const torch::Tensor& ks, const torch::Tensor& vs,
                                           const torch::Tensor& query_block) {
  const auto tokens = ks.size(2), block = std::min(options_.block_size(), tokens);
  const auto groups = (tokens + block - 1) / block;
  // Each query's key block, [B, h, N_q, b, .] (zero keys after the last one, masked).
  const auto index = query_block.unsqueeze(-1).unsqueeze(-1);
  const auto gather = [&](const torch::Tensor& x) {
    const auto blocks = hyper_blocks(x, groups, block);
    return blocks.gather(2, index.expand({-1, -1, -1, block, x.size(3)}));
  };
  const auto column = query_block.unsqueeze(-1) * block + torch::arange(block, query_block.options());
  const auto logits = torch::matmul(q.unsqueeze(3) * scale(), gather(ks).transpose(-2, -1))  // [B, h, N_q, 1, b]
                          .masked_fill((column >= tokens).unsqueeze(3), kMinusInf);
  const auto [o, lse] = hyper_softmax_rows(logits, gather(vs), attn_drop_, is_training());
  return {o.squeeze(3), lse.squeeze(3)};
}

HyperResult HyperAttentionImpl::residual_part(const torch::Tensor& q, const torch::Tensor& ks, const torch::Tensor& vs,
                                              const torch::Tensor& samples, const torch::Tensor& query_block) {
  const auto tokens = ks.size(2), block = std::min(options_.block_size(), tokens), count = samples.size(-1);
  const auto chosen = samples.to(q.device());
  const auto index = chosen.unsqueeze(0).expand({q.size(0), -1, -1});  // [B, h, s]
  auto logits = torch::matmul(q * scale(), hyper_rows(ks, index).transpose(-2, -1)) +
                std::log(double(tokens) / double(count));  // [B, h, N_q, s], importance weight N / s
  // Samples in the query's own block are already counted by the block part.
  const auto own_block = chosen.div(block, "floor").unsqueeze(1) == query_block.unsqueeze(-1);  // [B, h, N_q, s]
  logits = logits.masked_fill(own_block, kMinusInf);
  return hyper_softmax_rows(logits, hyper_rows(vs, index), attn_drop_, is_training());
}

HyperResult HyperAttentionImpl::attend_non_causal(const torch::Tensor& q, const torch::Tensor& k,
                                                  const torch::Tensor& v, bool by_keys) {
  if (k.size(2) <= options_.min_seq_len())
    return hyper_exact(q, k, v, scale(), false, options_.block_size(), attn_drop_, is_training());
  const auto p = pattern(q, k, by_keys);
  const auto ks = hyper_rows(k, p.key_order), vs = hyper_rows(v, p.key_order);
  const auto blocks = block_part(q, ks, vs, p.query_block);
  if (!p.samples.defined()) return blocks;
  return hyper_merge(blocks, residual_part(q, ks, vs, p.samples, p.query_block));
}

HyperResult HyperAttentionImpl::attend_causal(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const auto batch = q.size(0), heads = q.size(1), tokens = q.size(2);
  if (tokens <= options_.min_seq_len())
    return hyper_exact(q, k, v, scale(), true, options_.block_size(), attn_drop_, is_training());
  // An odd length gets one zero token at the end (seen by no real token), as the code.
  const auto extra = tokens % 2, half = (tokens + extra) / 2;
  const auto pad = [&](const torch::Tensor& x) { return torch::constant_pad_nd(x, {0, 0, 0, extra}); };
  const auto qp = pad(q), kp = pad(k), vp = pad(v);
  // The two diagonal halves, stacked as heads: causal HyperAttention on each.
  const auto halves = [&](const torch::Tensor& x) { return x.reshape({batch, 2 * heads, half, x.size(3)}); };
  auto [o_diag, lse_diag] = attend_causal(halves(qp), halves(kp), halves(vp));
  o_diag = o_diag.reshape({batch, heads, 2 * half, v.size(3)});
  lse_diag = lse_diag.reshape({batch, heads, 2 * half});
  // The bottom-left block: the second half's queries over the first half's keys, not causal.
  const auto lower =
      attend_non_causal(qp.narrow(2, half, half), kp.narrow(2, 0, half), vp.narrow(2, 0, half), /*by_keys=*/true);
  const auto [o_down, lse_down] = hyper_merge({o_diag.narrow(2, half, half), lse_diag.narrow(2, half, half)}, lower);
  return {torch::cat({o_diag.narrow(2, 0, half), o_down}, 2).narrow(2, 0, tokens),
          torch::cat({lse_diag.narrow(2, 0, half), lse_down}, 2).narrow(2, 0, tokens)};
}

torch::Tensor HyperAttentionImpl::attend(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v,
                                         const MixerContext& ctx) {
  TORCH_CHECK(!ctx.lengths.defined(), key(), ": takes no key padding (ctx.lengths)");
  torch::Tensor q, k;
  std::tie(q, k) = queries_keys(q_in, k_in, ctx);
  const auto run = [&](const torch::Tensor& values) {
    return ctx.causal ? attend_causal(q, k, values).first : attend_non_causal(q, k, values).first;
  };
  if (capturing(ctx.probe)) {
    // The map is linear in the values: run on the identity to get the implied [N, N] weights.
    torch::NoGradGuard no_grad;
    const auto tokens = q.size(2);
    const auto identity = torch::eye(tokens, v.options()).expand({q.size(0), q.size(1), tokens, tokens});
    ctx.probe->record(ctx.layer, key(), run(identity));
  }
  return run(v);
}

const OptionsSchema<HyperAttentionOptions>& hyper_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<HyperAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, lsh_projections, "random directions r of the angular LSH, 2^r buckets (default 7)").min = 1;
    BLOCKLAB_OPTION(s, block_size, "b: sorted queries and keys per block of exact attention (default 256)").min = 1;
    BLOCKLAB_OPTION(s, sample_size, "s: keys sampled uniformly for the residual part (default 256; 0: none)").min = 0;
    BLOCKLAB_OPTION(s, min_seq_len, "exact attention up to this many tokens (default 4096)").min = 1;
    BLOCKLAB_OPTION(s, seed, "seed of the key sampling, drawn again the same on every call (default 0)").min = 0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(HyperAttentionImpl::kKey)
                      .summary("HyperAttention: exact attention inside blocks of queries and keys sorted by angular "
                               "LSH, plus s uniformly sampled keys weighted N / s, merged by log-sum-exp; causal by "
                               "recursion over halves")
                      .paper("HyperAttention: Long-context Attention in Near-Linear Time (Han et al., 2023), "
                             "arXiv:2310.05869")
                      .equation("o_i = softmax_j(q_i k_j / sqrt(d) + log m_ij) v_j; m_ij = 1 in i's sortLSH block, "
                                "count_ij N / s for sampled keys outside it, 0 elsewhere")
                      .schema(hyper_attention_schema().schema())
                      .example("{heads: 2, lsh_projections: 3, block_size: 4, sample_size: 4, min_seq_len: 8}"),
                  [](const ConfigNode& params, const MixerArgs& args) {
                    return make_local_attention<HyperAttentionImpl>(hyper_attention_schema(), params, args);
                  });

}  // namespace
}  // namespace blocklab
