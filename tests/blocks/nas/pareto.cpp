// The search report (analysis/pareto_report.h), tag [nas]: Kendall's tau-b against values worked
// by hand (scipy's kendalltau gives the same: 2/3 without ties, 0.8 with one tie in each
// variable); dominance; runs join the retrained subnet whose model config they ran (2 and 2.0
// agree, key order does not matter), other runs are counted apart; the report says which front
// subnet dominates the reference and gives tau over the sample; the plots are written.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include "analysis/pareto_report.h"
#include "experiments/run_files.h"
#include "registry/yaml_io.h"
#include "tests/process_support.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

void write_retrained(const fs::path& dir, const std::string& model, const std::string& role, std::int64_t params,
                     double latency, double inherited, const std::string& config) {
  fs::create_directories(dir / "conf" / "model");
  write_file_atomic((dir / "conf" / "model" / (model + ".yaml")).string(), config);
  const std::string line = JsonObject()
                               .set("model", model)
                               .set("role", role)
                               .set_raw("candidate", JsonObject()
                                                         .set("key", "w" + std::to_string(params))
                                                         .set("parameters", params)
                                                         .set("mflops", 1.0)
                                                         .set("latency_ms", latency)
                                                         .set("accuracy", inherited)
                                                         .str())
                               .str();
  std::ofstream(dir / "retrain.jsonl", std::ios::app) << line << "\n";
}

RunRecord run_of(const std::string& model_yaml, double acc) {
  RunRecord r;
  r.status = "finished";
  r.config = ConfigNode::map();
  r.config.set("model", parse_yaml(model_yaml, "model"));
  r.metrics["test/acc"] = acc;
  return r;
}

}  // namespace

TEST_CASE("nas report: Kendall's tau-b and dominance", "[nas]") {
  CHECK(kendall_tau({1, 2, 3, 4}, {10, 20, 30, 40}) == Approx(1.0));
  CHECK(kendall_tau({1, 2, 3, 4}, {4, 3, 2, 1}) == Approx(-1.0));
  CHECK(kendall_tau({1, 2, 3, 4}, {1, 3, 2, 4}) == Approx(2.0 / 3.0));
  CHECK(kendall_tau({1, 1, 2, 3}, {1, 2, 2, 3}) == Approx(0.8));
  CHECK(std::isnan(kendall_tau({1}, {2})));
  CHECK(std::isnan(kendall_tau({1, 1, 1}, {1, 2, 3})));
  CHECK(dominates(0.9, 1.0, 0.9, 2.0));
  CHECK(dominates(0.91, 2.0, 0.9, 2.0));
  CHECK_FALSE(dominates(0.9, 2.0, 0.9, 2.0));
  CHECK_FALSE(dominates(0.95, 3.0, 0.9, 2.0));
}

TEST_CASE("nas report: runs join their subnet; the report and the plots", "[nas]") {
  testing::TempDir tmp;
  write_retrained(tmp.path, "front_0", "front", 100, 1.0, 0.80, "type: model/composed\ndim: 32\nratio: 2.0\n");
  write_retrained(tmp.path, "reference", "reference", 300, 2.0, 0.85, "type: model/composed\ndim: 64\n");
  write_retrained(tmp.path, "tau_0", "tau", 50, 0.5, 0.70, "type: model/composed\ndim: 16\n");
  write_retrained(tmp.path, "tau_1", "tau", 60, 0.6, 0.75, "type: model/composed\ndim: 24\n");
  auto subnets = load_retrained(tmp.path.string());
  REQUIRE(subnets.size() == 4);
  const std::vector<RunRecord> runs{run_of("{ratio: 2, dim: 32, type: model/composed}", 0.86),
                                    run_of("{type: model/composed, dim: 32, ratio: 2}", 0.88),
                                    run_of("{type: model/composed, dim: 64}", 0.85),
                                    run_of("{type: model/composed, dim: 16}", 0.60),
                                    run_of("{type: model/composed, dim: 24}", 0.70),
                                    run_of("{type: vit, dim: 64}", 0.99)};
  CHECK(assign_runs(subnets, runs, "test/acc") == 1);
  CHECK(subnets[0].scratch.size() == 2);
  CHECK(subnets[0].mean() == Approx(0.87));
  const std::string md = pareto_markdown(subnets, "test/acc", "blocklab search ...\n");
  CHECK_THAT(md, Catch::StartsWith("```\nblocklab search ...\n```"));
  CHECK_THAT(md, Catch::Contains("- front_0: dominates in accuracy and latency, dominates in accuracy and parameters"));
  CHECK_THAT(md, Catch::Contains("Kendall tau (inherited vs from-scratch accuracy): 1.000 over the 2 subnets"));
  render_pareto_plots(subnets, "test/acc", (tmp.path / "plots" / "nas").string());

  // A subnet chosen twice (on the front and in the tau sample) gets the runs of both; the same run
  // (config and seed: its id) retrained by two sweeps counts once.
  write_retrained(tmp.path, "tau_2", "tau", 100, 1.0, 0.80, "type: model/composed\ndim: 32\nratio: 2.0\n");
  auto twice = load_retrained(tmp.path.string());
  auto in_sweep = [](RunRecord r, const std::string& dir) { return r.run_dir = dir, r; };
  const std::vector<RunRecord> sweeps{
      in_sweep(run_of("{type: model/composed, dim: 32, ratio: 2}", 0.86), "/a/runs/vit_fmnist/1111"),
      in_sweep(run_of("{type: model/composed, dim: 32, ratio: 2}", 0.86), "/b/runs/vit_fmnist/1111"),
      in_sweep(run_of("{type: model/composed, dim: 32, ratio: 2}", 0.90), "/b/runs/vit_fmnist/2222")};
  CHECK(assign_runs(twice, sweeps, "test/acc") == 0);
  CHECK(twice[0].scratch.size() == 2);  // front_0
  CHECK(twice[4].scratch.size() == 2);  // tau_2, the same subnet
  CHECK(twice[4].mean() == Approx(0.88));
  for (const char* f : {"nas_latency.png", "nas_latency.svg", "nas_parameters.png"})
    CHECK(fs::file_size(tmp.path / "plots" / f) > 1000);
}

}  // namespace BLOCKLAB_TEST_FILE
