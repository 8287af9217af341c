// One model interface: a model is stem -> stack -> norm -> head (design.md, "Model interfaces,
// second shape"). Each part is a registry kind with its schema:
//
//   stem   inputs -> tokens [B, N, C] with their layout (MixerContext: grid, prefix tokens,
//          lengths, causal): patches of an image, embeddings of token ids, a series' values
//   stack  tokens [B, N, C] -> tokens [B, N', C'] (plain: depth x block; a block per layer from a
//          default and per-layer overrides, blocks/stacks/layer_plan.h)
//   norm   LayerNorm of what the head reads
//   head   features -> outputs (the head registry of blocks/interfaces.h), on the pooled vector
//          (pool: cls | mean) or on every token (pool: none, e.g. a language-model head)
//
// Readout: y = head(norm(pool(stack(stem(x))))). For pool=cls, LN then select equals select then
// LN; for pool=mean the norm follows the mean, as timm's fc_norm (the wave-1 ViT did the same).
// Initialisation follows the reference ViT: parts are built (PyTorch default inits), then every
// Linear/LayerNorm of stem, stack and norm is re-initialised (blocks/common/init.h), then the stem
// draws its own tables (positions, class token, embeddings), then the head is built.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "blocks/interfaces.h"
#include "registry/registry.h"

namespace blocklab {

// What the data look like, for sizing stems and heads.
struct ModelInputs {
  std::int64_t channels = 1;           // image or series channels
  std::int64_t height = 0, width = 0;  // images
  std::int64_t length = 0;             // longest token / series sequence
  std::int64_t vocabulary = 0;         // token ids in [0, vocabulary)
  std::int64_t horizon = 0;            // forecasting: steps to predict
};

// Tokens and their layout: what a stem produces and a stack transforms.
struct Tokens {
  torch::Tensor x;      // [B, N, C]
  MixerContext layout;  // grid, prefix tokens, positions, lengths, causal (probe and layer unset)
};

// ---- stems -------------------------------------------------------------------------------------

class StemImpl : public torch::nn::Module {
 public:
  // `input`: images [B, C, H, W], token ids [B, N] (int64) or series [B, L, channels];
  // `lengths` [B] (int64) of right-padded sequences, undefined when every position is valid.
  virtual Tokens forward(const torch::Tensor& input, const torch::Tensor& lengths = {}) = 0;
  virtual std::int64_t tokens() const = 0;  // N: the longest token sequence it produces
  virtual MixerContext layout() const = 0;  // the layout of its tokens (without lengths)
  // Draws the stem's own tables after the model's Linear/LayerNorm init (see above).
  virtual void init_weights() {}
  // The token embedding [vocabulary, C] a head may tie to; undefined when there is none.
  virtual torch::Tensor embedding() const { return {}; }

  // The recurrent form (generation token by token): the token of every sequence at `position`,
  // ids_t [B] (int64), as forward gives it there: [B, C]. step_limit(): positions step() can
  // embed (0: any). The defaults: no recurrent form (can_step false, step throws).
  virtual bool can_step() const { return false; }
  virtual std::int64_t step_limit() const { return 0; }
  virtual torch::Tensor step(const torch::Tensor& ids_t, std::int64_t position);
};
using Stem = std::shared_ptr<StemImpl>;

struct StemArgs {
  std::int64_t dim = 0;  // token width C
  ModelInputs inputs;
};
using StemRegistry = Registry<Stem, const StemArgs&>;
StemRegistry& stem_registry();

// ---- stacks ------------------------------------------------------------------------------------

// The block every layer uses unless a per-layer override changes it (blocks/stacks/layer_plan.h).
struct LayerDefaults {
  ConfigNode block = ConfigNode::string("prenorm");
  ConfigNode mixer = ConfigNode::string("attention/softmax");
  ConfigNode channel = ConfigNode::string("mlp");
  std::string path = "model";  // where block/mixer/channel are configured, for error messages
};

class StackImpl : public torch::nn::Module {
 public:
  // Runs every layer with ctx.layer = its index and ctx.probe = probe.
  virtual Tokens forward(Tokens tokens, AttentionProbe* probe = nullptr) = 0;
  virtual std::int64_t out_dim() const = 0;
  virtual std::int64_t out_tokens() const = 0;  // N of its output
  virtual std::int64_t depth() const = 0;
  // "model.stack.blocks.2 (attention/sigmoid)": layer i's name in errors and pictures.
  virtual std::string layer_name(std::int64_t i) const = 0;

  // The recurrent form: every layer's block steps (BlockImpl::recurrent). init_state gives a
  // state per layer; step runs x_t [B, C] through the layers (ctx.layer = i), updating `states`.
  // The defaults: not recurrent; init_state and step throw.
  virtual bool recurrent() const { return false; }
  virtual std::vector<MixerState> init_state(std::int64_t batch, const torch::TensorOptions& options);
  virtual torch::Tensor step(const torch::Tensor& x_t, std::vector<MixerState>& states, MixerContext ctx);
};
using Stack = std::shared_ptr<StackImpl>;

struct StackArgs {
  std::int64_t dim = 0;     // token width from the stem
  std::int64_t tokens = 0;  // N from the stem
  MixerContext layout;      // the stem's layout (grid, prefix tokens, causal)
  LayerDefaults defaults;
  std::string path = "model.stack";  // the stack's config path, for error messages
};
using StackRegistry = Registry<Stack, const StackArgs&>;
StackRegistry& stack_registry();

// ---- heads that tie to the stem ------------------------------------------------------------------

// A head whose weight may be the stem's token embedding (Press & Wolf 2017, arXiv:1608.05859).
class TiesEmbedding {
 public:
  virtual ~TiesEmbedding() = default;
  virtual bool wants_tie() const = 0;
  // Called by the model after building the head; `embedding` is [vocabulary, C].
  virtual void tie(const torch::Tensor& embedding) = 0;
};

// ---- the model ---------------------------------------------------------------------------------

// What every entry of the model registry is: inputs (what the data give: images, token ids,
// series) to outputs (logits, per-token logits, forecasts). Most models are ModelImpl (stem ->
// stack -> norm -> head); a model that does not fit that shape (LTSF-Linear maps a whole window
// to a horizon; Autoformer is an encoder-decoder) derives from NetworkImpl directly.
class NetworkImpl : public torch::nn::Module {
 public:
  // lengths: valid lengths [B] of right-padded sequences (undefined: every position is valid).
  virtual torch::Tensor forward(const torch::Tensor& input, AttentionProbe* probe = nullptr,
                                const torch::Tensor& lengths = {}) = 0;
};
using Network = std::shared_ptr<NetworkImpl>;

enum class Pool { none, cls, mean };

class ModelImpl : public NetworkImpl {
 public:
  // Builds norm, re-initialises stem/stack/norm as the reference ViT, lets the stem draw its
  // tables, then registers the head (see the header comment for why in this order).
  ModelImpl(Stem stem, Stack stack, bool norm, Pool pool);
  void set_head(Head head);

  // input: what the stem reads; lengths: valid lengths of padded sequences (optional).
  torch::Tensor forward(const torch::Tensor& input, AttentionProbe* probe = nullptr,
                        const torch::Tensor& lengths = {}) override;
  // The stack's output before norm and head, with its layout.
  Tokens features(const torch::Tensor& input, AttentionProbe* probe = nullptr, const torch::Tensor& lengths = {});

  // The recurrent form (generation): with pool none, when the stem embeds one token at a time
  // and every layer steps. step(ids_t [B]) gives the outputs [B, K] at state.position, equal
  // to forward's there (stem -> stack -> norm -> head on one token), and advances the state.
  struct State {
    std::vector<MixerState> layers;
    std::int64_t position = 0;
  };
  bool recurrent() const;
  State init_state(std::int64_t batch, const torch::TensorOptions& options);
  torch::Tensor step(const torch::Tensor& ids_t, State& state);

  StemImpl& stem() { return *stem_; }
  StackImpl& stack() { return *stack_; }
  HeadImpl& head() { return *head_; }
  Pool pool() const { return pool_; }

 private:
  torch::Tensor pooled(const Tokens& t) const;
  Stem stem_;
  Stack stack_;
  torch::nn::LayerNorm norm_{nullptr};
  Head head_;
  Pool pool_;
};
using Model = std::shared_ptr<ModelImpl>;
// The composed model behind a network; nullptr when the network is not stem -> stack -> head.
inline Model composed_model(const Network& network) { return std::dynamic_pointer_cast<ModelImpl>(network); }

struct ModelArgs {
  ModelInputs inputs;
  std::int64_t outputs = 0;                        // classes, vocabulary or forecast channels
  ConfigNode head = ConfigNode::string("linear");  // the task's head component
  std::string path = "model";                      // the model's config path, for messages
};
using ModelRegistry = Registry<Network, const ModelArgs&>;
ModelRegistry& model_registry();

// The pieces every model entry shares: the schema of pool and norm, and assembling a model from
// built parts plus the head config (with tying to the stem's embedding when the head asks).
Pool pool_from(const std::string& name);
Model assemble_model(Stem stem, Stack stack, bool norm, Pool pool, const ModelArgs& args, const ConfigNode& params);

}  // namespace blocklab
