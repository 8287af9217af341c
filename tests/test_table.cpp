// Tables and diffs of runs: reading run and sweep directories, cell statistics, the md, tex
// and csv formats, the errors users see, and `blocklab table` / `blocklab diff` end to end.
// Fixtures: tests/fixtures/table_runs/ (runs/toy: a directory of runs; sweep: a sweep
// directory with done, failed, diverged, running and pending jobs and one missing cell;
// old_run: a run written before config.yaml carried provenance comments).
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "analysis/run_records.h"
#include "analysis/table.h"
#include "golden.h"
#include "process_support.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;
using namespace blocklab;

namespace {

const std::string kFixtures = std::string(BLOCKLAB_TEST_DIR) + "/fixtures/table_runs";

void check_golden(const std::string& name, const std::string& text) {
  const std::string mismatch = testing::golden_mismatch(name, text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

using testing::TempDir;

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::string read(const fs::path& path) { return testing::slurp(path); }

using Result = testing::CommandResult;

// Runs `blocklab <args>` in `cwd` (default: the tests directory), stdout and stderr apart.
Result run_blocklab(const std::string& args, const std::string& cwd = BLOCKLAB_TEST_DIR) {
  return testing::blocklab_command(args, cwd);
}

const RunRecord& find_record(const std::vector<RunRecord>& records, const std::string& label_end) {
  for (const auto& r : records)
    if (r.label.size() >= label_end.size() && r.label.compare(r.label.size() - label_end.size(), label_end.size(), label_end) == 0)
      return r;
  FAIL("no record ending in " << label_end);
  return records.front();
}

std::vector<RunRecord> sweep_records() { return load_run_records({kFixtures + "/sweep"}); }

TableSpec spec(const std::string& metric, std::vector<std::string> rows = {"model.mixer.type"},
               const std::string& cols = "trainer.lr") {
  TableSpec s;
  s.rows = std::move(rows);
  s.cols = cols;
  s.metric = metric;
  return s;
}

// A record made in memory: `yaml` is its config.
RunRecord record(const std::string& yaml, double acc, const std::string& status = "finished") {
  RunRecord r;
  r.label = r.run_dir = "mem";
  r.config = parse_yaml(yaml, "mem.yaml");
  r.status = status;
  if (status == "finished") r.metrics["test/acc"] = acc;
  return r;
}

}  // namespace

TEST_CASE("a directory of runs loads each run with status, reason, metrics and env", "[table]") {
  const auto records = load_run_records({kFixtures + "/runs/toy/"});
  REQUIRE(records.size() == 6);
  CHECK(records[0].label == kFixtures + "/runs/toy/pool_s0");  // name order, no trailing slash

  const RunRecord& done = find_record(records, "/softmax_s0");
  CHECK(done.status == "finished");
  CHECK(done.reason.empty());
  CHECK(done.metrics.at("test/acc") == Approx(0.85));      // from "final"
  CHECK(done.metrics.at("best/val_acc") == Approx(0.86));  // top level
  CHECK(done.metrics.at("wall_time_s") == Approx(12.5));
  CHECK(done.metrics.at("epochs") == 2);
  CHECK(done.metrics.count("weights_fnv1a64") == 0);  // a string, not a number
  CHECK(done.env.at("git_commit") == "5ecf63c2f2c2c07951ed05aaf7caa3b704931e88");
  CHECK(done.config.find_path("model.mixer.type")->text() == "attention/softmax");

  const RunRecord& diverged = find_record(records, "/pool_s1");
  CHECK(diverged.status == "diverged");
  CHECK(diverged.reason == "diverged at step 12");
  CHECK(diverged.metrics.empty());
  CHECK(find_record(records, "/pool_s2").status == "running");  // no summary.json yet
}

TEST_CASE("a summary.json line as the classify task writes it parses", "[table]") {
  TempDir tmp;
  write(tmp.path / "run/config.yaml", "seed: 0\n");
  // Verbatim from a real run: quoted keys with '/', nested "final", a hex string.
  write(tmp.path / "run/summary.json",
        R"({"status": "finished", "experiment": "vit_fmnist", "run_id": "fae098b377cc", "steps": 7722, "epochs": 18, )"
        R"("parameters": 138890, "final": {"epoch": 18, "step": 7722, "val/acc": 0.9012, "val/loss": 0.34659857177734377, )"
        R"("test/acc": 0.8946, "test/loss": 0.3670999389648438, "eval_time_s": 3.584460266}, "best_epoch": 17, )"
        R"("best/val_acc": 0.9016, "wall_time_s": 750.910544824, "train_images_per_s": 1458.774984870352, )"
        R"("data_time_fraction": 0.005197807565339941, "weights_fnv1a64": "7e45f88339cf1539"})"
        "\n");
  const RunRecord r = load_run_directory((tmp.path / "run").string());
  CHECK(r.status == "finished");
  CHECK(r.metrics.at("test/acc") == 0.8946);
  CHECK(r.metrics.at("val/loss") == 0.34659857177734377);
  CHECK(r.metrics.at("best/val_acc") == 0.9016);
  CHECK(r.metrics.at("parameters") == 138890);
  CHECK(r.metrics.size() == 15);  // 7 in "final", 8 at the top
  CHECK(r.env.empty());

  // Since 2026-12: "best" holds the best epoch's evaluation, read as "best/<name>".
  write(tmp.path / "run/summary.json",
        R"({"status": "finished", "final": {"epoch": 4, "test/mse": 0.45}, "best_epoch": 2, "best/val_mse": 0.14, )"
        R"("best": {"epoch": 2, "step": 364, "val/mse": 0.14, "test/mse": 0.34, "eval_time_s": 18.1}})"
        "\n");
  const RunRecord b = load_run_directory((tmp.path / "run").string());
  CHECK(b.metrics.at("test/mse") == 0.45);       // the last evaluation
  CHECK(b.metrics.at("best/test/mse") == 0.34);  // the test at the best val
  CHECK(b.metrics.at("best/epoch") == 2);
}

TEST_CASE("a run without a value (null, never a sentinel) and a failed run's error line are marked", "[table]") {
  TempDir tmp;
  write(tmp.path / "a/config.yaml", "seed: 0\nmodel: {dim: 8}\n");
  write(tmp.path / "a/summary.json",
        R"({"status": "finished", "final": {}, "best_epoch": -1, "best/val_acc": null, "steps": 5})"
        "\n");
  write(tmp.path / "b/config.yaml", "seed: 1\nmodel: {dim: 8}\n");
  write(tmp.path / "b/summary.json",
        R"({"status": "failed", "error": "out of memory in model.blocks.0 (attention/softmax) during training step 1", "step": 0})"
        "\n");
  const RunRecord a = load_run_directory((tmp.path / "a").string());
  CHECK(a.status == "finished");
  CHECK(a.metrics.count("best/val_acc") == 0);
  const RunRecord b = load_run_directory((tmp.path / "b").string());
  CHECK(b.status == "failed");
  CHECK(b.reason == "out of memory in model.blocks.0 (attention/softmax) during training step 1");
  write(tmp.path / "c/config.yaml", "seed: 2\nmodel: {dim: 8}\n");
  write(tmp.path / "c/summary.json", R"({"status": "finished", "best/val_acc": 0.9})" "\n");
  const RunRecord c = load_run_directory((tmp.path / "c").string());
  const Table t = build_table({a, b, c}, spec("best/val_acc", {"model.dim"}, ""));
  CHECK(format_cell(t.cells[0][0], 4) == "0.9000 (n=1, 1 failed, 1 without the metric)");
}

TEST_CASE("a sweep directory loads every job in manifest order with its ledger state", "[table]") {
  const auto records = sweep_records();
  REQUIRE(records.size() == 14);
  std::map<std::string, int> count;
  for (const auto& r : records) ++count[r.status];
  CHECK(count == std::map<std::string, int>{{"finished", 9}, {"failed", 1}, {"diverged", 2}, {"running", 1}, {"pending", 1}});

  CHECK(records[0].status == "finished");
  CHECK(records[0].label == records[0].run_dir);
  CHECK(records[0].run_dir.find(kFixtures + "/sweep/runs/toy/") == 0);
  CHECK(records[0].metrics.at("test/acc") == Approx(0.85));
  CHECK(records[5].status == "failed");
  CHECK(records[5].reason == "exit code 1: std::bad_alloc");
  CHECK(records[5].run_dir.empty());
  CHECK(records[5].label.find(kFixtures + "/sweep job ") == 0);
  CHECK(records[9].status == "diverged");
  CHECK(records[9].reason == "diverged at step 57");
  CHECK(records[13].status == "pending");  // no state.json
  CHECK(records[13].config.find_path("model.mixer.type")->text() == "mixer/pool");
  CHECK(resolve_sweep_directory(kFixtures + "/sweep/") == kFixtures + "/sweep");
  CHECK(resolve_sweep_directory(kFixtures + "/runs/toy").empty());
}

TEST_CASE("config.yaml provenance comments become the values' sources", "[table]") {
  const RunRecord a = load_run_directory(kFixtures + "/runs/toy/pool_s0");
  CHECK(a.config.find_path("trainer.lr")->source().text() == "command line 'trainer.lr=0.01'");
  CHECK(a.config.find_path("trainer.epochs")->source().text() == "conf/trainer/default.yaml:1");
  CHECK(a.config.find_path("model.mixer.pool_size")->source().line == 2);
  CHECK(a.config.find_path("trainer.lr")->as_double() == 0.01);  // the comment is not part of the value

  // A run from before provenance comments: no origin rather than a wrong one.
  const RunRecord old = load_run_directory(kFixtures + "/old_run");
  CHECK_FALSE(old.config.find_path("trainer.lr")->source().known());

  // '#' inside quoted strings is not a comment; flow lists carry their key's comment.
  TempDir tmp;
  write(tmp.path / "config.yaml",
        "name: \"a # b\"  # conf/x.yaml:1\nlayers: [1, 2]  # command line 'layers=[1,2]'\nplain: x\n");
  const ConfigNode c = load_config_with_provenance((tmp.path / "config.yaml").string(), "config.yaml");
  CHECK(c.at("name").text() == "a # b");
  CHECK(c.at("name").source().text() == "conf/x.yaml:1");
  CHECK(c.at("layers").source().text() == "command line 'layers=[1,2]'");
  CHECK_FALSE(c.at("plain").source().known());
}

TEST_CASE("corrupt or unexpected files give errors naming them", "[table]") {
  TempDir tmp;
  write(tmp.path / "run/config.yaml", "seed: 0\n");
  write(tmp.path / "run/summary.json", "{\"status\": \"finished\", \"final\": {\"test/acc\": 0.8\n");
  const std::string corrupt = testing::error_text([&] { load_run_records({(tmp.path / "run").string()}); });
  CHECK(corrupt.find("corrupt file " + (tmp.path / "run/summary.json").string() + ": not valid JSON") == 0);

  write(tmp.path / "sweep/manifest.jsonl", "{\"index\": 0, \"job\": \"abc\"}\n");
  write(tmp.path / "sweep/jobs/abc/config.yaml", "seed: 0\n");
  write(tmp.path / "sweep/jobs/abc/state.json", "{\"state\": \"exploded\"}\n");
  const std::string state = testing::error_text([&] { load_run_records({(tmp.path / "sweep").string()}); });
  CHECK(state.find("corrupt file " + (tmp.path / "sweep/jobs/abc/state.json").string() + ": unknown state 'exploded'") == 0);

  write(tmp.path / "sweep/jobs/abc/state.json", "{\"state\": \"done\", \"run_dir\": \"runs/x/1\"}\n");
  CHECK(testing::error_text([&] { load_run_records({(tmp.path / "sweep").string()}); })
            .find("the job is done but " + (tmp.path / "sweep/runs/x/1/summary.json").string() + " is missing") !=
        std::string::npos);

  write(tmp.path / "empty/config.yaml", "");
  CHECK(testing::error_text([&] { load_run_records({(tmp.path / "empty").string()}); })
            .find("corrupt file " + (tmp.path / "empty/config.yaml").string() + ": expected a mapping") == 0);

  const std::string file = testing::error_text([&] { load_run_records({(tmp.path / "run/config.yaml").string()}); });
  CHECK(file.find("is a file, not a run directory") != std::string::npos);
  CHECK(testing::error_text([&] { load_run_records({(tmp.path / "nope").string()}); }).find("no such directory") == 0);
}

TEST_CASE("cells hold the mean and sample std of their finished runs, counting the rest", "[table]") {
  const Table t = build_table(sweep_records(), spec("test/acc"));
  CHECK(t.direction == Direction::Max);
  // Rows in first-seen (manifest) order, columns numerically.
  CHECK(t.row_axes[0].labels == std::vector<std::string>{"attention/softmax", "attention/linear", "mixer/pool"});
  CHECK(t.col_axis->labels == std::vector<std::string>{"0.001", "0.01"});
  CHECK(t.col_axis->numbers == std::vector<double>{0.001, 0.01});

  const Cell& a = t.cells[0][0];  // softmax, 0.001: 0.85, 0.87, 0.86
  CHECK(a.n() == 3);
  CHECK(a.mean() == Approx(0.86));
  CHECK(a.stddev() == Approx(0.01));  // sqrt((0.01² + 0.01² + 0) / (3 − 1))
  CHECK(format_cell(a, 4) == "0.8600 ± 0.0100 (n=3)");

  const Cell& b = t.cells[0][1];  // softmax, 0.01: 0.80, 0.84 and a failed job
  CHECK(b.mean() == Approx(0.82));
  CHECK(b.stddev() == Approx(std::sqrt(0.0008)));  // (0.02² + 0.02²) / 1
  CHECK(b.failed == 1);
  CHECK(format_cell(b, 4) == "0.8200 ± 0.0283 (n=2, 1 failed)");

  const Cell& c = t.cells[1][0];  // linear, 0.001: 0.82, 0.83, 0.84
  CHECK(c.stddev() == Approx(0.01));
  CHECK(format_cell(t.cells[1][1], 4) == "diverged (n=2), running (n=1)");  // nothing finished
  CHECK(std::isnan(t.cells[1][1].mean()));
  CHECK(format_cell(t.cells[2][0], 4) == "0.8300 (n=1, 1 pending)");  // n=1: no std
  CHECK(t.cells[2][1].empty());
  CHECK(format_cell(t.cells[2][1], 4) == "—");  // missing, never 0

  // Best per column: 0.86 in the first, the only number in the second.
  CHECK(t.best == std::vector<std::vector<bool>>{{true, true}, {false, false}, {false, false}});
}

TEST_CASE("a loss metric bolds the minimum", "[table]") {
  const Table t = build_table(sweep_records(), spec("test/loss"));
  CHECK(t.direction == Direction::Min);
  // Column 0.001: softmax 0.40, linear 0.48, pool 0.36 (n=1) -> pool.
  CHECK(t.cells[2][0].mean() == Approx(0.36));
  CHECK(t.best == std::vector<std::vector<bool>>{{false, true}, {false, false}, {true, false}});
  CHECK(format_markdown(t).find("| mixer/pool | **0.3600** (n=1, 1 pending) | — |") != std::string::npos);

  TableSpec forced = spec("test/loss");
  forced.best = Direction::Max;  // --best overrides the name
  CHECK(build_table(sweep_records(), forced).best[1][0]);
}

TEST_CASE("the metric's name decides the direction; the last telling word wins", "[table]") {
  CHECK(metric_direction("test/acc") == Direction::Max);
  CHECK(metric_direction("best/val_acc") == Direction::Max);
  CHECK(metric_direction("val/accuracy") == Direction::Max);
  CHECK(metric_direction("mIoU") == Direction::Max);
  CHECK(metric_direction("F1") == Direction::Max);
  CHECK(metric_direction("val/loss") == Direction::Min);
  CHECK(metric_direction("wall_time_s") == Direction::Min);
  CHECK(metric_direction("top1_err") == Direction::Min);
  CHECK(metric_direction("acc_error") == Direction::Min);
  CHECK(metric_direction("test/ppl") == Direction::Min);
  CHECK(metric_direction("test/bpc") == Direction::Min);  // bits per character (task lm)
  CHECK(metric_direction("val/nll") == Direction::Min);
  CHECK_FALSE(metric_direction("train_images_per_s").has_value());
  CHECK_FALSE(metric_direction("parameters").has_value());
  const std::string e = testing::error_text([] { build_table(sweep_records(), spec("parameters")); });
  CHECK(e == "cannot tell whether a higher or a lower 'parameters' is better\n"
             "  add --best max (higher is better) or --best min (lower is better)\n");
}

TEST_CASE("cells equal as printed are all bold", "[table]") {
  const std::vector<RunRecord> runs = {record("m: a\nseed: 0\n", 0.90004), record("m: a\nseed: 1\n", 0.89996),
                                       record("m: b\nseed: 0\n", 0.9), record("m: c\nseed: 0\n", 0.8)};
  TableSpec s = spec("test/acc", {"m"}, "");
  const Table t = build_table(runs, s);
  CHECK(t.best == std::vector<std::vector<bool>>{{true}, {true}, {false}});
  CHECK(format_markdown(t) ==
        "**test/acc**: mean ± sample std (n−1) over the finished runs of each cell (n = runs averaged); "
        "bold = best in each column (higher is better).\n\n"
        "| m | test/acc |\n| :-- | --: |\n"
        "| a | **0.9000 ± 0.0001** (n=2) |\n| b | **0.9000** (n=1) |\n| c | 0.8000 (n=1) |\n");
}

TEST_CASE("axis order: numbers ascending, others first seen, unset last", "[table]") {
  const std::vector<RunRecord> runs = {record("k: zeta\nx: 10\n", 1), record("k: alpha\nx: 2\n", 1),
                                       record("k: 3\nx: 1e-3\n", 1), record("x: 0.5\n", 1)};
  const Table t = build_table(runs, spec("test/acc", {"k"}, "x"));
  CHECK(t.row_axes[0].labels == std::vector<std::string>{"3", "zeta", "alpha", "(unset)"});
  CHECK(t.row_axes[0].numbers.empty());
  CHECK(t.col_axis->labels == std::vector<std::string>{"1e-3", "0.5", "2", "10"});
  const LineChart chart = table_chart(t);
  CHECK(chart.log_x);  // all positive, 10 / 0.001 >= 20
  CHECK(chart.x_categories.empty());
  REQUIRE(chart.series.size() == 4);
  CHECK(chart.series[0].label == "k=3");
  CHECK(chart.series[0].x == std::vector<double>{0.001, 0.5, 2, 10});
  CHECK(std::isnan(chart.series[0].y[1]));  // a missing cell is a gap, not 0
  CHECK(chart.series[0].y[0] == 1);

  // One column: a single line on the rows key's axis (numeric here, so not categorical).
  const LineChart one = table_chart(build_table(runs, spec("test/acc", {"x"}, "")));
  CHECK(one.x_label == "x");
  CHECK(one.x_categories.empty());
  REQUIRE(one.series.size() == 1);
  CHECK(one.series[0].x == std::vector<double>{0.001, 0.5, 2, 10});
  const LineChart two = table_chart(build_table(runs, spec("test/acc", {"k", "x"}, "")));
  CHECK(two.x_categories.front() == "k=3, x=1e-3");
}

TEST_CASE("a mapping as the rows key is labelled by its type and what varies", "[table]") {
  const Table t = build_table(sweep_records(), spec("test/acc", {"model.mixer"}));
  CHECK(t.row_axes[0].labels ==
        std::vector<std::string>{"attention/softmax (heads=2)", "attention/linear (heads=2)", "mixer/pool (pool_size=3)"});
  const LineChart chart = table_chart(t);
  CHECK_FALSE(chart.log_x);  // 0.01 / 0.001 < 20
  CHECK(chart.series[0].label == "model.mixer=attention/softmax (heads=2)");
  CHECK(chart.series[0].lo[0] == Approx(0.85));
  CHECK(chart.series[0].hi[0] == Approx(0.87));
}

TEST_CASE("a mapping chosen from a config group is labelled by the option's name", "[table]") {
  // The configs as a run's config.yaml gives them back: model.type's provenance is the group file.
  auto model_from = [](const std::string& file, const std::string& yaml, double acc) {
    RunRecord r = record("x: 1\n", acc);
    r.config.set("model", parse_yaml(yaml, file));
    return r;
  };
  const std::vector<RunRecord> runs = {
      model_from("experiments/conf/model/dlinear.yaml", "type: forecast/dlinear\nkernel: 25\n", 0.5),
      model_from("experiments/conf/model/dlinear.yaml", "type: forecast/dlinear\nkernel: 13\n", 0.6),
      model_from("/abs/conf/model/transformer_forecaster.yaml", "type: model/composed\ndim: 64\n", 0.7)};
  CHECK(build_table(runs, spec("test/acc", {"model"}, "")).row_axes[0].labels ==
        std::vector<std::string>{"dlinear (kernel=25)", "dlinear (kernel=13)", "transformer_forecaster"});
  // A file of another group (model/mixer/...) is not an option of `model`: labels by type.
  std::vector<RunRecord> mixed = runs;
  mixed.push_back(model_from("experiments/conf/model/mixer/softmax.yaml", "type: attention/softmax\n", 0.8));
  CHECK(build_table(mixed, spec("test/acc", {"model"}, "")).row_axes[0].labels.back() == "attention/softmax");
}

TEST_CASE("md, tex and csv of a sweep (goldens)", "[table]") {
  const Table t = build_table(sweep_records(), spec("test/acc"));
  check_golden("table_md", format_markdown(t));
  check_golden("table_tex", format_latex(t));
  check_golden("table_csv", format_csv(t));
  CHECK(table_file_stem(t.spec) == "test_acc_by_model.mixer.type_x_trainer.lr");
  TableSpec two = spec("val/loss", {"model.mixer.type", "seed"}, "");
  CHECK(table_file_stem(two) == "val_loss_by_model.mixer.type-seed");
}

TEST_CASE("text is escaped for each format", "[table]") {
  const std::vector<RunRecord> runs = {record("k: \"a_b%c&d#e$f{g}h\"\nc: \"x|y, \\\"z\\\"\"\n", 0.5)};
  const Table t = build_table(runs, spec("test/acc", {"k"}, "c"));
  const std::string tex = format_latex(t);
  CHECK(tex.find("a\\_b\\%c\\&d\\#e\\$f\\{g\\}h & \\textbf{0.5000} (n=1) \\\\") != std::string::npos);
  CHECK(tex.find("\\toprule") != std::string::npos);
  CHECK(format_markdown(t).find("c=x\\|y, \"z\"") != std::string::npos);
  CHECK(format_csv(t) == "k,c,mean,std,n,failed,diverged,pending,running\n"
                         "a_b%c&d#e$f{g}h,\"x|y, \"\"z\"\"\",0.5,,1,0,0,0,0\n");
}

TEST_CASE("runs in one cell that differ in another key are refused", "[table]") {
  const auto runs = load_run_records({kFixtures + "/runs/toy"});
  const std::string e = testing::error_text([&] { build_table(runs, spec("test/acc")); });
  CHECK(e.find("runs in the same table cell differ in trainer.epochs;") == 0);
  // Adding the key makes every cell one config. Rows: mixer in first-seen order (the runs are
  // read in name order, pool_s0 first), then epochs ascending.
  const Table t = build_table(runs, spec("test/acc", {"model.mixer.type", "trainer.epochs"}));
  REQUIRE(t.row_groups.size() == 3);
  CHECK(t.row_label(0) == "model.mixer.type=mixer/pool, trainer.epochs=2");
  CHECK(t.row_label(2) == "model.mixer.type=attention/softmax, trainer.epochs=4");
  CHECK(format_cell(t.cells[0][1], 3) == "0.800 (n=1, 1 diverged, 1 running)");
  CHECK(format_cell(t.cells[1][0], 3) == "0.860 ± 0.014 (n=2)");
  CHECK(format_cell(t.cells[2][0], 3) == "0.900 (n=1)");
  CHECK(format_cell(t.cells[0][0], 3) == "—");
}

TEST_CASE("blocklab table on a sweep prints the table and writes tables and plots", "[table]") {
  TempDir tmp;
  fs::copy(kFixtures + "/sweep", tmp.path / "sweep", fs::copy_options::recursive);
  const Result r = run_blocklab("table sweep --rows model.mixer.type --cols trainer.lr --metric test/acc", tmp.path.string());
  INFO(r.err);
  CHECK(r.status == 0);
  check_golden("table_cli_sweep", r.out + "--- stderr\n" + r.err);
  const fs::path stem = "test_acc_by_model.mixer.type_x_trainer.lr";
  CHECK(read(tmp.path / "sweep/tables" / stem.string().append(".md")) == r.out);
  CHECK(read(tmp.path / "sweep/tables" / stem.string().append(".tex")).find("\\bottomrule") != std::string::npos);
  CHECK(read(tmp.path / "sweep/tables" / stem.string().append(".csv")).find("mean,std,n") != std::string::npos);
  CHECK(fs::file_size(tmp.path / "sweep/plots" / stem.string().append(".png")) > 0);
  CHECK(fs::file_size(tmp.path / "sweep/plots" / stem.string().append(".svg")) > 0);

  // Run directories print only, unless --out says where the files go.
  const Result csv = run_blocklab("table fixtures/table_runs/runs/toy --rows model.mixer.type,trainer.epochs "
                                  "--metric val/loss --format csv --precision 2");
  CHECK(csv.status == 0);
  CHECK(csv.err.empty());
  CHECK(csv.out.find("model.mixer.type,trainer.epochs,mean,std,n,failed,diverged,pending,running\n") == 0);
  const Result out = run_blocklab("table fixtures/table_runs/runs/toy --rows model.mixer.type,trainer.epochs "
                                  "--metric wall_time_s --format tex --out '" + tmp.path.string() + "/o'");
  CHECK(out.status == 0);
  CHECK(fs::exists(tmp.path / "o/tables/wall_time_s_by_model.mixer.type-trainer.epochs.tex"));
  CHECK(out.err.find("wrote " + tmp.path.string() + "/o/plots/wall_time_s_by_model.mixer.type-trainer.epochs.{png,svg}") !=
        std::string::npos);
}

TEST_CASE("blocklab table errors say what is wrong and how to fix it", "[table]") {
  const std::string base = "table fixtures/table_runs/sweep --cols trainer.lr ";
  const Result metric = run_blocklab(base + "--rows model.mixer.type --metric test/accuracy");
  CHECK(metric.status == 2);
  check_golden("table_error_unknown_metric", metric.err);

  const Result key = run_blocklab(base + "--rows model.mixer.tpye --metric test/acc");
  CHECK(key.status == 2);
  check_golden("table_error_unknown_key", key.err);

  const Result ambiguous = run_blocklab("table fixtures/table_runs/runs/toy --rows model.mixer.type --cols trainer.lr "
                                        "--metric test/acc");
  CHECK(ambiguous.status == 2);
  check_golden("table_error_ambiguous", ambiguous.err);

  const Result not_runs = run_blocklab("table fixtures/conf --rows seed --metric test/acc");
  CHECK(not_runs.status == 2);
  check_golden("table_error_not_run_dir", not_runs.err);

  const Result usage = run_blocklab("table fixtures/table_runs/sweep --rows seed");
  CHECK(usage.status == 2);
  CHECK(usage.err == "error: blocklab table: --rows and --metric are required\n  see: blocklab table --help\n");
  CHECK(run_blocklab("table --help").out.find("Usage: blocklab table") == 0);
}

TEST_CASE("blocklab diff shows config differences with provenance, then results", "[table]") {
  const Result r = run_blocklab("diff fixtures/table_runs/runs/toy/softmax_s0 fixtures/table_runs/runs/toy/pool_s0");
  CHECK(r.status == 0);
  check_golden("diff_runs", r.out);

  // Against a run without provenance comments: only the side that has it is shown.
  const Result old = run_blocklab("diff fixtures/table_runs/runs/toy/softmax_s0 fixtures/table_runs/old_run");
  CHECK(old.status == 0);
  CHECK(old.out.find("config: 1 of 12 values differ") != std::string::npos);
  CHECK(old.out.find("trainer.lr  0.001  0.002  A: conf/trainer/default.yaml:2\n") != std::string::npos);

  const Result same = run_blocklab("diff fixtures/table_runs/runs/toy/softmax_s0 fixtures/table_runs/runs/toy/softmax_s0");
  CHECK(same.out.find("config: identical (12 values)\n") != std::string::npos);

  const Result bad = run_blocklab("diff fixtures/table_runs/runs/toy/softmax_s0");
  CHECK(bad.status == 2);
  const Result sweep = run_blocklab("diff fixtures/table_runs/sweep fixtures/table_runs/old_run");
  CHECK(sweep.status == 2);
  CHECK(sweep.err.find("'fixtures/table_runs/sweep' is not a run directory") != std::string::npos);
}

TEST_CASE("blocklab table --also adds per-row summary columns (never bold, counts without decimals)", "[table]") {
  const std::string base = "table fixtures/table_runs/runs/toy --rows model.mixer.type,trainer.epochs --metric test/acc "
                           "--also wall_time_s,parameters";
  const Result md = run_blocklab(base);
  REQUIRE(md.status == 0);
  CHECK(md.out.find("| test/acc | wall_time_s | parameters |") != std::string::npos);
  // softmax, 2 epochs: seeds 0 and 1 ran 12.5 s and 12.25 s; every run has 13898 parameters.
  CHECK(md.out.find("| 12.3750 ± 0.1768 | 13898 |") != std::string::npos);
  CHECK(md.out.find("Also per row, over the same runs: wall_time_s, parameters.") != std::string::npos);
  const Result csv = run_blocklab(base + " --format csv");
  REQUIRE(csv.status == 0);
  CHECK(csv.out.rfind("model.mixer.type,trainer.epochs,mean,std,n,failed,diverged,pending,running,"
                      "wall_time_s mean,wall_time_s std,parameters mean,parameters std\n", 0) == 0);
  const Result tex = run_blocklab(base + " --format tex");
  CHECK(tex.out.find("\\begin{tabular}{llrrr}") != std::string::npos);
  const Result with_cols = run_blocklab(base + " --cols trainer.lr");
  CHECK(with_cols.status == 2);
  CHECK(with_cols.err.find("--also adds columns per row") != std::string::npos);
}

namespace {

// Four mixers: softmax 0.80, 0.84; gmm 0.90, 0.86; pool 0.70 (n=1); linear only failed.
std::vector<RunRecord> mixer_records() {
  return {record("m: softmax\nseed: 0\n", 0.80), record("m: softmax\nseed: 1\n", 0.84),
          record("m: gmm\nseed: 0\n", 0.90),     record("m: gmm\nseed: 1\n", 0.86),
          record("m: pool\nseed: 0\n", 0.70),    record("m: linear\nseed: 0\n", 0, "failed")};
}

}  // namespace

TEST_CASE("over a categorical key the plot is a dot chart: best first, mean ± std bars, the first row marked",
          "[table]") {
  const Table t = build_table(mixer_records(), spec("test/acc", {"m"}, ""));
  const TablePlot p = table_plot(t);
  REQUIRE(p.dots);
  const DotChart& d = p.dot;
  CHECK(d.categories == std::vector<std::string>{"softmax", "gmm", "pool", "linear"});  // table order
  CHECK(d.category_label == "m");
  CHECK(d.value_label == "test/acc");
  CHECK_FALSE(d.lower_is_better);
  CHECK(d.baseline == 0);  // the first row: for a sweep, its first value
  REQUIRE(d.series.size() == 1);
  CHECK(d.series[0].label.empty());  // one column: no legend entry
  // Error bars: mean ± sample std of each cell.
  const DotSeries& s = d.series[0];
  CHECK(s.value[0] == Approx(0.82));
  CHECK(s.lo[0] == Approx(0.82 - std::sqrt(0.0008)));
  CHECK(s.hi[0] == Approx(0.82 + std::sqrt(0.0008)));
  for (std::size_t r = 0; r < 3; ++r) {
    CHECK(s.lo[r] == Approx(t.cells[r][0].mean() - t.cells[r][0].stddev()));
    CHECK(s.hi[r] == Approx(t.cells[r][0].mean() + t.cells[r][0].stddev()));
  }
  CHECK(s.lo[2] == Approx(0.70));  // n=1: no spread
  CHECK(s.hi[2] == Approx(0.70));
  CHECK(std::isnan(s.value[3]));  // nothing finished: no marker, sorted last
  // Drawn best first: gmm 0.88, softmax 0.82, pool 0.70, then linear.
  CHECK(dot_chart_order(d) == std::vector<size_t>{1, 0, 2, 3});

  // A loss (or --best min) sorts ascending.
  TableSpec by_min = spec("test/acc", {"m"}, "");
  by_min.best = Direction::Min;
  const TablePlot lowest = table_plot(build_table(mixer_records(), by_min));
  CHECK(lowest.dot.lower_is_better);
  CHECK(dot_chart_order(lowest.dot) == std::vector<size_t>{2, 0, 1, 3});

  // --baseline names a row by its value or its full label; anything else is an error.
  CHECK(table_plot(t, "gmm").dot.baseline == 1);
  CHECK(table_plot(t, "m=pool").dot.baseline == 2);
  const std::string e = testing::error_text([&] { table_plot(t, "gmn"); });
  CHECK(e.find("no row of the table is 'gmn' (--baseline)") == 0);
  CHECK(e.find("did you mean 'gmm'?") != std::string::npos);
  CHECK(e.find("rows: softmax; gmm; pool; linear") != std::string::npos);

  TempDir tmp;
  const std::string png = (tmp.path / "p/dots.png").string(), svg = (tmp.path / "p/dots.svg").string();
  render_table_plot(p, png, svg);
  CHECK(fs::file_size(png) > 1000);
  CHECK(fs::file_size(svg) > 1000);
}

TEST_CASE("a dot chart has one marker series per column; several rows keys are categories too", "[table]") {
  std::vector<RunRecord> runs;
  for (const char* m : {"a", "b"})
    for (const char* d : {"mnist", "cifar"})
      runs.push_back(record(std::string("m: ") + m + "\nd: " + d + "\n", m[0] == 'a' ? 0.9 : 0.8));
  const TablePlot cols = table_plot(build_table(runs, spec("test/acc", {"m"}, "d")));
  REQUIRE(cols.dots);
  CHECK(cols.dot.categories == std::vector<std::string>{"a", "b"});
  REQUIRE(cols.dot.series.size() == 2);
  CHECK(cols.dot.series[0].label == "d=mnist");
  CHECK(cols.dot.series[1].label == "d=cifar");
  CHECK(cols.dot.series[1].value == std::vector<double>{0.9, 0.8});

  const TablePlot rows = table_plot(build_table(runs, spec("test/acc", {"m", "d"}, "")));
  REQUIRE(rows.dots);
  CHECK(rows.dot.categories == std::vector<std::string>{"a, mnist", "a, cifar", "b, mnist", "b, cifar"});
  CHECK(rows.dot.category_label == "m, d");
  CHECK(table_plot(build_table(runs, spec("test/acc", {"m", "d"}, "")), "b, cifar").dot.baseline == 3);
  CHECK(table_plot(build_table(runs, spec("test/acc", {"m", "d"}, "")), "m=b, d=mnist").dot.baseline == 2);
}

TEST_CASE("a numeric key keeps the line chart", "[table]") {
  std::vector<RunRecord> runs;
  for (const char* m : {"a", "b"})
    for (const char* lr : {"0.001", "0.01"})
      runs.push_back(record(std::string("m: ") + m + "\nlr: " + lr + "\n", m[0] == 'a' ? 0.9 : 0.8));
  // Numeric columns: a line per row over them (as table_chart).
  const TablePlot over_cols = table_plot(build_table(runs, spec("test/acc", {"m"}, "lr")));
  CHECK_FALSE(over_cols.dots);
  CHECK(over_cols.line.x_categories.empty());
  REQUIRE(over_cols.line.series.size() == 2);
  CHECK(over_cols.line.series[0].label == "m=a");
  CHECK(over_cols.line.series[0].x == std::vector<double>{0.001, 0.01});
  // A numeric rows key with categorical columns: a line per column over the rows key.
  const TablePlot over_rows = table_plot(build_table(runs, spec("test/acc", {"lr"}, "m")));
  CHECK_FALSE(over_rows.dots);
  CHECK(over_rows.line.x_label == "lr");
  REQUIRE(over_rows.line.series.size() == 2);
  CHECK(over_rows.line.series[1].label == "m=b");
  CHECK(over_rows.line.series[1].x == std::vector<double>{0.001, 0.01});
  CHECK(over_rows.line.series[1].y == std::vector<double>{0.8, 0.8});
  // One numeric rows key.
  std::vector<RunRecord> lrs = {record("lr: 0.001\n", 0.7), record("lr: 0.01\n", 0.8)};
  const Table one = build_table(lrs, spec("test/acc", {"lr"}, ""));
  const TablePlot line = table_plot(one);
  CHECK_FALSE(line.dots);
  CHECK(line.line.series.at(0).x == std::vector<double>{0.001, 0.01});
  // A baseline belongs to a dot chart.
  const std::string e = testing::error_text([&] { table_plot(one, "0.001"); });
  CHECK(e.find("--baseline marks a row of a dot chart, but 'lr' is numeric") == 0);
}

TEST_CASE("blocklab table draws a dot chart over categories; --baseline is checked before any output", "[table]") {
  TempDir tmp;
  const std::string base =
      "table fixtures/table_runs/runs/toy --rows model.mixer.type,trainer.epochs --metric test/acc "
      "--out '" +
      tmp.path.string() + "/o'";
  const Result r = run_blocklab(base + " --baseline 'attention/softmax, 4'");
  INFO(r.err);
  CHECK(r.status == 0);
  const fs::path png = tmp.path / "o/plots/test_acc_by_model.mixer.type-trainer.epochs.png";
  CHECK(fs::file_size(png) > 1000);
  const Result bad = run_blocklab(base + " --baseline attention/softmax");
  CHECK(bad.status == 2);
  CHECK(bad.out.empty());
  CHECK(bad.err.find("no row of the table is 'attention/softmax' (--baseline)") != std::string::npos);
  const Result line = run_blocklab(
      "table fixtures/table_runs/sweep --rows model.mixer.type --cols trainer.lr "
      "--metric test/acc --baseline mixer/pool");
  CHECK(line.status == 2);
  CHECK(line.err.find("--baseline marks a row of a dot chart") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
