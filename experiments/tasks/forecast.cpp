// task `forecast`: multivariate forecasting of the next `horizon` steps from a look-back window
// (series datasets, datasets/series/), as hooks of the training loop: MSE loss, MSE and MAE on
// val and test (on the standardised scale, as LTSF-Linear and Autoformer report them), the best
// checkpoint by val MSE. Models: forecast/linear, nlinear, dlinear, autoformer, or any model
// whose output is [B, horizon, channels] (model/composed with a forecast head).
#include <cstdio>

#include "experiments/tasks/supervised.h"
#include "experiments/training/loop.h"

namespace blocklab {
namespace {

const SupervisedDefaults kForecastDefaults{"windows", "forecast/dlinear", "forecast", "series/temps"};

const Schema& forecast_schema() {
  static const Schema schema = supervised_schema(kForecastDefaults);
  return schema;
}

struct EvalResult {
  double mse = 0, mae = 0;
};

class ForecastHooks : public SupervisedHooks {
 public:
  explicit ForecastHooks(const TaskContext& context) : SupervisedHooks(context, forecast_schema(), /*augment=*/false) {}

  torch::Tensor loss(const Batch& batch) override { return torch::mse_loss(predict(batch), batch.targets); }

  Evaluation evaluate(JsonObject& line, const PhaseNote& note_phase) override {
    note_phase("evaluation on val");
    const EvalResult v = evaluate_split("val");
    line.set("val/mse", v.mse).set("val/mae", v.mae);
    note_phase("evaluation on test");
    const EvalResult t = evaluate_split("test");
    line.set("test/mse", t.mse).set("test/mae", t.mae);
    char text[160];
    std::snprintf(text, sizeof text, "val mse %.4f mae %.4f, test mse %.4f mae %.4f", v.mse, v.mae, t.mse, t.mae);
    return Evaluation{v.mse, text};
  }

  Selection selection() const override { return {"val_mse", /*higher_is_better=*/false}; }
  std::string examples_name() const override { return kForecastDefaults.examples; }

 private:
  // Means over every forecast value (windows x horizon x channels) of the split.
  EvalResult evaluate_split(const std::string& split) const {
    double squared = 0, absolute = 0, count = 0;
    for_each_batch(split, [&](const Batch& batch) {
      const torch::Tensor error = (predict(batch) - batch.targets).to(torch::kFloat64);
      squared += error.pow(2).sum().item<double>();
      absolute += error.abs().sum().item<double>();
      count += static_cast<double>(error.numel());
    });
    return {squared / count, absolute / count};
  }
};

void check_forecast(const ConfigNode& config, DiagnosticSink& sink) {
  check_supervised(config, forecast_schema(), kForecastDefaults.examples, sink);
}

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(check_registered_) = register_task_check("forecast", check_forecast);

BLOCKLAB_REGISTER(task_registry(),
                  BLOCKLAB_ENTRY("forecast")
                      .summary("forecasting: the next horizon steps of every channel from a look-back window; MSE "
                               "loss, MSE and MAE on val and test, best by val MSE")
                      .paper("Are Transformers Effective for Time Series Forecasting? (Zeng et al., 2023), "
                             "arXiv:2205.13504 (protocol: standardised MSE/MAE)")
                      .equation("min_theta mean (f(x[t-L..t)) - x[t..t+H))^2; report MSE, MAE")
                      .schema(forecast_schema())
                      .example("{}"),
                  loop_task_factory(forecast_schema(), [](const TaskContext& context) -> std::unique_ptr<TaskHooks> {
                    return std::make_unique<ForecastHooks>(context);
                  }));

}  // namespace
}  // namespace blocklab
