#include "blocks/attention/wma.h"

namespace blocklab {

namespace {

// W at init: the identity (SDP), or the official code's U(-0.1, 0.1); [d, d] or [h, d, d].
torch::Tensor wma_initial(std::int64_t heads, std::int64_t d, const WmaAttentionOptions& o) {
  const auto shape = o.shared() ? std::vector<std::int64_t>{d, d} : std::vector<std::int64_t>{heads, d, d};
  if (o.init() == "uniform") return torch::empty(shape).uniform_(-0.1, 0.1);
  return torch::eye(d).expand(shape).clone();
}

}  // namespace

WmaAttentionImpl::WmaAttentionImpl(std::int64_t dim, const WmaAttentionOptions& options)
    : WmaAttentionImpl(dim, options, multi_head_config(options)) {}

WmaAttentionImpl::WmaAttentionImpl(std::int64_t dim, const WmaAttentionOptions& options, const MultiHeadConfig& config)
    : MultiHeadAttentionImpl(kKey, dim, config), options_(options) {
  TORCH_CHECK(options.init() == "identity" || options.init() == "uniform", kKey,
              ": init must be identity or uniform, got ", options.init());
  similarity = register_parameter("similarity", wma_initial(heads(), head_dim(), options));
}

std::pair<torch::Tensor, torch::Tensor> WmaAttentionImpl::queries_keys(const torch::Tensor& q_in,
                                                                       const torch::Tensor& k_in,
                                                                       const MixerContext& ctx) {
  const auto [q, k] = MultiHeadAttentionImpl::queries_keys(q_in, k_in, ctx);
  // S = q W k^T / sqrt(d): W joins the query, [B, h, N, d] x [d, d] (shared) or [1, h, d, d].
  auto w = similarity.to(q.dtype());
  if (!options_.shared()) w = w.unsqueeze(0);
  return {torch::matmul(q, w), k};
}

const OptionsSchema<WmaAttentionOptions>& wma_attention_schema() {
  static const auto schema = [] {
    using O = WmaAttentionOptions;
    OptionsSchema<O> s;
    declare_multi_head_options(s);
    BLOCKLAB_OPTION(s, shared,
                    "one d x d W shared by the heads of the layer, as FlexiBERT's homogeneous layer (default "
                    "true); false: one W per head, as its heterogeneous layer");
    s.choice(
        "init", {"identity", "uniform"},
        "initial W: identity (default; a fresh WMA equals scaled dot-product attention) or uniform "
        "U(-0.1, 0.1) (the official code)",
        [](O& o, const std::string& v) { o.init(v); }, [](const O& o) { return o.init(); });
    BLOCKLAB_OPTION(s, fused,
                    "use the fused softmax kernel on (q W, k) when not capturing (default true); false computes "
                    "the weights explicitly");
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(WmaAttentionImpl::kKey)
                      .summary("weighted multiplicative attention (FlexiBERT's WMA): a learned d x d matrix W "
                               "between query and key, identity at init")
                      .paper("FlexiBERT: Are Current Transformer Architectures too Homogeneous and Rigid? (Tuli "
                             "et al., 2023), arXiv:2205.11656")
                      .equation("softmax(q W k^T / sqrt(d)) v per head (W shared by the heads, or one per head), "
                                "heads concatenated and projected by W_O")
                      .schema(wma_attention_schema().schema())
                      .example("{heads: 2, shared: false, init: uniform}"),
                  [](const ConfigNode& params, const MixerArgs& args) {
                    return make_attention<WmaAttentionImpl>(wma_attention_schema(), params, args);
                  });

}  // namespace
}  // namespace blocklab
