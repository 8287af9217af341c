#include "blocks/mixers/activator.h"

#include "blocks/common/ffn.h"
#include "blocks/common/options.h"

namespace blocklab {

ActivatorMixerImpl::ActivatorMixerImpl(std::int64_t dim, const ActivatorOptions& o) {
  const auto hidden = hidden_width(o.ratio(), dim);
  w1 = register_module("w1", torch::nn::Linear(dim, hidden));
  w2 = register_module("w2", torch::nn::Linear(dim, hidden));
  w3 = register_module("w3", torch::nn::Linear(hidden, dim));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden}).eps(1e-5)));
}

MixerCapabilities ActivatorMixerImpl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;            // token-wise: no output reads another token
  c.recurrent = true;         // with an empty state
  c.variable_lengths = true;  // padding cannot reach a valid token
  return c;
}

torch::Tensor ActivatorMixerImpl::gate(const torch::Tensor& x) {
  // One LN_F module for both branches (shared gamma, beta), as the paper's code.
  return w3->forward(norm->forward(torch::gelu(w1->forward(x))) * norm->forward(w2->forward(x)));
}

torch::Tensor ActivatorMixerImpl::forward(const torch::Tensor& x, const MixerContext&) { return gate(x); }

MixerState ActivatorMixerImpl::init_state(std::int64_t, const torch::TensorOptions&) { return MixerState{}; }

MixerStep ActivatorMixerImpl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext&) {
  return MixerStep{gate(x_t), MixerState{{}, state.position + 1}};
}

namespace {

const OptionsSchema<ActivatorOptions>& activator_schema() {
  static const auto schema = [] {
    OptionsSchema<ActivatorOptions> s;
    BLOCKLAB_OPTION(s, ratio, "hidden width F / C, F = round(ratio * C) (Activator: 512 / 256; default 2)").min = 1e-3;
    return s;
  }();
  return schema;
}

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(ActivatorMixerImpl::kKey)
                      .summary("the Activator's gating unit: W_3(LN_F(GELU(W_1 x)) ⊙ LN_F(W_2 x)) with one shared "
                               "LN_F; token-wise (no token mixing), trivially causal and recurrent")
                      .paper("Activator: GLU Activation Function as the Core Component of a Vision Transformer "
                             "(Abdullah and Aydin, 2024), arXiv:2405.15953")
                      .equation("out = W_3 (LN_F(GELU(W_1 x + b_1)) ⊙ LN_F(W_2 x + b_2)) + b_3, W_1, W_2: C -> F")
                      .schema(activator_schema().schema())
                      .example("{ratio: 1.5}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    return std::make_shared<ActivatorMixerImpl>(args.dim, bind_options(activator_schema(), params));
                  });

}  // namespace
}  // namespace blocklab
