// The block interfaces and their registries: token mixers, channel mixers, residual blocks,
// backbones and heads. A config names each by registry key; factories receive the shapes
// the enclosing block knows (the embedding width, the token grid).
//
// Shape contracts
//   token mixer    x [B, N, C] -> [B, N, C], given a MixerContext (grid, causal, probe)
//   channel mixer  x [..., C]  -> [..., C]
//   block          x [B, N, C] -> [B, N, C]
//   backbone       images [B, C_in, H, W] -> features [B, D]
//   head           features [B, D] -> logits [B, K]
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "blocks/probe.h"
#include "registry/registry.h"

namespace blocklab {

// What a token mixer knows about the sequence it mixes.
struct MixerContext {
  std::int64_t grid_height = 0;    // tokens from an image: patch grid (0 for plain sequences)
  std::int64_t grid_width = 0;
  std::int64_t prefix_tokens = 0;  // class/register tokens before the grid tokens
  bool causal = false;             // token i may only see tokens j <= i
  AttentionProbe* probe = nullptr; // records attention maps when capturing
  int layer = -1;                  // index of the enclosing block, for the probe
};

class TokenMixerImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) = 0;
  // Whether the mixer honours ctx.causal (conformance checks no future leak).
  virtual bool supports_causal() const { return false; }
};
using TokenMixer = std::shared_ptr<TokenMixerImpl>;

struct MixerArgs {
  std::int64_t dim = 0;         // embedding width C
  std::int64_t max_tokens = 0;  // longest sequence the mixer will see (for position tables)
};
using MixerRegistry = Registry<TokenMixer, const MixerArgs&>;
MixerRegistry& mixer_registry();

class ChannelMixerImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};
using ChannelMixer = std::shared_ptr<ChannelMixerImpl>;
using ChannelRegistry = Registry<ChannelMixer, std::int64_t /*dim*/>;
ChannelRegistry& channel_registry();

class BlockImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) = 0;
};
using Block = std::shared_ptr<BlockImpl>;

struct BlockArgs {
  std::int64_t dim = 0;
  std::int64_t max_tokens = 0;
  ConfigNode mixer;        // token mixer config ({type: ..., ...})
  ConfigNode channel;      // channel mixer config
  double drop_path = 0.0;  // stochastic depth rate of this block
};
using BlockRegistry = Registry<Block, const BlockArgs&>;
BlockRegistry& block_registry();

class BackboneImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& images, AttentionProbe* probe = nullptr) = 0;
  virtual std::int64_t feature_dim() const = 0;
};
using Backbone = std::shared_ptr<BackboneImpl>;

struct BackboneArgs {
  std::int64_t in_channels = 1;
  std::int64_t image_height = 0;
  std::int64_t image_width = 0;
};
using BackboneRegistry = Registry<Backbone, const BackboneArgs&>;
BackboneRegistry& backbone_registry();

class HeadImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& features) = 0;
};
using Head = std::shared_ptr<HeadImpl>;
using HeadRegistry = Registry<Head, std::int64_t /*in_dim*/, std::int64_t /*outputs*/>;
HeadRegistry& head_registry();

}  // namespace blocklab
