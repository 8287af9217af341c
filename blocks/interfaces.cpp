#include "blocks/interfaces.h"

#include <stdexcept>

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

MixerRegistry& mixer_registry() {
  static MixerRegistry r("mixer", "token mixers: x [B,N,C] -> [B,N,C] (attention and its alternatives)");
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

BackboneRegistry& backbone_registry() {
  static BackboneRegistry r("backbone", "models from inputs to features: images [B,C,H,W] -> [B,D]");
  return r;
}

HeadRegistry& head_registry() {
  static HeadRegistry r("head", "task heads: features [B,D] -> outputs [B,K]");
  return r;
}

}  // namespace blocklab
