// Autoformer's decoder layer (autoformer_layers.h).
#include "blocks/forecast/autoformer_layers.h"
#include "blocks/forecast/series_decomp.h"

namespace blocklab {

AutoformerDecoderLayerImpl::AutoformerDecoderLayerImpl(const AutoformerLayerOptions& o, std::int64_t out_channels)
    : options_(o) {
  self_correlation = register_module("self_correlation", AutoCorrelation(o.dim, o.heads, o.factor));
  cross_correlation = register_module("cross_correlation", AutoCorrelation(o.dim, o.heads, o.factor));
  ffn = register_module("ffn", AutoformerFfn(o.dim, o.ffn_dim, o.drop));
  trend_projection = register_module(
      "trend_projection",
      torch::nn::Conv1d(
          torch::nn::Conv1dOptions(o.dim, out_channels, 3).padding(1).padding_mode(torch::kCircular).bias(false)));
}

DecoderOutput AutoformerDecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& encoded) {
  const double p = options_.drop;
  const Decomposition d1 =
      series_decomp(x + torch::dropout(self_correlation->forward(x, x, x), p, is_training()), options_.kernel);
  const Decomposition d2 = series_decomp(
      d1.seasonal + torch::dropout(cross_correlation->forward(d1.seasonal, encoded, encoded), p, is_training()),
      options_.kernel);
  const Decomposition d3 = series_decomp(d2.seasonal + ffn->forward(d2.seasonal), options_.kernel);
  const torch::Tensor trend = d1.trend + d2.trend + d3.trend;  // [B, L, D]
  return {d3.seasonal, trend_projection->forward(trend.transpose(1, 2)).transpose(1, 2)};
}

}  // namespace blocklab
