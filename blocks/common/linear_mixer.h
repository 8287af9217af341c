// A token mixer on the linear attention core (blocks/attention/parts/linear_core.h):
//
//   x -> terms (q = phi(x W_q), k = phi(x W_k), v: the mixer's feature map, positions, decay)
//     -> core (parallel | chunked | recurrent: the same function) -> output (the mixer's norm,
//        gate and W_O)
//
// A linear block is one file with its math: it derives from LinearMixerImpl and supplies
// terms(), output(), state_dims() and, when it decays, log_decay(). forward, the recurrent
// protocol (init_state / step, for generation) and the capabilities are shared here: a step
// computes the block's terms for the one token at the state's position and advances the core's
// d x e state, so stepping equals the causal forward by construction of the block's terms.
#pragma once

#include <string>

#include "blocks/attention/parts/linear_core.h"
#include "blocks/attention/parts/projection.h"
#include "blocks/common/options.h"

namespace blocklab {

// What the core mixes: features q, k [B, h, N, d] and values v [B, h, N, e].
struct LinearTerms {
  torch::Tensor q, k, v;
};

class LinearMixerImpl : public TokenMixerImpl, public LinearCore {
 public:
  LinearMixerImpl(std::string key, LinearCoreConfig core);

  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override { return core_capabilities(); }
  // The core's state [B, h, d, e (+1)], one tensor; constant in N.
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;

 protected:
  struct StateDims {
    std::int64_t heads, key_dim, value_dim;
  };
  // x [B, N, C] -> the core's terms; ctx.positions (when defined) are the tokens' positions.
  virtual LinearTerms terms(const torch::Tensor& x, const MixerContext& ctx) = 0;
  // The core's output o [B, h, N, e] -> [B, N, C], given the mixer's input x [B, N, C].
  virtual torch::Tensor output(const torch::Tensor& o, const torch::Tensor& x) = 0;
  virtual StateDims state_dims() const = 0;
};

// The core's options, for a mixer's Options with TORCH_ARGs form (std::string) and chunk.
template <class O>
void declare_linear_core_options(OptionsSchema<O>& s) {
  s.choice(
      "form", {"parallel", "chunked"},
      "how the sequence is computed: chunked (linear in N, Lightning Attention-2's tiling) or parallel (the "
      "explicit N x N matrix, the oracle); both compute the same function (default chunked)",
      [](O& o, const std::string& v) { o.form(v); }, [](const O& o) { return o.form(); });
  BLOCKLAB_OPTION(s, chunk, "chunk length of the chunked form (default 64)").min = 1;
}

// heads, qkv_bias, proj_drop and eps, for Options that have them (with the core's options).
template <class O>
void declare_linear_attention_options(OptionsSchema<O>& s) {
  BLOCKLAB_OPTION(s, heads, "attention heads h (default 4); dim must be divisible by h").min = 1;
  BLOCKLAB_OPTION(s, qkv_bias, "bias on the query/key/value projection (default true)");
  rate(BLOCKLAB_OPTION(s, proj_drop, "dropout after the output projection (default 0)"));
  BLOCKLAB_OPTION(s, eps, "added to the normaliser sum_j phi(q_i) . phi(k_j) (default 1e-6)").min = 0.0;
  declare_linear_core_options(s);
}

template <class O>
LinearCoreConfig linear_core_config(const O& o, bool normalise, bool causal_only) {
  LinearCoreConfig c;
  c.form = o.form();
  c.chunk = o.chunk();
  c.normalise = normalise;
  c.causal_only = causal_only;
  return c;
}

// The normalised core (causal or not; eps from the Options) and the q/k/v projection (heads,
// qkv_bias) of the mixers built like multi-head attention (elu, cosformer, hedgehog, slab).
template <class O>
LinearCoreConfig normalised_core_config(const O& o) {
  LinearCoreConfig c = linear_core_config(o, /*normalise=*/true, /*causal_only=*/false);
  c.eps = o.eps();
  return c;
}

template <class O>
ProjectionConfig linear_projection_config(const O& o) {
  ProjectionConfig c;
  c.heads = o.heads();
  c.qkv_bias = o.qkv_bias();
  return c;
}

}  // namespace blocklab
