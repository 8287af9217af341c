#include "blocks/attention/urpe.h"

#include "blocks/common/relative_positions.h"

namespace blocklab {

MixerCapabilities UrpeAttentionImpl::capabilities() const {
  auto c = MultiHeadAttentionImpl::capabilities();
  c.weights = MixerCapabilities::Weights::unnormalised;  // P ⊙ C: rows of the product need not sum to 1
  return c;
}

std::vector<std::string> UrpeAttentionImpl::no_weight_decay() const {
  std::vector<std::string> names = {"toeplitz_table"};
  if (bias_table.defined()) names.push_back("bias_table");
  return names;
}

namespace {

// table [h, 2M-1] -> [h, n, n], entry (i, j) = table[:, clamp(j - i) + M - 1]: Toeplitz by construction.
torch::Tensor toeplitz(const torch::Tensor& table, std::int64_t tokens) {
  const auto m = (table.size(1) + 1) / 2;
  const auto index = relative_index(tokens, m, table.device());
  return table.index_select(1, index.flatten()).view({table.size(0), tokens, tokens});
}

}  // namespace

UrpeAttentionImpl::UrpeAttentionImpl(std::int64_t dim, const UrpeAttentionOptions& options)
    : UrpeAttentionImpl(dim, options, multi_head_config(options)) {}

UrpeAttentionImpl::UrpeAttentionImpl(std::int64_t dim, const UrpeAttentionOptions& options,
                                     const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options) {
  const auto m = options.max_relative_position();
  TORCH_CHECK(m >= 1, kKey, ": max_relative_position must be >= 1, got ", m);
  toeplitz_table =
      register_parameter("toeplitz_table", options.constant_init() ? torch::ones({heads(), 2 * m - 1})
                                                                   : torch::randn({heads(), 2 * m - 1}) * 0.02);
  if (options.rel_bias()) bias_table = register_parameter("bias_table", torch::randn({heads(), 2 * m - 1}) * 0.02);
}

torch::Tensor UrpeAttentionImpl::multiplier(std::int64_t tokens) const { return toeplitz(toeplitz_table, tokens); }

torch::Tensor UrpeAttentionImpl::bias(std::int64_t tokens) const {
  return bias_table.defined() ? toeplitz(bias_table, tokens) : torch::Tensor();
}

torch::Tensor UrpeAttentionImpl::score_bias(std::int64_t tokens, const MixerContext&) { return bias(tokens); }

torch::Tensor UrpeAttentionImpl::normalise(const torch::Tensor& s, const MixerContext&) {
  // softmax(Q K^T / sqrt(d) + B) ⊙ C, C broadcast over the batch.
  return torch::softmax(s, -1) * multiplier(s.size(-1)).to(s.dtype());
}

const OptionsSchema<UrpeAttentionOptions>& urpe_attention_schema() {
  static const auto schema = [] {
    OptionsSchema<UrpeAttentionOptions> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, max_relative_position,
                    "M: one b and one c per offset in -(M-1)..(M-1), longer offsets clipped (default 0 = the longest "
                    "sequence the model sees)")
        .min = 0;
    BLOCKLAB_OPTION(s, rel_bias, "additive relative-position bias B inside the softmax (default true)");
    BLOCKLAB_OPTION(s, constant_init,
                    "initialise the Toeplitz multiplier C to 1, i.e. start as RPE attention (default true); false: "
                    "N(0, 0.02)");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(
    mixer_registry(),
    BLOCKLAB_ENTRY(UrpeAttentionImpl::kKey)
        .summary("universal RPE attention: softmax with a relative bias, times a learned Toeplitz matrix")
        .paper("Your Transformer May Not be as Powerful as You Expect (Luo et al., 2022), arXiv:2205.13401")
        .equation("(softmax(Q K^T / sqrt(d) + B) ⊙ C) V, B_ij = b_{j-i}, C_ij = c_{j-i} per head")
        .schema(urpe_attention_schema().schema())
        .example("{heads: 2, constant_init: false}"),
    [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
      auto options = bind_options(urpe_attention_schema(), params);
      if (options.max_relative_position() == 0)
        options.max_relative_position(longest_sequence(
            args, params, "max_relative_position", 1,
            "attention/urpe needs the longest sequence length to size its relative tables, and the enclosing model "
            "gave none",
            "set max_relative_position, e.g. max_relative_position: 64"));
      return std::make_shared<UrpeAttentionImpl>(args.dim, options, multi_head_config(options, params, args));
    });

}  // namespace
}  // namespace blocklab
