#include "blocks/stems/tokens.h"

#include <cmath>

#include "blocks/common/options.h"

namespace blocklab {

TokenStemImpl::TokenStemImpl(const StemArgs& args, const TokenStemOptions& options) : options_(options) {
  const std::int64_t vocabulary =
      size_from_option_or_data(options.vocabulary(), args.inputs.vocabulary, {}, "stem/tokens", "vocabulary");
  length_ = size_from_option_or_data(options.length(), args.inputs.length, {}, "stem/tokens", "length");
  embed = register_module("embed", torch::nn::Embedding(vocabulary, args.dim));
  positions = SequencePositions(*this, options.pos() == "learned", length_, args.dim);
  if (options.short_conv() > 0)
    conv = register_module(
        "conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(args.dim, args.dim, options.short_conv()).groups(args.dim)));
}

void TokenStemImpl::init_weights() {
  torch::NoGradGuard no_grad;
  embed->weight.normal_(0.0, 0.02);
  positions.init();
  if (conv) {  // PyTorch's Conv1d default: U(-1/sqrt(k), 1/sqrt(k)) for the weight and the bias
    const double bound = 1.0 / std::sqrt(static_cast<double>(options_.short_conv()));
    conv->weight.uniform_(-bound, bound);
    conv->bias.uniform_(-bound, bound);
  }
}

// z + causal depthwise conv(z): left padding of k-1, so position n reads n-k+1..n only.
torch::Tensor TokenStemImpl::add_short_conv(const torch::Tensor& z) {
  if (!conv) return z;
  const torch::Tensor channels_first = torch::constant_pad_nd(z.transpose(1, 2), {options_.short_conv() - 1, 0});
  return z + conv->forward(channels_first).transpose(1, 2);
}

Tokens TokenStemImpl::forward(const torch::Tensor& ids, const torch::Tensor& lengths) {
  TORCH_CHECK(ids.dim() == 2 && ids.scalar_type() == torch::kLong && ids.size(1) <= length_,
              "stem/tokens: expected ids [B, N <= ", length_, "] (int64), got ", ids.sizes(), " ", ids.scalar_type());
  return {add_short_conv(positions.add(embed->forward(ids))), sequence_layout(options_.causal(), lengths)};
}

torch::Tensor TokenStemImpl::step(const torch::Tensor& ids_t, std::int64_t position) {
  TORCH_CHECK(ids_t.dim() == 1 && ids_t.scalar_type() == torch::kLong, "stem/tokens: expected ids [B] (int64), got ",
              ids_t.sizes(), " ", ids_t.scalar_type());
  const torch::Tensor x = embed->forward(ids_t);
  if (!positions.pos_embed.defined()) return x;
  TORCH_CHECK(position >= 0 && position < length_, "stem/tokens: position ", position,
              " is beyond the learned position table (", length_, " positions)");
  return x + positions.pos_embed[0][position];
}

const OptionsSchema<TokenStemOptions>& token_stem_schema() {
  static const auto schema = [] {
    using O = TokenStemOptions;
    OptionsSchema<O> s;
    BLOCKLAB_OPTION(s, vocabulary, "token ids in [0, vocabulary); 0 = from the data (default)").min = 0;
    BLOCKLAB_OPTION(s, length, "longest sequence (position table); 0 = from the data (default)").min = 0;
    s.choice(
        "pos", {"learned", "none"}, "positions: learned table (default) or none (mixers with their own)",
        [](O& o, const std::string& v) { o.pos(v); }, [](const O& o) { return o.pos(); });
    BLOCKLAB_OPTION(s, causal, "each token sees only earlier ones (default true: language models)");
    BLOCKLAB_OPTION(s, short_conv,
                    "width k of a causal depthwise convolution added to the embeddings (zoology's short conv "
                    "before attention); 0 = none (default)")
        .min = 0;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(stem_registry(),
                  BLOCKLAB_ENTRY("stem/tokens")
                      .summary("token ids [B,N] as embeddings [B,N,C] with learned positions; causal by default")
                      .paper("Attention Is All You Need (Vaswani et al., 2017), arXiv:1706.03762; tying: Using the "
                             "Output Embedding to Improve Language Models (Press & Wolf, 2017), arXiv:1608.05859")
                      .equation("z0[n] = E[id_n] + P[n]; with short_conv = k: z0[n] += sum_{j<k} w_j * z0[n-j] + b")
                      .schema(token_stem_schema().schema())
                      .example("{vocabulary: 11, length: 9}"),
                  [](const ConfigNode& params, const StemArgs& args) -> Stem {
                    const auto options = bind_options(token_stem_schema(), params);
                    size_from_option_or_data(options.vocabulary(), args.inputs.vocabulary, params, "stem/tokens",
                                             "vocabulary");
                    size_from_option_or_data(options.length(), args.inputs.length, params, "stem/tokens", "length");
                    return std::make_shared<TokenStemImpl>(args, options);
                  });

}  // namespace
}  // namespace blocklab
