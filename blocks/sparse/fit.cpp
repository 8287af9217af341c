#include "blocks/sparse/fit.h"

#include <cmath>
#include <string>

#include "blocks/attention/parts/local_patterns.h"
#include "blocks/common/init.h"
#include "registry/config_error.h"

namespace blocklab {

namespace {

torch::nn::LayerNorm fit_layer_norm(std::int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6));
}

// The read, global and write patterns of a body pattern: group k (counted over the parts in
// order) owns latents [k m, (k + 1) m); read: its latents see its tokens; global: every latent
// sees every latent (causal: those of groups <= k, FIT's get_chunk_ar_mask); write: its tokens
// see its latents (causal: those of group k - 1, FITAR's _latent_shift; group 0 sees the m zero
// latents appended after the t m).
void fit_cross_patterns(FitAttentionImpl::Groups& g, std::int64_t m, bool causal) {
  LocalPattern read, write;
  std::int64_t t = 0, offset = 0;
  for (const auto& part : g.body.parts) t += part.groups();
  for (const auto& part : g.body.parts) {
    const auto count = part.groups();
    const auto owner = torch::arange(offset, offset + count, torch::kLong);
    const auto latents = (owner * m).unsqueeze(1) + torch::arange(m, torch::kLong);
    read.parts.push_back({latents, part.query_index, {}});
    const auto source = causal ? torch::where(owner.gt(0), owner - 1, owner.new_full({}, t)) : owner;
    write.parts.push_back({part.query_index, (source * m).unsqueeze(1) + torch::arange(m, torch::kLong), {}});
    offset += count;
  }
  g.count = t;
  read.queries = t * m;
  read.keys = write.queries = g.body.queries;
  write.keys = (causal ? t + 1 : t) * m;
  // No query is its own key in a cross pattern (token_keys serves the probe of self patterns).
  read.token_keys = torch::zeros({read.queries}, torch::kLong);
  write.token_keys = torch::zeros({write.queries}, torch::kLong);
  g.read = finish_pattern(std::move(read));
  g.write = finish_pattern(std::move(write));
  LocalPattern global;
  const auto all = torch::arange(t * m, torch::kLong), owner = all.div(m, "floor");
  global.parts.push_back({all.unsqueeze(0), all.unsqueeze(0), {}});
  if (causal) global.parts[0].allowed = owner.unsqueeze(0).le(owner.unsqueeze(1)).unsqueeze(0);
  global.queries = global.keys = t * m;
  global.causal = causal;
  g.global = finish_pattern(std::move(global));
}

}  // namespace

LocalPattern fit_run_pattern(std::int64_t length, std::int64_t run, bool causal) {
  const auto whole = length / run, rest = length % run;
  LocalPattern p;
  const auto runs = torch::arange(whole * run, torch::kLong).view({whole, run});
  if (whole > 0) p.parts.push_back({runs, runs, {}});
  if (rest > 0) {
    const auto last = torch::arange(whole * run, length, torch::kLong).view({1, rest});
    p.parts.push_back({last, last, {}});
  }
  if (causal)  // causal within the run (FITAR's local layers)
    for (auto& part : p.parts)
      part.allowed = torch::ones({part.group_queries(), part.group_keys()}, torch::kBool)
                         .tril()
                         .unsqueeze(0)
                         .expand({part.groups(), -1, -1})
                         .contiguous();
  p.causal = causal;
  p.queries = p.keys = length;
  p.query_coords = p.key_coords = torch::stack({torch::zeros({length}, torch::kLong), torch::arange(length)}, 1);
  return finish_pattern(std::move(p));
}

FitCrossAttentionImpl::FitCrossAttentionImpl(std::int64_t dim, std::int64_t heads, std::int64_t head_dim, bool qkv_bias,
                                             double attn_drop, double proj_drop)
    : heads_(heads),
      head_dim_(head_dim),
      attn_drop_(attn_drop),
      output_(*this, heads * head_dim, dim, false, proj_drop) {
  query_norm = register_module("query_norm", fit_layer_norm(dim));
  context_norm = register_module("context_norm", fit_layer_norm(dim));
  q = register_module("q", make_linear(dim, heads * head_dim, qkv_bias));
  kv = register_module("kv", make_linear(dim, 2 * heads * head_dim, qkv_bias));
}

torch::Tensor FitCrossAttentionImpl::forward(const torch::Tensor& a, const torch::Tensor& c,
                                             const LocalPattern& pattern) {
  const auto batch = a.size(0);
  const auto queries = q->forward(query_norm->forward(a)).view({batch, a.size(1), heads_, head_dim_}).transpose(1, 2);
  const auto kvs = kv->forward(context_norm->forward(c)).view({batch, c.size(1), 2, heads_, head_dim_});
  const auto keys = kvs.select(2, 0).transpose(1, 2), values = kvs.select(2, 1).transpose(1, 2);
  const auto o = local_attend(queries, keys, values, pattern, {}, 1.0 / std::sqrt(static_cast<double>(head_dim_)),
                              nullptr, attn_drop_, is_training());
  return output_.merge(o, a, is_training());
}

FitAttentionImpl::FitAttentionImpl(std::int64_t dim, const FitAttentionOptions& options, const MultiHeadConfig& config)
    : LocalAttentionImpl(kKey, dim, config), options_(options), attn_drop_(config.attn_drop) {
  const auto m = options.latents();
  if (m == 0) return;
  const auto width = head_dim(), max_tokens = std::max<std::int64_t>(config.max_tokens, 1);
  const auto max_groups = (max_tokens + options.group() - 1) / options.group();  // bounds t on grids too
  latent_table = register_parameter("latents", trunc_normal_(torch::empty({max_groups, m, dim}), 1.0));
  read = register_module(
      "read", FitCrossAttention(dim, heads(), width, options.qkv_bias(), config.attn_drop, config.proj_drop));
  global_norm = register_module("global_norm", fit_layer_norm(dim));
  MultiHeadConfig global;
  global.projection = ProjectionConfig{heads(), 0, width, options.qkv_bias()};
  global.attn_drop = config.attn_drop;
  global.proj_drop = config.proj_drop;
  global_attention = register_module("global", std::make_shared<MultiHeadAttentionImpl>(kKey, dim, global));
  write = register_module(
      "write", FitCrossAttention(dim, heads(), width, options.qkv_bias(), config.attn_drop, config.proj_drop));
}

MixerCapabilities FitAttentionImpl::capabilities() const {
  MixerCapabilities c = LocalAttentionImpl::capabilities();
  c.causal = true;
  c.weights = MixerCapabilities::Weights::none;
  c.variable_lengths = false;
  return c;
}

LocalPattern FitAttentionImpl::body_pattern(std::int64_t height, std::int64_t width, bool causal) const {
  if (height == 1) return fit_run_pattern(width, fitted(width), causal);  // a sequence (or a one-row grid)
  TORCH_CHECK(!causal, key(), ": causal groups are runs of a sequence");
  return window_pattern(height, width, fitted(height), fitted(width));
}

const FitAttentionImpl::Groups& FitAttentionImpl::groups(std::int64_t height, std::int64_t width, bool causal,
                                                         const torch::Device& device) {
  if (!groups_ || groups_->height != height || groups_->width != width || groups_->causal != causal ||
      groups_->device != device) {
    Groups g;
    g.height = height;
    g.width = width;
    g.causal = causal;
    g.device = device;
    g.body = body_pattern(height, width, causal);
    fit_cross_patterns(g, options_.latents(), causal);
    for (auto* p : {&g.body, &g.read, &g.global, &g.write}) *p = p->to(device);
    groups_ = std::move(g);
  }
  return *groups_;
}

torch::Tensor FitAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  auto plain = ctx.without_probe();  // weights none: the probe's map does not cover the latent path
  if (ctx.causal) {                  // FITAR: the tokens, prefix included, as one sequence of runs in token order
    plain.grid_height = plain.grid_width = plain.prefix_tokens = 0;
    return mix(x, plain);
  }
  if (!ctx.has_grid()) return mix(x, plain);
  const auto height = ctx.grid_height, width = ctx.grid_width;
  const auto side_h = fitted(height), side_w = fitted(width);
  const auto pad_h = (side_h - height % side_h) % side_h, pad_w = (side_w - width % side_w) % side_w;
  return with_padded_grid(x, plain, pad_h, pad_w, [this](const torch::Tensor& padded, const MixerContext& padded_ctx) {
    return mix(padded, padded_ctx);
  });
}

torch::Tensor FitAttentionImpl::mix(const torch::Tensor& x, const MixerContext& ctx) {
  const auto local = MultiHeadAttentionImpl::forward(x, ctx);  // (1), over body_pattern
  if (options_.latents() == 0) return local;
  const auto prefix = ctx.has_grid() ? ctx.prefix_tokens : 0;
  const auto body = x.narrow(1, prefix, x.size(1) - prefix);
  const auto& g = ctx.has_grid() ? groups(ctx.grid_height, ctx.grid_width, false, x.device())
                                 : groups(1, body.size(1), ctx.causal, x.device());
  TORCH_CHECK(g.count <= max_groups(), key(), ": ", g.count, " groups exceed the latent table's ", max_groups(),
              " (sized for max_tokens); build the model for longer sequences");
  const auto start = latent_table.narrow(0, 0, g.count).flatten(0, 1).unsqueeze(0).expand({x.size(0), -1, -1});
  auto latents = start + read->forward(start, body, g.read);                                      // (2)
  latents = latents + global_mix(global_norm->forward(latents), g.global);                        // (3)
  if (ctx.causal) latents = torch::constant_pad_nd(latents, {0, 0, 0, options_.latents()}, 0.0);  // group -1's
  const auto written = write->forward(body, latents, g.write);                                    // (4)
  return local + torch::constant_pad_nd(written, {0, 0, prefix, 0}, 0.0);
}

torch::Tensor FitAttentionImpl::global_mix(const torch::Tensor& normed, const LocalPattern& pattern) {
  const auto [q, k, v] = global_attention->project(normed);
  const auto o = local_attend(q, k, v, pattern, {}, global_attention->scale(), nullptr, attn_drop_, is_training());
  return global_attention->merge(o, normed);
}

const OptionsSchema<FitAttentionOptions>& fit_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<FitAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, group,
                    "group side g: attention within g x g windows of the grid (zero-padded to whole windows), or "
                    "runs of g tokens of a sequence (default 7)")
        .min = 1;
    BLOCKLAB_OPTION(s, latents,
                    "m latents per group: read from the group, mixed globally, written back; 0 turns the global "
                    "path off (default 4)")
        .min = 0;
    return s;
  }();
  return schema;
}

namespace {

TokenMixer make_fit(const ConfigNode& params, const MixerArgs& args) {
  return make_local_attention<FitAttentionImpl>(fit_attention_schema(), params, args,
                                                [&](const FitAttentionOptions& options) {
                                                  if (options.latents() > 0)
                                                    longest_sequence(args, params, "latents", 1,
                                                                     "the latent table [t, m, C] is sized from the "
                                                                     "model's longest sequence, which is not given",
                                                                     "build the mixer inside a model, or latents: 0");
                                                });
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(FitAttentionImpl::kKey)
                      .summary("FIT: softmax attention within groups (g x g windows or runs of g tokens), plus m "
                               "learned latents per group that read their group, attend globally to each other and "
                               "are written back to the group's tokens")
                      .paper("FIT: Far-reaching Interleaved Transformers (Chen & Li, 2023), arXiv:2305.12689")
                      .equation("y = MHSA_group(x) + CrossAttn(LN(x), LN(L_g)); L = P + CrossAttn(LN(P_g), LN(x_g)); "
                                "L = L + SelfAttn(LN(L)) over all t m latents")
                      .schema(fit_attention_schema().schema())
                      .example("{heads: 2, group: 3, latents: 2}"),
                  make_fit);

}  // namespace
}  // namespace blocklab
