// The block interfaces and their registries: token mixers, channel mixers, residual blocks,
// backbones and heads. A config names each by registry key; factories receive the shapes
// the enclosing block knows (the embedding width, the token grid).
//
// Shape contracts
//   token mixer    x [B, N, C] -> [B, N, C], given a MixerContext (blocks/layout.h); what it can
//                  do is its MixerCapabilities; recurrent mixers also step token by token
//   channel mixer  x [..., C]  -> [..., C]
//   block          x [B, N, C] -> [B, N, C]
//   backbone       images [B, C_in, H, W] -> features [B, D]
//   head           features [B, D] -> logits [B, K]
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "blocks/layout.h"
#include "blocks/probe.h"
#include "registry/registry.h"

namespace blocklab {

// What a token mixer can do, read by conformance tests, analysis and validation instead of
// per-mixer lists.
struct MixerCapabilities {
  enum class Weights {
    none,          // no attention matrix (convolutions, FFTs, SSMs, linear attention)
    normalised,    // records [B,h,N,N] to the probe; rows sum to 1 (softmax-like)
    unnormalised,  // records [B,h,N,N]; rows need not sum to 1 (sigmoid, post-softmax scaling)
  };
  bool causal = false;     // honours ctx.causal: no output depends on a later token
  bool recurrent = false;  // implements init_state/step; the state's size is constant in N
  Weights weights = Weights::none;
  bool variable_lengths = false;  // honours ctx.lengths: padding never changes valid outputs
  bool needs_grid = false;        // needs ctx.grid_height x ctx.grid_width body tokens

  bool records_weights() const { return weights != Weights::none; }
};

// The state a recurrent mixer carries from one token to the next (e.g. the d x d memory of
// linear attention, the hidden state of an SSM) and how many tokens it has consumed.
struct MixerState {
  std::vector<torch::Tensor> tensors;
  std::int64_t position = 0;  // tokens consumed so far: the next token's position
  // Elements held (over the batch); for a recurrent mixer independent of the tokens consumed.
  std::int64_t numel() const;
};

struct MixerStep {
  torch::Tensor output;  // y_t [B, C]
  MixerState state;      // the state after x_t
};

// "causal yes, recurrent no, attention weights normalised, variable lengths no, needs a grid no"
std::string capabilities_text(const MixerCapabilities& c);

class TokenMixerImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) = 0;
  virtual MixerCapabilities capabilities() const { return {}; }

  // The recurrent protocol (capabilities().recurrent): the state before the first token, and
  // one causal step on x_t [B, C] -> (y_t, state after x_t). Stepping through a sequence token
  // by token equals forward(x, ctx with causal = true). `ctx` carries the grid-free layout
  // (layer, probe); its positions are ignored (the state counts them). The defaults throw.
  virtual MixerState init_state(std::int64_t batch, const torch::TensorOptions& options);
  virtual MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx);
};
using TokenMixer = std::shared_ptr<TokenMixerImpl>;

struct MixerArgs {
  std::int64_t dim = 0;         // embedding width C
  std::int64_t max_tokens = 0;  // longest sequence the mixer will see (for position tables)
  std::int64_t layer = 0;       // index of the enclosing block in its stack (per-layer schedules)
  std::int64_t layers = 1;      // blocks in the stack
  // The layer's token grid when its tokens come from an image (0 x 0 for sequences, or when the
  // builder does not know it): for mixers whose weights are sized by the grid (spectral filters).
  std::int64_t grid_height = 0;
  std::int64_t grid_width = 0;
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

  // The recurrent form (a language model generating token by token), when the block's token
  // mixer has one: recurrent() says so; init_state and step follow the token mixer's protocol,
  // x_t [B, C] -> (y_t [B, C], state after x_t), and stepping equals forward with causal = true.
  // The defaults: not recurrent; init_state and step throw "no recurrent form".
  virtual bool recurrent() const { return false; }
  virtual MixerState init_state(std::int64_t batch, const torch::TensorOptions& options);
  virtual MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx);
};
using Block = std::shared_ptr<BlockImpl>;

struct BlockArgs {
  std::int64_t dim = 0;
  std::int64_t max_tokens = 0;
  ConfigNode mixer;              // token mixer config ({type: ..., ...})
  ConfigNode channel;            // channel mixer config
  double drop_path = 0.0;        // stochastic depth rate of this block
  std::int64_t layer = 0;        // index of this block in its stack
  std::int64_t layers = 1;       // blocks in the stack
  std::int64_t grid_height = 0;  // the layer's token grid (MixerArgs), 0 x 0 for sequences
  std::int64_t grid_width = 0;
};
using BlockRegistry = Registry<Block, const BlockArgs&>;
// What a block passes on to the token mixer it builds: its width, tokens, layer and grid.
MixerArgs mixer_args(const BlockArgs& args);
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
  // The shape of one example's output from pooled features [B, D]: {K} for a classifier,
  // {horizon, channels} for a forecaster.
  virtual std::vector<std::int64_t> output_dims() const = 0;
};
using Head = std::shared_ptr<HeadImpl>;

struct HeadArgs {
  std::int64_t in_dim = 0;   // feature width D
  std::int64_t outputs = 0;  // classes, vocabulary, or forecast channels
  // N when the head reads every token [B, N, D] (the model's pool: none); 0 for pooled [B, D].
  std::int64_t tokens = 0;
  std::int64_t horizon = 0;  // forecasting: the data's horizon (a forecast head's default); 0 if none
};
using HeadRegistry = Registry<Head, const HeadArgs&>;
HeadRegistry& head_registry();

}  // namespace blocklab
