#include "blocks/channel/monarch_glu.h"

#include "blocks/common/options.h"

namespace blocklab {

MonarchGluImpl::MonarchGluImpl(std::int64_t dim, const MonarchGluOptions& o)
    : options_(o), hidden_(hidden_width(o.ratio(), dim)), act_(activation_by_name(o.activation())) {
  fc1 = structured_linear(o.linear(), dim, 2 * hidden_, o.nblocks(), /*bias=*/false);
  fc2 = structured_linear(o.linear(), hidden_, dim, o.nblocks(), /*bias=*/true);
  register_module("fc1", fc1.ptr());
  register_module("fc2", fc2.ptr());
}

torch::Tensor MonarchGluImpl::forward(const torch::Tensor& x) {
  const auto gate_value = fc1.forward(x).chunk(2, -1);
  auto h = act_(gate_value[0]) * gate_value[1];
  if (options_.drop() > 0.0) h = torch::dropout(h, options_.drop(), is_training());
  return fc2.forward(h);
}

const OptionsSchema<MonarchGluOptions>& monarch_glu_schema() {
  static const auto schema = [] {
    OptionsSchema<MonarchGluOptions> s;
    BLOCKLAB_OPTION(s, ratio, "hidden width F / dim (default 4)").min = 1e-3;
    BLOCKLAB_OPTION(s, nblocks, "blocks of the structured layers, <= dim (default 4)").min = 1;
    s.choice(
        "linear", {"blockdiag", "monarch", "dense"},
        "the two layers: blockdiag (the released M2-BERT), monarch (P L P^T R P) or dense (default blockdiag)",
        [](MonarchGluOptions& o, const std::string& v) { o.linear(v); },
        [](const MonarchGluOptions& o) { return o.linear(); });
    declare_activation(s, {"gelu", "silu", "relu", "sigmoid", "none"}, "gate activation (default gelu, M2-BERT)");
    rate(BLOCKLAB_OPTION(s, drop, "dropout after the gating (default 0)"));
    return s;
  }();
  return schema;
}

namespace {

ChannelMixer make_monarch_glu(const ConfigNode& params, std::int64_t dim) {
  const auto o = bind_options(monarch_glu_schema(), params);
  if (o.linear() != "dense" && o.nblocks() > std::min(dim, hidden_width(o.ratio(), dim)))
    config_fail(params, "nblocks",
                "monarch-glu: nblocks " + std::to_string(o.nblocks()) + " exceeds dim " + std::to_string(dim) +
                    " or the hidden width",
                {"use nblocks <= dim (M2-BERT: 4)"});
  return std::make_shared<MonarchGluImpl>(dim, o);
}

BLOCKLAB_REGISTER(channel_registry(),
                  BLOCKLAB_ENTRY(MonarchGluImpl::kKey)
                      .summary("Monarch Mixer's GLU MLP with block-diagonal (or Monarch) layers")
                      .paper("Monarch Mixer (Fu et al., 2023), arXiv:2310.12109")
                      .equation("BD2(gelu(a) ⊙ g), a, g = split(BD1 x); BD block-diagonal with nblocks blocks")
                      .schema(monarch_glu_schema().schema())
                      .example("{ratio: 2, nblocks: 4}"),
                  make_monarch_glu);

}  // namespace
}  // namespace blocklab
