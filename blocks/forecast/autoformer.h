// forecast/autoformer: the Autoformer encoder-decoder forecaster.
//
// Paper: "Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term Series
// Forecasting" (Wu et al., 2021, arXiv:2106.13008, §3.1, Fig. 1; models/Autoformer.py;
// shared/blocks catalog C8). With decomp = series_decomp_k (series_decomp.h):
//   s0, t0 = decomp(x)                                  x [B, L, C]
//   seasonal_in = [s0[-label:], zeros(P)],  trend = [t0[-label:], mean_t(x) repeated P]
//   enc = SeasonalLN(EncoderLayer^e(Embed(x)))
//   for each decoder layer: s, r = DecoderLayer(s, enc); trend = trend + r      (s = Embed(seasonal_in))
//   y = (trend + Linear_{D -> C}(SeasonalLN(s)))[-P:]
// Embed = TokenEmbedding (Conv1d C -> D, kernel 3, circular, no bias; Kaiming-normal fan_in) +
// dropout. The paper's embedding adds time features (calendar marks); the series datasets here
// give values only, so Embed has no time-feature term (DataEmbedding_wo_pos without x_mark).
// Training mode uses Auto-Correlation's batch-shared delays, eval mode the per-sample delays.
//
// Shape contract: series [B, L, C] -> forecasts [B, P, C]; label_len <= L.
#pragma once

#include "blocks/forecast/autoformer_layers.h"
#include "blocks/forecast/forecaster.h"
#include "blocks/forecast/seasonal_layernorm.h"

namespace blocklab {

struct AutoformerOptions {
  TORCH_ARG(std::int64_t, lookback) = 0;     // L; 0 = from the data (default)
  TORCH_ARG(std::int64_t, horizon) = 0;      // P; 0 = from the data (default)
  TORCH_ARG(std::int64_t, label_len) = 0;    // decoder's known steps; 0 = L / 2 (default)
  TORCH_ARG(std::int64_t, dim) = 512;        // d_model (default 512)
  TORCH_ARG(std::int64_t, heads) = 8;        // n_heads (default 8)
  TORCH_ARG(std::int64_t, e_layers) = 2;     // encoder layers (default 2)
  TORCH_ARG(std::int64_t, d_layers) = 1;     // decoder layers (default 1)
  TORCH_ARG(std::int64_t, ffn_dim) = 2048;   // d_ff (default 2048)
  TORCH_ARG(std::int64_t, moving_avg) = 25;  // decomposition window (default 25)
  TORCH_ARG(double, factor) = 1.0;           // delays k = floor(factor ln L) (default 1)
  TORCH_ARG(double, drop) = 0.05;            // dropout (default 0.05)
};

class AutoformerImpl : public NetworkImpl {
 public:
  AutoformerImpl(const ForecastShape& shape, const AutoformerOptions& options);
  torch::Tensor forward(const torch::Tensor& x, AttentionProbe* probe = nullptr,
                        const torch::Tensor& lengths = {}) override;

  torch::nn::Conv1d encoder_embedding{nullptr}, decoder_embedding{nullptr};
  torch::nn::ModuleList encoder{nullptr}, decoder{nullptr};
  SeasonalLayerNorm encoder_norm{nullptr}, decoder_norm{nullptr};
  torch::nn::Linear projection{nullptr};

 private:
  torch::Tensor embed(torch::nn::Conv1d& conv, const torch::Tensor& x);
  ForecastShape shape_;
  AutoformerOptions options_;
  std::int64_t label_len_;
};
TORCH_MODULE(Autoformer);

const OptionsSchema<AutoformerOptions>& autoformer_schema();

}  // namespace blocklab
