// stem/series: a real-valued series as tokens, one per time step or per patch of steps.
//
// Papers: per-step embedding as in Informer/Autoformer's value embedding (a linear map of each
// time step's channels); patching as in PatchTST, "A Time Series is Worth 64 Words: Long-term
// Forecasting with Transformers" (Nie et al., 2023, arXiv:2211.14730, §3.1): the time axis is cut
// into patches of `patch` steps every `stride` steps, N = floor((L - patch) / stride) + 1, and
// each patch (all channels, flattened) is projected to dim:
//   z_0[n] = W [x_{n*stride}; ...; x_{n*stride + patch - 1}] + P[n]
// W is a Linear (the model's init: trunc-normal std 0.02), P learned (normal std 0.02) or none.
//
// Shape contract: series [B, L, channels] (float) -> tokens [B, N, dim]; layout: no grid, no
// prefix, causal as configured (default false), token lengths from the series' lengths.
#pragma once

#include "blocks/common/weight_decay.h"
#include "blocks/model.h"
#include "blocks/stems/sequence.h"
#include "registry/options_schema.h"

namespace blocklab {

struct SeriesStemOptions {
  TORCH_ARG(std::int64_t, channels) = 0;    // series channels; 0 = from the data (default)
  TORCH_ARG(std::int64_t, length) = 0;      // longest series L; 0 = from the data (default)
  TORCH_ARG(std::int64_t, patch) = 0;       // steps per token; 0 = one token per step (default)
  TORCH_ARG(std::int64_t, stride) = 0;      // steps between patches; 0 = patch (no overlap, default)
  TORCH_ARG(std::string, pos) = "learned";  // learned | none (default learned)
  TORCH_ARG(bool, causal) = false;          // tokens see only earlier ones (default false)
};

class SeriesStemImpl : public StemImpl, public DeclaresNoWeightDecay {
 public:
  SeriesStemImpl(const StemArgs& args, const SeriesStemOptions& options = {});
  Tokens forward(const torch::Tensor& series, const torch::Tensor& lengths = {}) override;
  std::int64_t tokens() const override { return tokens_of(length_); }
  MixerContext layout() const override { return sequence_layout(options_.causal()); }
  void init_weights() override { positions.init(); }
  std::vector<std::string> no_weight_decay() const override { return positions.no_weight_decay(); }
  // Tokens made from `steps` valid time steps.
  std::int64_t tokens_of(std::int64_t steps) const;

  torch::nn::Linear proj{nullptr};
  SequencePositions positions;  // pos_embed [1, N, dim] with pos=learned

 private:
  SeriesStemOptions options_;
  std::int64_t channels_, length_, patch_, stride_;
};
TORCH_MODULE(SeriesStem);

const OptionsSchema<SeriesStemOptions>& series_stem_schema();

}  // namespace blocklab
