#include "blocks/mixers/nin.h"

#include "blocks/common/multi_head.h"
#include "blocks/common/options.h"
#include "blocks/conv/hyena_filter.h"

namespace blocklab {

namespace {
torch::nn::LayerNorm nin_layer_norm(std::int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5));  // torch's default, as the code
}
}  // namespace

NinMixerImpl::NinMixerImpl(std::int64_t dim, std::int64_t max_tokens, const NinMixerOptions& o)
    : max_tokens_(max_tokens), dropout_(o.dropout()) {
  const auto token_hidden = hidden_width(o.token_ratio(), dim);
  proj = register_module("proj", torch::nn::Linear(dim, dim));
  token_norm = register_module("token_norm", nin_layer_norm(dim));
  token_fc1 = register_module("token_fc1", torch::nn::Linear(max_tokens, token_hidden));
  token_fc2 = register_module("token_fc2", torch::nn::Linear(token_hidden, max_tokens));
  channel_norm = register_module("channel_norm", nin_layer_norm(dim));
  channel_mlp = register_module("channel_mlp",
                                Mlp(dim, MlpOptions().ratio(o.channel_ratio()).drop(o.dropout()).activation("gelu")));
}

MixerCapabilities NinMixerImpl::capabilities() const {
  MixerCapabilities c;
  c.variable_lengths = true;  // padding is zeroed after LN_1, as a shorter sequence's tail
  return c;
}

// The token MLP on the tokens zero-padded to max_tokens, first N outputs kept: with zero inputs
// after N, only the leading N columns of W_tok1 and rows of W_tok2 (and b_tok2) take part.
torch::Tensor NinMixerImpl::token_mlp(const torch::Tensor& z) {
  const auto n = z.size(1);
  auto h = torch::gelu(torch::linear(z.transpose(1, 2), token_fc1->weight.narrow(1, 0, n), token_fc1->bias));
  if (dropout_ > 0.0) h = torch::dropout(h, dropout_, is_training());
  auto t = torch::linear(h, token_fc2->weight.narrow(0, 0, n), token_fc2->bias.narrow(0, 0, n));  // [B, C, N]
  if (dropout_ > 0.0) t = torch::dropout(t, dropout_, is_training());
  return t.transpose(1, 2);
}

torch::Tensor NinMixerImpl::mixer_block(const torch::Tensor& x, const MixerContext& ctx) {
  const auto n = x.size(1);
  TORCH_CHECK(n <= max_tokens_, kKey, ": the token MLP is sized for max_tokens = ", max_tokens_,
              " tokens (prefix tokens included), got a sequence of ", n, "; build the model with max_tokens >= ", n,
              " (the longest sequence it will see)");
  const auto v = x + token_mlp(zero_padding(token_norm->forward(x), ctx));
  return v + channel_mlp->forward(channel_norm->forward(v));
}

torch::Tensor NinMixerImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  TORCH_CHECK(!ctx.causal, kKey, ": no causal form (the token MLP reads every token)");
  return proj->forward(x) * mixer_block(x, ctx);
}

namespace {

const OptionsSchema<NinMixerOptions>& nin_mixer_schema() {
  static const auto schema = [] {
    OptionsSchema<NinMixerOptions> s;
    BLOCKLAB_OPTION(s, token_ratio,
                    "token MLP hidden width d_tok / C, round(ratio * C) (NiNformer: 512 / 256; default 2)")
        .min = 1e-3;
    BLOCKLAB_OPTION(s, channel_ratio,
                    "channel MLP hidden width d_ch / C, round(ratio * C) (NiNformer: 512 / 256; default 2)")
        .min = 1e-3;
    rate(BLOCKLAB_OPTION(s, dropout,
                         "dropout after the GELU and the output of both MLPs (NiNformer trains 0.5; default 0)"));
    return s;
  }();
  return schema;
}

TokenMixer make_nin_mixer(const ConfigNode& params, const MixerArgs& args) {
  const auto o = bind_options(nin_mixer_schema(), params);
  const auto max_tokens = longest_sequence(
      args, params, "type", 1,
      std::string(NinMixerImpl::kKey) + ": the token MLP is sized for the longest sequence, but max_tokens is " +
          std::to_string(args.max_tokens),
      "build it inside a model (which sets max_tokens) or pass MixerArgs with max_tokens >= 1");
  return std::make_shared<NinMixerImpl>(args.dim, max_tokens, o);
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(NinMixerImpl::kKey)
                      .summary("NiNformer's Mixer Gating Unit: an MLP-Mixer block (token MLP sized for max_tokens, "
                               "shorter sequences zero-padded) gates a linear projection, no sigmoid")
                      .paper("NiNformer: A Network in Network Transformer with Token Mixing Generated Gating "
                             "Function (Abdullah and Aydin, 2024), arXiv:2403.02411")
                      .equation("out = (x W_u + b_u) ⊙ v; v = x + TokenMLP(LN_1(x)^T)^T, v <- v + ChannelMLP(LN_2(v))")
                      .schema(nin_mixer_schema().schema())
                      .example("{token_ratio: 0.5, channel_ratio: 1, dropout: 0.1}"),
                  make_nin_mixer);

}  // namespace
}  // namespace blocklab
