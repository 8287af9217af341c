// task `forecast` end to end (the blocklab executable): every forecasting model of the table
// trains a few steps on a tiny synthetic series and reports val/test MSE and MAE, the best by val
// MSE; the documented command (autoformer at horizon 96 on the temperatures) validates.
#include <catch2/catch.hpp>

#include "tests/process_support.h"
#include "tests/tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;
using namespace blocklab::testing;

TEST_CASE("forecast: every table model runs and reports MSE and MAE on val and test", "[forecast]") {
  const std::string model =
      GENERATE(as<std::string>{}, "dlinear", "nlinear", "linear", "autoformer", "transformer_forecaster");
  INFO("model " << model);
  TempDir tmp;
  std::vector<std::string> args = {"run", "forecast_temps", "-q", "output_dir=" + tmp.path.string(), "model=" + model};
  args.insert(args.end(), forecast_tiny_overrides().begin(), forecast_tiny_overrides().end());
  args.push_back("trainer.max_steps=6");  // stopped inside the first epoch: evaluated all the same
  if (model == "autoformer") args.push_back("model.dim=16");
  REQUIRE(run_blocklab(args, tmp.path / "log.txt") == 0);
  const fs::path dir = run_dir(tmp.path, "forecast_temps");
  const std::string metrics = slurp(dir / "metrics.jsonl");
  for (const char* key : {"\"val/mse\": ", "\"val/mae\": ", "\"test/mse\": ", "\"test/mae\": ", "windows_per_s"})
    CHECK(metrics.find(key) != std::string::npos);
  CHECK(slurp(dir / "summary.json").find("\"best/val_mse\": ") != std::string::npos);
  CHECK(summary_field(dir, "steps") == "6");
}

TEST_CASE("forecast: the README's commands validate (show builds the model for the data)", "[forecast]") {
  TempDir tmp;
  for (const std::string model : {"autoformer", "transformer_forecaster", "dlinear"}) {
    INFO("model " << model);
    CHECK(run_blocklab({"show", "forecast_temps", "model=" + model, "dataset.horizon=192"}, tmp.path / "show.log") ==
          0);
  }
  // A horizon the val part cannot hold fails before anything runs, naming the option.
  CHECK(run_blocklab({"show", "forecast_temps", "dataset.horizon=1000"}, tmp.path / "bad.log") == 2);
  CHECK(slurp(tmp.path / "bad.log").find("dataset.horizon") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
