#include "blocks/linear/slab.h"

#include "blocks/common/heads_layout.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

SlabImpl::SlabImpl(std::int64_t dim, std::int64_t max_tokens, const SlabOptions& options)
    : LinearMixerImpl(kKey, normalised_core_config(options)),
      projection_(*this, dim, linear_projection_config(options)),
      output_(*this, dim, dim, /*gate=*/false, options.proj_drop()) {
  key_positions = register_parameter("key_positions", torch::zeros({max_tokens, dim}));
  const auto d = dim / options.heads(), k = options.kernel();
  if (k > 0)
    dwc = register_module("dwc", torch::nn::Conv2d(torch::nn::Conv2dOptions(d, d, k).padding(k / 2).groups(d)));
}

MixerCapabilities SlabImpl::capabilities() const {
  MixerCapabilities c = core_capabilities();
  c.causal = false;
  c.recurrent = false;
  c.variable_lengths = false;
  c.needs_grid = true;
  return c;
}

LinearTerms SlabImpl::terms(const torch::Tensor& x, const MixerContext&) {
  const auto n = x.size(1);
  TORCH_CHECK(n <= key_positions.size(0), "linear/slab: ", n, " tokens, but its key positions cover ",
              key_positions.size(0));
  // k <- k + P before the ReLU (P per token, split into heads like k).
  auto [q, k, v] = heads_contiguous(projection_.split(x));
  const auto heads = q.size(1), d = q.size(3);
  const auto p = key_positions.narrow(0, 0, n).view({n, heads, d}).transpose(0, 1);  // [h, N, d]
  return {torch::relu(q), torch::relu(k + p), v};
}

torch::Tensor SlabImpl::local_term(const torch::Tensor& v, const MixerContext& ctx) {
  const auto b = v.size(0), h = v.size(1), n = v.size(2), d = v.size(3);
  const auto gh = ctx.grid_height, gw = ctx.grid_width, prefix = ctx.prefix_tokens;
  TORCH_CHECK(ctx.has_grid() && prefix + gh * gw == n, "linear/slab: needs a token grid (", n, " tokens)");
  const auto grid = v.narrow(2, prefix, gh * gw).reshape({b * h, gh, gw, d}).permute({0, 3, 1, 2});
  const auto local = dwc->forward(grid).permute({0, 2, 3, 1}).reshape({b, h, gh * gw, d});
  return torch::cat({torch::zeros({b, h, prefix, d}, v.options()), local}, 2);
}

torch::Tensor SlabImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const LinearTerms t = terms(x, ctx);
  auto o = attend(t.q, t.k, t.v, ctx);
  if (dwc) o = o + local_term(t.v, ctx);
  return output(o, x);
}

torch::Tensor SlabImpl::output(const torch::Tensor& o, const torch::Tensor& x) {
  return output_.merge(o, x, is_training());
}

LinearMixerImpl::StateDims SlabImpl::state_dims() const {
  return {projection_.heads(), projection_.head_dim(), projection_.head_dim()};
}

const OptionsSchema<SlabOptions>& slab_schema() {
  static const auto schema = [] {
    OptionsSchema<SlabOptions> s;
    declare_linear_attention_options(s);
    BLOCKLAB_OPTION(s, kernel, "size of the depthwise convolution on v, odd (default 5; 0 = none)").min = 0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(SlabImpl::kKey)
                      .summary("SLAB's simplified linear attention: ReLU kernel, key positions, depthwise conv on v")
                      .paper("SLAB (Guo et al., 2024), arXiv:2405.11582")
                      .equation("relu(q_i) sum_j relu(k_j + P_j)^T v_j / (relu(q_i) . sum_j relu(k_j + P_j)) + "
                                "DWConv_kxk(v)")
                      .schema(slab_schema().schema())
                      .example("{heads: 2, kernel: 3}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto options = bind_options(slab_schema(), params);
                    check_heads(args.dim, options.heads(), params);
                    if (options.kernel() > 0 && options.kernel() % 2 == 0)
                      config_fail(params, "kernel",
                                  "linear/slab: the convolution kernel must be odd (it keeps the grid size), got " +
                                      std::to_string(options.kernel()),
                                  {"use 3 or 5"});
                    const auto tokens = longest_sequence(args, params, "heads", 1,
                                                         "linear/slab: its key positions need the longest sequence",
                                                         "build it inside a model");
                    return std::make_shared<SlabImpl>(args.dim, tokens, options);
                  });

}  // namespace
}  // namespace blocklab
