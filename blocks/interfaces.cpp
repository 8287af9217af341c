#include "blocks/interfaces.h"

#include <stdexcept>

#include "registry/yaml_io.h"

namespace blocklab {

std::int64_t MixerState::numel() const {
  std::int64_t n = 0;
  for (const auto& t : tensors)
    if (t.defined()) n += t.numel();
  return n;
}

MixerState TokenMixerImpl::init_state(std::int64_t, const torch::TensorOptions&) {
  throw std::logic_error(name() + " has no recurrent form (its capabilities say recurrent = false)");
}

MixerStep TokenMixerImpl::step(const torch::Tensor&, const MixerState&, const MixerContext&) {
  throw std::logic_error(name() + " has no recurrent form (its capabilities say recurrent = false)");
}

namespace {
[[noreturn]] void block_cannot_step(const std::string& block) {
  throw std::logic_error(block + " has no recurrent form (a block steps only with a recurrent token mixer)");
}
}  // namespace

MixerState BlockImpl::init_state(std::int64_t, const torch::TensorOptions&) { block_cannot_step(name()); }

MixerStep BlockImpl::step(const torch::Tensor&, const MixerState&, const MixerContext&) { block_cannot_step(name()); }

std::string capabilities_text(const MixerCapabilities& c) {
  const auto yes_no = [](bool b) { return b ? "yes" : "no"; };
  const char* weights = c.weights == MixerCapabilities::Weights::none         ? "none"
                        : c.weights == MixerCapabilities::Weights::normalised ? "normalised"
                                                                              : "unnormalised";
  return std::string("causal ") + yes_no(c.causal) + ", recurrent " + yes_no(c.recurrent) + ", attention weights " +
         weights + ", variable lengths " + yes_no(c.variable_lengths) + ", needs a grid " + yes_no(c.needs_grid);
}

namespace {

// `describe` shows what a mixer can do: its example, built at a width most head counts divide.
std::vector<std::string> describe_mixer(const EntryInfo& e) {
  constexpr std::int64_t kDim = 96, kTokens = 64;
  try {
    ConfigNode example = parse_yaml(e.example.empty() ? "{}" : e.example, e.key + " example");
    if (!example.is_map()) example = ConfigNode::map();
    example.set("type", ConfigNode::string(e.key));
    return {"capabilities: " +
            capabilities_text(mixer_registry().create(example, MixerArgs{kDim, kTokens})->capabilities())};
  } catch (const std::exception& error) {
    return {std::string("capabilities: unknown (the example does not build at width 96: ") + error.what() + ")"};
  }
}

}  // namespace

MixerRegistry& mixer_registry() {
  static MixerRegistry& r = []() -> MixerRegistry& {
    static MixerRegistry registry("mixer", "token mixers: x [B,N,C] -> [B,N,C] (attention and its alternatives)");
    registry.set_describer(describe_mixer);
    return registry;
  }();
  return r;
}

ChannelRegistry& channel_registry() {
  static ChannelRegistry r("channel", "channel mixers: x [...,C] -> [...,C] (MLP, GLU, ...)");
  return r;
}

BlockRegistry& block_registry() {
  static BlockRegistry r("block", "residual blocks that combine a token mixer and a channel mixer");
  return r;
}

MixerArgs mixer_args(const BlockArgs& args) {
  return MixerArgs{args.dim, args.max_tokens, args.layer, args.layers, args.grid_height, args.grid_width};
}

BackboneRegistry& backbone_registry() {
  static BackboneRegistry r("backbone", "models from inputs to features: images [B,C,H,W] -> [B,D]");
  return r;
}

HeadRegistry& head_registry() {
  static HeadRegistry r(
      "head", "task heads: features [B,D] or tokens [B,N,D] -> outputs (classes, per-token logits, forecasts)");
  return r;
}

}  // namespace blocklab
