// What the whole-window forecasters (forecast/linear, nlinear, dlinear, autoformer) share: their
// sizes (look-back L, horizon P, channels C) from their options or else the data, and the
// options of the LTSF-Linear family.
//
// Shape contract of every forecaster: series [B, L, C] -> forecasts [B, P, C].
#pragma once

#include <cstdint>
#include <string>

#include "blocks/model.h"
#include "registry/options_schema.h"

namespace blocklab {

struct ForecastShape {
  std::int64_t lookback = 0, horizon = 0, channels = 0;
};

// L and P from the options when > 0, else from the data (ModelArgs.inputs.length / .horizon);
// C from the data. Throws ConfigError at the option when neither gives a size, or when the
// task's outputs are not the series' channels.
ForecastShape forecast_shape(std::int64_t lookback, std::int64_t horizon, const ModelArgs& args,
                             const ConfigNode& params, const std::string& model);

// LTSF-Linear (Zeng et al., 2023, arXiv:2205.13504): Linear, NLinear, DLinear.
struct LtsfOptions {
  TORCH_ARG(std::int64_t, lookback) = 0;  // L; 0 = from the data (default)
  TORCH_ARG(std::int64_t, horizon) = 0;   // P; 0 = from the data (default)
  TORCH_ARG(bool, individual) = false;    // one Linear per channel (default false: shared)
  TORCH_ARG(std::int64_t, kernel) = 25;   // DLinear: moving-average window (default 25)
};

// The schema of Linear and NLinear (lookback, horizon, individual), or DLinear's (plus kernel).
const OptionsSchema<LtsfOptions>& ltsf_schema(bool with_kernel);

// The bound options (validated against ltsf_schema(with_kernel)).
LtsfOptions bind_ltsf(const ConfigNode& params, bool with_kernel);

// Registers an LTSF-Linear model `Impl(ForecastShape, LtsfOptions)` under `key` (its file is
// `defined_at`), with the paper, the schema and an example.
template <class Impl>
bool register_ltsf(const std::string& key, const char* defined_at, const std::string& summary,
                   const std::string& equation, bool with_kernel) {
  return model_registry().add(
      Entry(key, defined_at)
          .summary(summary)
          .paper("Are Transformers Effective for Time Series Forecasting? (Zeng et al., 2023), arXiv:2205.13504")
          .equation(equation)
          .schema(ltsf_schema(with_kernel).schema())
          .example(with_kernel ? "{kernel: 5}" : "{}"),
      [key, with_kernel](const ConfigNode& params, const ModelArgs& args) -> Network {
        const LtsfOptions o = bind_ltsf(params, with_kernel);
        return std::make_shared<Impl>(forecast_shape(o.lookback(), o.horizon(), args, params, key), o);
      });
}

}  // namespace blocklab
