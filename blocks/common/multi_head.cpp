#include "blocks/common/multi_head.h"

namespace blocklab {

void check_heads(std::int64_t dim, std::int64_t heads, const ConfigNode& params) {
  if (heads >= 1 && dim % heads == 0) return;
  std::string valid;
  for (std::int64_t h = 1; h <= dim && h <= 64; ++h)
    if (dim % h == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(h);
  config_fail(params, "heads",
              "heads must divide the embedding width: dim " + std::to_string(dim) + " is not divisible by heads " +
                  std::to_string(heads),
              {"heads that divide " + std::to_string(dim) + ": " + valid});
}

void check_multi_head(std::int64_t dim, const MultiHeadConfig& config, const ConfigNode& params) {
  const auto& p = config.projection;
  if (p.head_dim == 0) check_heads(dim, p.heads, params);
  if (p.heads < 1) check_heads(dim, p.heads, params);
  if (p.kv_heads > 0 && p.heads % p.kv_heads != 0)
    config_fail(params, "kv_heads",
                "kv_heads must divide heads: " + std::to_string(p.heads) + " query heads cannot share " +
                    std::to_string(p.kv_heads) + " key/value heads evenly",
                {"kv_heads: 1 (multi-query)", "kv_heads: " + std::to_string(p.heads) + " (one per head)"});
  const auto d = p.head_dim > 0 ? p.head_dim : dim / p.heads;
  const std::int64_t multiple = p.rotary == "1d" ? 2 : p.rotary == "2d" ? 4 : 1;
  if (d % multiple != 0)
    config_fail(params, "rotary",
                "rotary " + p.rotary + " rotates channel pairs" + (multiple == 4 ? " per axis" : "") +
                    ": the head width " + std::to_string(d) + " must be divisible by " + std::to_string(multiple),
                {"choose heads (or head_dim) so that the head width is a multiple of " + std::to_string(multiple)});
}

std::int64_t longest_sequence(const MixerArgs& args, const ConfigNode& params, const std::string& name,
                              std::int64_t at_least, const std::string& why, const std::string& hint) {
  if (args.max_tokens < at_least) config_fail(params, name, why, {hint});
  return args.max_tokens;
}

namespace {
std::int64_t checked_head_dim(std::int64_t dim, const MultiHeadConfig& config) {
  check_multi_head(dim, config);
  return config.projection.head_dim > 0 ? config.projection.head_dim : dim / config.projection.heads;
}
}  // namespace

MultiHeadAttentionImpl::MultiHeadAttentionImpl(std::string key, std::int64_t dim, const MultiHeadConfig& config)
    : DenseCore(*this, std::move(key), checked_head_dim(dim, config), config.attn_drop),
      dim_(dim),
      projection_(*this, dim, config.projection),
      output_(*this, projection_.heads() * projection_.head_dim(), dim, config.gate, config.proj_drop),
      qkv(projection_.qkv),
      proj(output_.proj) {
  if (!config.mask.is_null())
    mask = register_module("mask",
                           mask_registry().create(config.mask, MaskArgs{projection_.heads(), dim, config.max_tokens}));
}

torch::Tensor MultiHeadAttentionImpl::merge(const torch::Tensor& o, const torch::Tensor& x) {
  return output_.merge(o, x, is_training());
}

MixerCapabilities MultiHeadAttentionImpl::capabilities() const {
  MixerCapabilities c = core_capabilities();
  c.needs_grid = projection_.rotary() == "2d" || (mask && mask->needs_grid());
  return c;
}

torch::Tensor MultiHeadAttentionImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == dim_, key(), ": expected x [B, N, ", dim_, "], got ", x.sizes());
  const auto [q, k, v] = project(x);
  return merge(attend(q, k, v, ctx), x);
}

}  // namespace blocklab
