#include "blocks/forecast/autoformer.h"

#include "blocks/common/options.h"
#include "blocks/forecast/series_decomp.h"

namespace blocklab {

namespace {

// TokenEmbedding: Conv1d(C -> D, kernel 3, circular padding 1, no bias), Kaiming-normal (fan_in).
torch::nn::Conv1d token_embedding(std::int64_t channels, std::int64_t dim) {
  torch::nn::Conv1d conv(
      torch::nn::Conv1dOptions(channels, dim, 3).padding(1).padding_mode(torch::kCircular).bias(false));
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanIn, torch::kLeakyReLU);
  return conv;
}

}  // namespace

AutoformerImpl::AutoformerImpl(const ForecastShape& shape, const AutoformerOptions& o)
    : shape_(shape), options_(o), label_len_(o.label_len() > 0 ? o.label_len() : shape.lookback / 2) {
  TORCH_CHECK(label_len_ <= shape.lookback, "autoformer: label_len ", label_len_, " exceeds the look-back ",
              shape.lookback);
  const AutoformerLayerOptions layer{o.dim(), o.heads(), o.ffn_dim(), o.moving_avg(), o.factor(), o.drop()};
  encoder_embedding = register_module("encoder_embedding", token_embedding(shape.channels, o.dim()));
  decoder_embedding = register_module("decoder_embedding", token_embedding(shape.channels, o.dim()));
  encoder = register_module("encoder", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < o.e_layers(); ++i) encoder->push_back(AutoformerEncoderLayer(layer));
  decoder = register_module("decoder", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < o.d_layers(); ++i) decoder->push_back(AutoformerDecoderLayer(layer, shape.channels));
  encoder_norm = register_module("encoder_norm", SeasonalLayerNorm(o.dim()));
  decoder_norm = register_module("decoder_norm", SeasonalLayerNorm(o.dim()));
  projection = register_module("projection", torch::nn::Linear(o.dim(), shape.channels));
}

torch::Tensor AutoformerImpl::embed(torch::nn::Conv1d& conv, const torch::Tensor& x) {
  return torch::dropout(conv->forward(x.transpose(1, 2)).transpose(1, 2), options_.drop(), is_training());
}

torch::Tensor AutoformerImpl::forward(const torch::Tensor& x, AttentionProbe*, const torch::Tensor&) {
  TORCH_CHECK(x.dim() == 3 && x.size(1) == shape_.lookback && x.size(2) == shape_.channels,
              "autoformer: expected a series [B, ", shape_.lookback, ", ", shape_.channels, "], got ", x.sizes());
  const std::int64_t batch = x.size(0), horizon = shape_.horizon, start = shape_.lookback - label_len_;
  const Decomposition d = series_decomp(x, options_.moving_avg());
  const torch::Tensor mean = x.mean(1, /*keepdim=*/true).expand({batch, horizon, shape_.channels});
  const torch::Tensor seasonal_in = torch::cat(
      {d.seasonal.narrow(1, start, label_len_), torch::zeros({batch, horizon, shape_.channels}, x.options())}, 1);
  torch::Tensor trend = torch::cat({d.trend.narrow(1, start, label_len_), mean}, 1);

  torch::Tensor enc = embed(encoder_embedding, x);
  for (const auto& layer : *encoder) enc = layer->as<AutoformerEncoderLayer>()->forward(enc);
  enc = encoder_norm->forward(enc);

  torch::Tensor s = embed(decoder_embedding, seasonal_in);
  for (const auto& layer : *decoder) {
    const DecoderOutput out = layer->as<AutoformerDecoderLayer>()->forward(s, enc);
    s = out.seasonal;
    trend = trend + out.trend;
  }
  const torch::Tensor y = trend + projection->forward(decoder_norm->forward(s));
  return y.narrow(1, label_len_, horizon);
}

const OptionsSchema<AutoformerOptions>& autoformer_schema() {
  static const auto schema = [] {
    OptionsSchema<AutoformerOptions> s;
    BLOCKLAB_OPTION(s, lookback, "look-back L; 0 = from the data (default)").min = 0;
    BLOCKLAB_OPTION(s, horizon, "horizon P; 0 = from the data (default)").min = 0;
    BLOCKLAB_OPTION(s, label_len, "steps of the look-back the decoder starts from; 0 = L / 2 (default)").min = 0;
    BLOCKLAB_OPTION(s, dim, "model width d_model (default 512)").min = 1;
    BLOCKLAB_OPTION(s, heads, "Auto-Correlation heads (default 8)").min = 1;
    BLOCKLAB_OPTION(s, e_layers, "encoder layers (default 2)").min = 0;
    BLOCKLAB_OPTION(s, d_layers, "decoder layers (default 1)").min = 1;
    BLOCKLAB_OPTION(s, ffn_dim, "feed-forward width d_ff (default 2048)").min = 1;
    BLOCKLAB_OPTION(s, moving_avg, "series decomposition window (default 25)").min = 1;
    BLOCKLAB_OPTION(s, factor, "delays k = floor(factor ln L) (default 1; the paper's scripts use 3)").min = 0.0;
    rate(BLOCKLAB_OPTION(s, drop, "dropout (default 0.05)"));
    return s;
  }();
  return schema;
}

namespace {

Network make_autoformer(const ConfigNode& params, const ModelArgs& args) {
  const AutoformerOptions o = bind_options(autoformer_schema(), params);
  const ForecastShape shape = forecast_shape(o.lookback(), o.horizon(), args, params, "forecast/autoformer");
  if (o.dim() % o.heads() != 0)
    config_fail(params, "heads",
                "dim " + std::to_string(o.dim()) + " is not divisible by heads " + std::to_string(o.heads()),
                {"choose heads dividing dim"});
  if (o.label_len() > shape.lookback)
    config_fail(params, "label_len",
                "label_len " + std::to_string(o.label_len()) + " is longer than the look-back (" +
                    std::to_string(shape.lookback) + ")",
                {"use label_len <= " + std::to_string(shape.lookback) + ", or 0 for L / 2"});
  return std::make_shared<AutoformerImpl>(shape, o);
}

BLOCKLAB_REGISTER(model_registry(),
                  BLOCKLAB_ENTRY("forecast/autoformer")
                      .summary("Autoformer: encoder-decoder with Auto-Correlation (time-delay aggregation) and "
                               "progressive series decomposition")
                      .paper("Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term Series "
                             "Forecasting (Wu et al., 2021), arXiv:2106.13008")
                      .equation("y = (trend_init + sum_l r_l + Linear(SeasonalLN(Decoder(Embed(s_init), "
                                "Encoder(Embed(x))))))[-P:]")
                      .schema(autoformer_schema().schema())
                      .example("{dim: 16, heads: 2, ffn_dim: 32, e_layers: 1, d_layers: 1, moving_avg: 5, "
                               "label_len: 8}"),
                  make_autoformer);

}  // namespace
}  // namespace blocklab
