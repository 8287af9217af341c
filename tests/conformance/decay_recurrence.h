// A test-only recurrent token mixer, so the recurrent part of the conformance suite checks
// something before the recurrent block waves land: a per-channel decaying sum
//   y_t = sum_{j <= t} a^(t - j) (W x_j),   a = sigmoid(logit) in (0, 1)^C
// with its parallel form (a [C, N, N] decay matrix) and its recurrent form
//   h_t = a * h_{t-1} + W x_t,  y_t = h_t   (state h [B, C], constant in N).
// Registered in the test binary only, as test/decay-recurrence (tests/tasks/lm.cpp; "test/" keys
// are outside the census).
#pragma once

#include "blocks/interfaces.h"

namespace blocklab::conformance {

class DecayRecurrenceImpl : public TokenMixerImpl {
 public:
  explicit DecayRecurrenceImpl(std::int64_t dim);
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  MixerCapabilities capabilities() const override;
  MixerState init_state(std::int64_t batch, const torch::TensorOptions& options) override;
  MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override;

  torch::nn::Linear value{nullptr};
  torch::Tensor logit;  // [C]
};

}  // namespace blocklab::conformance
