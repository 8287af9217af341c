#include "blocks/stacks/plain.h"

#include "blocks/common/layer_error.h"
#include "blocks/common/options.h"

namespace blocklab {

PlainStackImpl::PlainStackImpl(const StackArgs& args, const PlainStackOptions& options)
    : dim_(args.dim), tokens_(args.tokens) {
  const std::vector<LayerSpec> plan =
      plan_layers(options.depth(), args.defaults, options.layers(), args.path + ".layers");
  block_list = register_module("blocks", torch::nn::ModuleList());
  blocks = build_layers(plan, args.dim, args.tokens, args.layout, options.drop_path(), block_list);
  for (const LayerSpec& spec : plan) mixer_keys_.push_back(layer_mixer_key(spec));
}

Tokens PlainStackImpl::forward(Tokens tokens, AttentionProbe* probe) {
  MixerContext ctx = tokens.layout;
  ctx.probe = probe;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    ctx.layer = static_cast<int>(i);
    tokens.x = within_layer([&] { return layer_name(static_cast<std::int64_t>(i)); },
                            [&] { return blocks[i]->forward(tokens.x, ctx); });
  }
  return tokens;
}

bool PlainStackImpl::recurrent() const {
  for (const Block& b : blocks)
    if (!b->recurrent()) return false;
  return true;
}

std::vector<MixerState> PlainStackImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  std::vector<MixerState> states;
  for (const Block& b : blocks) states.push_back(b->init_state(batch, options));
  return states;
}

torch::Tensor PlainStackImpl::step(const torch::Tensor& x_t, std::vector<MixerState>& states, MixerContext ctx) {
  TORCH_CHECK(states.size() == blocks.size(), "stack/plain: ", states.size(), " states for ", blocks.size(), " layers");
  torch::Tensor x = x_t;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    ctx.layer = static_cast<int>(i);
    MixerStep s = blocks[i]->step(x, states[i], ctx);
    x = s.output;
    states[i] = std::move(s.state);
  }
  return x;
}

std::string PlainStackImpl::layer_name(std::int64_t i) const {
  const std::string& key = mixer_keys_.at(static_cast<std::size_t>(i));
  return "model.blocks." + std::to_string(i) + (key.empty() ? "" : " (" + key + ")");
}

ParamSpec layers_param() {
  return ParamSpec{"layers",
                   ParamType::Any,
                   ConfigNode(),
                   false,
                   true,
                   {},
                   {},
                   {},
                   {},
                   {},
                   "named per-layer overrides {name: {at: 0-1 | every: k, offset: r, block/mixer/channel}} "
                   "(default none; see blocks/stacks/layer_plan.h)"};
}

const Schema& plain_stack_schema() {
  static const Schema schema = [] {
    Schema s;
    s.add_int("depth", 6, "number of blocks (default 6)").min = 1;
    rate(s.add_float("drop_path", 0.1, "stochastic depth of the last block, linear from 0 (default 0.1)"));
    s.add(layers_param());
    return s;
  }();
  return schema;
}

PlainStackOptions bind_plain_stack(const ConfigNode& params) {
  check_params(params, plain_stack_schema());
  const ParamReader r(params, plain_stack_schema(), "");
  return PlainStackOptions().depth(r.get_int("depth")).drop_path(r.get_float("drop_path")).layers(r.get_node("layers"));
}

namespace {

BLOCKLAB_REGISTER(stack_registry(),
                  BLOCKLAB_ENTRY("stack/plain")
                      .summary("depth x block, each layer's block from the default and per-layer overrides")
                      .paper("An Image is Worth 16x16 Words (Dosovitskiy et al., 2020), arXiv:2010.11929")
                      .equation("z_l = block_l(z_{l-1}), l = 1..depth; block_l = default + overrides selecting l")
                      .schema(plain_stack_schema())
                      .example("{depth: 2, layers: {top: {at: 1, mixer: {heads: 1}}}}"),
                  [](const ConfigNode& params, const StackArgs& args) -> Stack {
                    return std::make_shared<PlainStackImpl>(args, bind_plain_stack(params));
                  });

}  // namespace
}  // namespace blocklab
