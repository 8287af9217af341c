// Training curves: metrics.jsonl read into series (a diverged run, a line cut off by a kill,
// a restarted run, corrupt and missing files), overlay labels from differing config leaves,
// the mean over seeds, and `blocklab plot` end to end (PNG files decoded and checked).
// Fixtures: tests/fixtures/curves/ (runs/: four runs of one config, lr 0.001 seeds 0-2 with
// seed 2 still running, and lr 0.01; diverged/, killed/, started/, corrupt/, no_metrics/;
// sweep/: a sweep with a done, a diverged and a pending job).
#include <catch2/catch.hpp>

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "analysis/curves.h"
#include "analysis/run_records.h"
#include "golden.h"
#include "process_support.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

namespace fs = std::filesystem;
using namespace blocklab;
using Catch::Matchers::Contains;

namespace {

const std::string kFixtures = std::string(BLOCKLAB_TEST_DIR) + "/fixtures/curves";

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

void check_golden(const std::string& name, const std::string& text) {
  const std::string mismatch = testing::golden_mismatch(name, text);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

testing::CommandResult plot(const std::string& args) { return testing::blocklab_command("plot " + args); }

const MetricSeries& series(const RunCurves& c, const std::string& name) {
  const MetricSeries* s = c.find(name);
  REQUIRE(s != nullptr);
  return *s;
}

// A PNG decoded with cairo: its size, and how many pixels are not white / near a colour.
struct Png {
  int width = 0, height = 0, non_white = 0, blue = 0, orange = 0;
  explicit Png(const std::string& path) {
    cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
    REQUIRE(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS);
    cairo_surface_flush(s);
    width = cairo_image_surface_get_width(s);
    height = cairo_image_surface_get_height(s);
    const unsigned char* data = cairo_image_surface_get_data(s);
    const int stride = cairo_image_surface_get_stride(s);
    auto near = [](int r, int g, int b, int R, int G, int B) {
      return std::abs(r - R) <= 3 && std::abs(g - G) <= 3 && std::abs(b - B) <= 3;
    };
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        const std::uint32_t p = *reinterpret_cast<const std::uint32_t*>(data + y * stride + x * 4);
        const int r = (p >> 16) & 0xff, g = (p >> 8) & 0xff, b = p & 0xff;
        non_white += !(r > 247 && g > 247 && b > 247);
        blue += near(r, g, b, 0x01, 0x73, 0xB2);    // palette colour 1
        orange += near(r, g, b, 0xDE, 0x8F, 0x05);  // palette colour 2
      }
    cairo_surface_destroy(s);
  }
};

std::vector<std::string> labels_of(const LineChart& c) {
  std::vector<std::string> out;
  for (const auto& s : c.series) out.push_back(s.label);
  return out;
}

const CurveChart& chart_for(const std::vector<CurveChart>& charts, const std::string& metric) {
  for (const auto& c : charts)
    if (c.metric == metric) return c;
  FAIL("no chart for " << metric);
  return charts.front();
}

}  // namespace

TEST_CASE("metrics.jsonl is read into training and evaluation series", "[curves]") {
  const RunCurves c = read_metrics_file(kFixtures + "/runs/lr_small_s0/metrics.jsonl");
  CHECK(c.lines == 6);
  CHECK_FALSE(c.truncated_tail);
  CHECK_FALSE(c.diverged);
  CHECK(c.steps_per_epoch == 4);
  std::vector<std::string> names;
  for (const auto& s : c.metrics) names.push_back(s.name);
  CHECK(names == std::vector<std::string>{"loss", "lr", "images_per_s", "test/acc", "test/loss", "eval_time_s"});

  const MetricSeries& loss = series(c, "loss");
  CHECK_FALSE(loss.per_eval);
  CHECK(loss.step == std::vector<double>{2, 4, 6, 8});
  CHECK(loss.epoch == std::vector<double>{1, 1, 2, 2});
  CHECK(loss.value == std::vector<double>{2.30, 2.00, 1.70, 1.50});
  CHECK(series(c, "lr").value == std::vector<double>{0.0005, 0.001, 0.001, 0.0005});

  const MetricSeries& acc = series(c, "test/acc");
  CHECK(acc.per_eval);
  CHECK(acc.epoch == std::vector<double>{1, 2});
  CHECK(acc.step == std::vector<double>{4, 8});
  CHECK(acc.value == std::vector<double>{0.40, 0.55});
  CHECK(series(c, "eval_time_s").per_eval);  // on the evaluation lines
}

TEST_CASE("a diverged run ends at its last finite values", "[curves]") {
  const RunCurves c = read_metrics_file(kFixtures + "/diverged/metrics.jsonl");
  CHECK(c.diverged);
  CHECK(c.diverged_at == 5);
  CHECK(c.lines == 3);
  CHECK(series(c, "loss").step == std::vector<double>{2, 4});  // the NaN of step 5 is not drawn
  CHECK(series(c, "loss").value == std::vector<double>{2.4, 9.5});
  CHECK(std::isnan(c.steps_per_epoch));
}

TEST_CASE("a last line cut off by a kill is ignored without an error", "[curves]") {
  const RunCurves c = read_metrics_file(kFixtures + "/killed/metrics.jsonl");
  CHECK(c.truncated_tail);
  CHECK(c.lines == 2);
  CHECK(series(c, "loss").step == std::vector<double>{2, 4});
  CHECK(series(c, "loss").value == std::vector<double>{2.3, 2.1});

  // A complete last line without its newline is kept.
  testing::TempDir dir;
  write(dir.path / "m.jsonl", "{\"step\": 2, \"loss\": 1.5}\n{\"step\": 4, \"loss\": 1.25}");
  const RunCurves whole = read_metrics_file((dir.path / "m.jsonl").string());
  CHECK_FALSE(whole.truncated_tail);
  CHECK(series(whole, "loss").value == std::vector<double>{1.5, 1.25});
}

TEST_CASE("the JSON reader keeps numbers and skips other values", "[curves]") {
  testing::TempDir dir;
  write(dir.path / "m.jsonl",
        "{\"step\": 1, \"note\": \"a \\\"quoted\\\" , } text\", \"nested\": {\"a\": [1, {\"b\": null}], \"c\": false},"
        " \"loss\": 2.5e-1, \"acc\\u002fx\": -1E2, \"inf\": Infinity}\n"
        "\n"
        "  {\"step\": 2 ,\"loss\":0.125}  \r\n");
  const RunCurves c = read_metrics_file((dir.path / "m.jsonl").string());
  CHECK(c.lines == 2);
  CHECK(series(c, "loss").value == std::vector<double>{0.25, 0.125});
  CHECK(series(c, "acc/x").value == std::vector<double>{-100});  // \u002f is '/'
  CHECK(series(c, "acc/x").per_eval);
  CHECK(series(c, "inf").value.empty());  // not finite: not drawn
  CHECK(c.find("note") == nullptr);
  CHECK(c.find("nested") == nullptr);
}

TEST_CASE("a run restarted from an earlier step replaces the steps it logs again", "[curves]") {
  testing::TempDir dir;
  write(dir.path / "m.jsonl",
        "{\"step\": 2, \"loss\": 3}\n{\"step\": 4, \"loss\": 2}\n{\"step\": 6, \"loss\": 1}\n"
        "{\"step\": 4, \"loss\": 2.5}\n{\"step\": 6, \"loss\": 1.5}\n");
  const RunCurves c = read_metrics_file((dir.path / "m.jsonl").string());
  CHECK(series(c, "loss").step == std::vector<double>{2, 4, 6});
  CHECK(series(c, "loss").value == std::vector<double>{3, 2.5, 1.5});
}

TEST_CASE("a missing or corrupt metrics.jsonl is an error naming the file", "[curves]") {
  const std::string corrupt = kFixtures + "/corrupt/metrics.jsonl";
  CHECK_THROWS_AS(read_metrics_file(corrupt), ConfigError);
  CHECK_THROWS_WITH(read_metrics_file(corrupt), Contains(corrupt) && Contains("line 2"));
  const std::string missing = kFixtures + "/no_metrics/metrics.jsonl";
  CHECK_THROWS_AS(read_metrics_file(missing), ConfigError);
  CHECK_THROWS_WITH(read_metrics_file(missing), Contains(missing));

  // A line that is valid JSON but not an object is corrupt too.
  testing::TempDir dir;
  write(dir.path / "m.jsonl", "{\"step\": 2, \"loss\": 3}\n[1, 2]\n");
  CHECK_THROWS_WITH(read_metrics_file((dir.path / "m.jsonl").string()), Contains("line 2 is not a JSON object"));
}

TEST_CASE("trailing_mean averages the last k values", "[curves]") {
  CHECK(trailing_mean({1, 2, 3, 4, 5}, 2) == std::vector<double>{1, 1.5, 2.5, 3.5, 4.5});
  CHECK(trailing_mean({1, 2, 3, 4, 5}, 3) == std::vector<double>{1, 1.5, 2, 3, 4});
  CHECK(trailing_mean({1, 2, 3}, 1) == std::vector<double>{1, 2, 3});
  CHECK(trailing_mean({1, 2, 3}, 10) == std::vector<double>{1, 1.5, 2});
}

TEST_CASE("overlay labels are the config leaves that differ", "[curves]") {
  const CurveSet set = load_curves(load_run_records({kFixtures + "/runs"}));
  REQUIRE(set.runs.size() == 4);                           // ordered by the differing values: lr, then seed
  CHECK(set.runs[0].label == "trainer.lr=0.001, seed=0");  // output_dir never counts
  CHECK(set.runs[1].label == "trainer.lr=0.001, seed=1");
  CHECK(set.runs[2].label == "trainer.lr=0.001, seed=2");
  CHECK(set.runs[3].label == "trainer.lr=0.01, seed=0");  // lr_big_s0, first in name order
  CHECK(set.runs[0].name == "runs/lr_small_s0");

  // Equal configs: the run ids.
  testing::TempDir dir;
  fs::copy(kFixtures + "/runs/lr_small_s0", dir.path / "a1b2", fs::copy_options::recursive);
  fs::copy(kFixtures + "/runs/lr_small_s0", dir.path / "c3d4", fs::copy_options::recursive);
  const CurveSet same = load_curves(load_run_records({(dir.path / "a1b2").string(), (dir.path / "c3d4").string()}));
  REQUIRE(same.runs.size() == 2);
  CHECK(same.runs[0].label == "a1b2");
  CHECK(same.runs[1].label == "c3d4");

  // Some equal, one different: the equal ones get their id so no two lines read the same.
  fs::copy(kFixtures + "/runs/lr_big_s0", dir.path / "e5f6", fs::copy_options::recursive);
  const CurveSet mixed = load_curves(load_run_records({dir.path.string()}));
  REQUIRE(mixed.runs.size() == 3);
  CHECK(mixed.runs[0].label == "trainer.lr=0.001 (a1b2)");
  CHECK(mixed.runs[1].label == "trainer.lr=0.001 (c3d4)");
  CHECK(mixed.runs[2].label == "trainer.lr=0.01");

  // Mappings are compared leaf by leaf; a leaf only one config has is shown where it is set.
  const ConfigNode a = parse_yaml("model: {type: vit, mixer: {type: attention/softmax}}\nseed: 1\n", "a.yaml");
  const ConfigNode b = parse_yaml("model: {type: vit, mixer: {type: attention/gmm, kernels: 2}}\nseed: 1\n", "b.yaml");
  CHECK(differing_labels({&a, &b}) ==
        std::vector<std::string>{"model.mixer.type=attention/softmax",
                                 "model.mixer.kernels=2, model.mixer.type=attention/gmm"});

  // Labels longer than the limit use the shortest unambiguous key names.
  const ConfigNode c = parse_yaml(
      "model: {mixer: {type: attention/softmax}, channel: {type: mlp}}\n"
      "trainer: {lr: 0.001}\nseed: 0\n",
      "c.yaml");
  const ConfigNode d = parse_yaml(
      "model: {mixer: {type: attention/gmm}, channel: {type: glu}}\n"
      "trainer: {lr: 0.01}\nseed: 1\n",
      "d.yaml");
  CHECK(differing_labels({&c, &d})[0] ==
        "model.channel.type=mlp, model.mixer.type=attention/softmax, trainer.lr=0.001, seed=0");
  CHECK(differing_labels({&c, &d}, 36) ==
        std::vector<std::string>{"channel.type=mlp, mixer.type=attention/softmax, lr=0.001, seed=0",
                                 "channel.type=glu, mixer.type=attention/gmm, lr=0.01, seed=1"});
}

TEST_CASE("charts: defaults, x axes, diverged and failed marks", "[curves]") {
  const CurveSet set = load_curves(load_run_records({kFixtures + "/runs/lr_small_s0", kFixtures + "/diverged"}));
  CHECK(default_curve_metrics(set) == std::vector<std::string>{"loss", "lr", "test/acc", "test/loss"});
  CHECK(available_curve_metrics(set) ==
        std::vector<std::string>{"eval_time_s", "images_per_s", "loss", "lr", "test/acc", "test/loss"});

  const std::vector<CurveChart> charts = curve_charts(set, {});
  REQUIRE(charts.size() == 5);  // and loss with test/loss on one chart
  CHECK(charts.back().file_stem == "curves_loss_train_val");
  const CurveChart& loss = chart_for(charts, "loss");
  CHECK(loss.file_stem == "curves_loss");
  CHECK(loss.chart.x_label == "step");
  CHECK(labels_of(loss.chart) == std::vector<std::string>{"trainer.lr=0.001", "trainer.lr=10.0 (diverged)"});
  CHECK(loss.chart.series[1].x == std::vector<double>{2, 4});  // drawn up to the divergence
  CHECK(loss.chart.series[0].markers);                         // short curves keep their markers
  CHECK(loss.chart.log_y == false);                            // 1.5 .. 9.5 spans less than 20x
  const CurveChart& acc = chart_for(charts, "test/acc");
  CHECK(acc.file_stem == "curves_test_acc");
  CHECK(acc.chart.x_label == "epoch");
  REQUIRE(acc.chart.series.size() == 1);  // the diverged run never evaluated
  CHECK(acc.chart.series[0].x == std::vector<double>{1, 2});

  CurveOptions by_step;
  by_step.x = CurveX::Step;
  by_step.metrics = {"test/acc"};
  CHECK(curve_charts(set, by_step).at(0).chart.series[0].x == std::vector<double>{4, 8});

  // On an epoch axis training steps sit at step / steps per epoch; a run that never
  // evaluated cannot be placed and is left out with a note.
  CurveOptions by_epoch;
  by_epoch.x = CurveX::Epoch;
  by_epoch.metrics = {"loss"};
  std::vector<std::string> notes;
  const LineChart e = curve_charts(set, by_epoch, &notes).at(0).chart;
  CHECK(e.x_label == "epoch");
  REQUIRE(e.series.size() == 1);
  CHECK(e.series[0].x == std::vector<double>{0.5, 1, 1.5, 2});
  REQUIRE(notes.size() == 1);
  CHECK_THAT(notes[0], Contains("diverged") && Contains("no evaluation yet"));

  // One run: its name in the title and no legend unless there is something to say.
  const CurveSet one = load_curves(load_run_records({kFixtures + "/runs/lr_small_s0"}));
  const LineChart single = curve_charts(one, {}).at(0).chart;
  CHECK(single.title == "loss \xE2\x80\x94 runs/lr_small_s0");
  CHECK(labels_of(single) == std::vector<std::string>{""});
  const CurveSet div = load_curves(load_run_records({kFixtures + "/diverged"}));
  CHECK(labels_of(curve_charts(div, {}).at(0).chart) == std::vector<std::string>{"(diverged at step 5)"});
}

TEST_CASE("an unknown metric lists the available ones", "[curves]") {
  const CurveSet set = load_curves(load_run_records({kFixtures + "/runs/lr_small_s0"}));
  CurveOptions o;
  o.metrics = {"loss", "test/accuracy"};
  CHECK_THROWS_AS(curve_charts(set, o), ConfigError);
  CHECK_THROWS_WITH(curve_charts(set, o), Contains("test/accuracy") && Contains("did you mean 'test/acc'") &&
                                              Contains("eval_time_s, images_per_s, loss, lr, test/acc, test/loss"));
}

TEST_CASE("smoothing draws the raw loss faintly under a trailing mean", "[curves]") {
  const CurveSet set = load_curves(load_run_records({kFixtures + "/runs/lr_small_s0", kFixtures + "/runs/lr_big_s0"}));
  CurveOptions o;
  o.smooth = 2;
  const std::vector<CurveChart> charts = curve_charts(set, o);
  const LineChart& loss = chart_for(charts, "loss").chart;
  REQUIRE(loss.series.size() == 4);  // two raw, then two smoothed
  CHECK(loss.series[0].label.empty());
  CHECK(loss.series[0].opacity < 1);
  CHECK_FALSE(loss.series[0].markers);
  CHECK(loss.series[0].style == loss.series[2].style);  // raw and smoothed share the colour
  CHECK(loss.series[0].y == std::vector<double>{2.30, 2.00, 1.70, 1.50});
  const std::vector<double> smoothed = loss.series[2].y;
  REQUIRE(smoothed.size() == 4);
  CHECK(smoothed[0] == Approx(2.30));
  CHECK(smoothed[1] == Approx(2.15));
  CHECK(smoothed[3] == Approx(1.60));
  CHECK(loss.title == "loss (trailing mean of 2)");
  // Only losses are smoothed.
  CHECK(chart_for(charts, "lr").chart.series.size() == 2);
  CHECK(chart_for(charts, "test/loss").chart.series.size() == 2);  // evaluations are not smoothed
}

TEST_CASE("mean over seeds: one line per config with a ± std band", "[curves]") {
  const CurveSet set = load_curves(load_run_records({kFixtures + "/runs"}));
  CurveOptions o;
  o.mean_over_seeds = true;
  o.metrics = {"loss", "test/acc"};
  const std::vector<CurveChart> charts = curve_charts(set, o);
  const LineChart& loss = chart_for(charts, "loss").chart;
  CHECK(loss.title == "loss (mean \xC2\xB1 std over seeds)");
  CHECK(labels_of(loss) == std::vector<std::string>{"trainer.lr=0.001 (n=3)", "trainer.lr=0.01 (n=1)"});
  const PlotSeries& small = loss.series[0];
  // Seed 2 is still running (last step 6): the group's line covers the steps all three logged.
  CHECK(small.x == std::vector<double>{2, 4, 6});
  // Step 4: losses 2.00, 1.60, 1.90 -> mean 1.8333, sample std sqrt(0.08667 / 2) = 0.208167.
  const double mean = (2.00 + 1.60 + 1.90) / 3;
  const double sd =
      std::sqrt(((2.00 - mean) * (2.00 - mean) + (1.60 - mean) * (1.60 - mean) + (1.90 - mean) * (1.90 - mean)) / 2);
  CHECK(sd == Approx(0.2081666).epsilon(1e-6));
  CHECK(small.y[1] == Approx(mean));
  CHECK(small.hi[1] - small.y[1] == Approx(sd));
  CHECK(small.y[1] - small.lo[1] == Approx(sd));
  CHECK((small.hi[1] - small.lo[1]) / 2 == Approx(sd));
  // A group of one run has no band.
  CHECK(loss.series[1].lo.empty());
  CHECK(loss.series[1].x == std::vector<double>{2, 4, 6, 8});

  const LineChart& acc = chart_for(charts, "test/acc").chart;
  CHECK(acc.series[0].x == std::vector<double>{1});  // seed 2 evaluated once
  CHECK(acc.series[0].y[0] == Approx((0.40 + 0.45 + 0.42) / 3));
}

TEST_CASE("long runs are streamed and drawn with a few points per pixel column", "[curves]") {
  testing::TempDir dir;
  const fs::path run = dir.path / "long";
  fs::create_directories(run);
  fs::copy_file(kFixtures + "/runs/lr_small_s0/config.yaml", run / "config.yaml");
  {
    std::ofstream out(run / "metrics.jsonl", std::ios::binary);
    for (int step = 1; step <= 50000; ++step) {
      const double loss = step == 12345 ? 50.0 : step == 33333 ? 0.01 : 2.0 - step * 1e-5 + (step % 7) * 0.01;
      out << "{\"step\": " << step << ", \"epoch\": 1, \"loss\": " << loss << ", \"lr\": 0.001}\n";
    }
  }
  const CurveSet set = load_curves(load_run_records({run.string()}));
  REQUIRE(set.runs.size() == 1);
  CHECK(set.runs[0].curves.find("loss")->value.size() == 50000);
  CurveOptions o;
  o.metrics = {"loss"};
  const LineChart c = curve_charts(set, o).at(0).chart;
  REQUIRE(c.series.size() == 1);
  const PlotSeries& s = c.series[0];
  CHECK(s.y.size() <= 4 * static_cast<std::size_t>(c.width));
  CHECK(s.y.size() > static_cast<std::size_t>(c.width));
  CHECK_FALSE(s.markers);
  CHECK(s.x.front() == 1);
  CHECK(s.x.back() == 50000);
  CHECK(std::is_sorted(s.x.begin(), s.x.end()));
  CHECK(*std::max_element(s.y.begin(), s.y.end()) == 50.0);  // the spike survives
  CHECK(*std::min_element(s.y.begin(), s.y.end()) == 0.01);  // and the dip
  CHECK(c.log_y);                                            // 0.01 .. 50 spans more than 20x
}

TEST_CASE("blocklab plot draws one run's curves into its directory", "[curves]") {
  testing::TempDir dir;
  const fs::path run = dir.path / "runs" / "tiny" / "3f2a9c01b7d4";
  fs::create_directories(run.parent_path());
  fs::copy(kFixtures + "/runs/lr_small_s0", run, fs::copy_options::recursive);
  const auto r = plot(run.string() + " --svg");
  INFO(r.err);
  REQUIRE(r.status == 0);
  for (const char* stem :
       {"curves_loss", "curves_lr", "curves_test_acc", "curves_test_loss", "curves_loss_train_val"}) {
    const fs::path png = run / "plots" / (std::string(stem) + ".png");
    REQUIRE(fs::is_regular_file(png));
    CHECK(fs::is_regular_file(run / "plots" / (std::string(stem) + ".svg")));
    CHECK_THAT(r.err, Contains("wrote " + png.string()));
    const Png image(png.string());
    CHECK(image.width == 800);
    CHECK(image.height == 500);
    CHECK(image.non_white > 5000);  // frame, text, grid and the curve
    CHECK(image.blue > 100);        // the curve in the first palette colour
  }
  CHECK_FALSE(fs::exists(run / "plots" / "curves_images_per_s.png"));  // not a default metric
}

TEST_CASE("blocklab plot overlays several runs into --out", "[curves]") {
  testing::TempDir dir;
  const std::string out = (dir.path / "figs").string();
  const auto r =
      plot("fixtures/curves/runs/lr_small_s0 fixtures/curves/runs/lr_big_s0 --out " + out + " --metrics loss,test/acc");
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err == "wrote " + out + "/curves_loss.png\nwrote " + out + "/curves_test_acc.png\n");  // no train+val chart
  for (const char* name : {"curves_loss.png", "curves_test_acc.png"}) {
    const Png image(out + "/" + name);
    CHECK(image.width == 800);
    CHECK(image.height == 500);
    CHECK(image.blue > 100);    // run 1
    CHECK(image.orange > 100);  // run 2
  }
  CHECK_FALSE(fs::exists(out + "/curves_lr.png"));

  // Mean over seeds and smoothing through the CLI; runs without metrics are left out with a note.
  const std::string out2 = (dir.path / "mean").string();
  const auto m = plot("fixtures/curves/runs fixtures/curves/started --mean-over-seeds --smooth 2 --out " + out2);
  INFO(m.err);
  REQUIRE(m.status == 0);
  CHECK_THAT(m.err, Contains("note: skipping fixtures/curves/started: no metrics yet"));
  const Png mean(out2 + "/curves_loss.png");
  CHECK(mean.blue > 100);
  CHECK(mean.orange > 100);
}

TEST_CASE("blocklab plot on a sweep writes into the sweep's plots directory", "[curves]") {
  testing::TempDir dir;
  fs::copy(kFixtures + "/sweep", dir.path / "sweep", fs::copy_options::recursive);
  const auto r = plot((dir.path / "sweep").string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.err, Contains("note: skipping " + (dir.path / "sweep").string() + " job 2c3d4e5f6071: pending"));
  CHECK(fs::is_regular_file(dir.path / "sweep" / "plots" / "curves_loss.png"));
  CHECK(fs::is_regular_file(dir.path / "sweep" / "plots" / "curves_test_acc.png"));

  const CurveSet set = load_curves(load_run_records({(dir.path / "sweep").string()}));
  const LineChart loss = curve_charts(set, {}).at(0).chart;
  CHECK(labels_of(loss) == std::vector<std::string>{"trainer.lr=0.001", "trainer.lr=10.0 (diverged)"});
}

TEST_CASE("blocklab plot errors", "[curves]") {
  testing::TempDir dir;
  const std::string out = " --out " + (dir.path / "o").string();
  const auto metric = plot("fixtures/curves/runs/lr_small_s0 --metrics loss,test/accuracy" + out);
  CHECK(metric.status == 2);
  check_golden("curves_error_unknown_metric", metric.err);

  const auto not_run = plot("fixtures/conf" + out);
  CHECK(not_run.status == 2);
  check_golden("curves_error_not_run_dir", not_run.err);

  const auto corrupt = plot("fixtures/curves/corrupt" + out);
  CHECK(corrupt.status == 2);
  check_golden("curves_error_corrupt", corrupt.err);

  const auto missing = plot("fixtures/curves/no_metrics" + out);
  CHECK(missing.status == 2);
  check_golden("curves_error_missing", missing.err);

  const auto nothing = plot("fixtures/curves/started" + out);
  CHECK(nothing.status == 2);
  check_golden("curves_error_nothing_yet", nothing.err);

  const auto several = plot("fixtures/curves/runs");
  CHECK(several.status == 2);
  CHECK(several.err ==
        "error: blocklab plot: 4 runs are drawn into one set of charts: say where with --out DIR\n"
        "  see: blocklab plot --help\n");
  CHECK(plot("fixtures/curves/runs/lr_small_s0 --x time" + out).status == 2);
  CHECK(plot("fixtures/curves/runs/lr_small_s0 --smooth -1" + out).status == 2);
  CHECK_FALSE(fs::exists(dir.path / "o"));  // nothing written on errors
  CHECK(plot("--help").out.find("Usage: blocklab plot") == 0);
}

TEST_CASE("a metrics.jsonl written by two processes is named with its first line out of order", "[curves][golden]") {
  const std::string path = kFixtures + "/two_writers/metrics.jsonl";
  const std::string problem = metrics_order_problem(path);
  CHECK_THAT(problem, Contains(path + ": line 3 logs step 2 after step 4 (line 2), and 2 more line(s) step back"));
  CHECK(read_metrics_file(path).order_problem == problem);
  // One writer: steps only increase (training and evaluation lines each), no warning.
  CHECK(metrics_order_problem(kFixtures + "/runs/lr_small_s0/metrics.jsonl").empty());
  CHECK(read_metrics_file(kFixtures + "/runs/lr_small_s0/metrics.jsonl").order_problem.empty());
  CHECK(metrics_order_problem(kFixtures + "/no_metrics/metrics.jsonl").empty());  // missing: the readers say so

  // plot and table warn on stderr, naming the file and the line, and still draw/tabulate.
  testing::TempDir dir;
  const auto drawn = plot("fixtures/curves/two_writers --out " + (dir.path / "o").string());
  CHECK(drawn.status == 0);
  check_golden("curves_warning_two_writers", drawn.err.substr(0, drawn.err.find("wrote ")));
  const auto table = testing::blocklab_command("table fixtures/curves/two_writers --rows trainer.lr --metric test/acc");
  CHECK(table.status == 0);
  CHECK_THAT(table.err, Contains("warning: fixtures/curves/two_writers/metrics.jsonl: line 3 logs step 2 after step 4"));
}

TEST_CASE("failed runs are marked in overlay legends and in mean-over-seeds groups", "[curves]") {
  std::vector<RunRecord> records =
      load_run_records({kFixtures + "/runs/lr_small_s0", kFixtures + "/runs/lr_small_s1", kFixtures + "/runs/lr_big_s0"});
  records[1].status = "failed";
  const CurveSet set = load_curves(records);
  CurveOptions loss;
  loss.metrics = {"loss"};
  const std::vector<std::string> labels = labels_of(curve_charts(set, loss).at(0).chart);
  CHECK(std::count_if(labels.begin(), labels.end(), [](const std::string& l) { return l.find("(failed)") != std::string::npos; }) == 1);
  loss.mean_over_seeds = true;
  CHECK_THAT(labels_of(curve_charts(set, loss).at(0).chart).at(0), Contains("n=2, 1 failed"));
}

TEST_CASE("train and evaluation loss on one chart: a line against step and markers at the evaluations", "[curves]") {
  const CurveSet one = load_curves(load_run_records({kFixtures + "/runs/lr_small_s0"}));
  const std::vector<CurveChart> charts = curve_charts(one, {});
  const CurveChart& both = chart_for(charts, "loss_train_val");
  CHECK(both.file_stem == "curves_loss_train_val");
  const LineChart& c = both.chart;
  CHECK(c.title == "loss: train and test/loss \xE2\x80\x94 runs/lr_small_s0");
  CHECK(c.x_label == "step");
  CHECK(c.y_label == "loss");
  REQUIRE(c.series.size() == 2);
  const PlotSeries& train = c.series[0];
  const PlotSeries& test = c.series[1];
  CHECK(labels_of(c) == std::vector<std::string>{"train loss", "test/loss"});
  CHECK(train.x == std::vector<double>{2, 4, 6, 8});  // training lines
  CHECK(train.y == std::vector<double>{2.30, 2.00, 1.70, 1.50});
  CHECK(test.x == std::vector<double>{4, 8});  // evaluation lines, at their step
  CHECK(test.y == std::vector<double>{1.95, 1.60});
  // Distinct styles: the training curve a plain line, the evaluation markers on a dashed line,
  // and (one line of each) distinct colours.
  CHECK_FALSE(train.markers);
  CHECK(train.dash == 0);
  CHECK(test.markers);
  CHECK(test.line);
  CHECK(test.dash == 1);
  CHECK(train.style != test.style);

  // --x epoch: both against epoch.
  CurveOptions by_epoch;
  by_epoch.x = CurveX::Epoch;
  const LineChart e = chart_for(curve_charts(one, by_epoch), "loss_train_val").chart;
  CHECK(e.x_label == "epoch");
  CHECK(e.series[0].x == std::vector<double>{0.5, 1, 1.5, 2});
  CHECK(e.series[1].x == std::vector<double>{1, 2});

  // Several runs: a colour per run, its training and evaluation curves next to each other.
  const CurveSet two = load_curves(load_run_records({kFixtures + "/runs/lr_small_s0", kFixtures + "/runs/lr_big_s0"}));
  const std::vector<CurveChart> overlay_charts = curve_charts(two, {});
  const LineChart& overlay = chart_for(overlay_charts, "loss_train_val").chart;
  CHECK(labels_of(overlay) == std::vector<std::string>{"train loss: trainer.lr=0.001", "test/loss: trainer.lr=0.001",
                                                       "train loss: trainer.lr=0.01", "test/loss: trainer.lr=0.01"});
  CHECK(overlay.series[0].style == overlay.series[1].style);
  CHECK(overlay.series[2].style == overlay.series[3].style);
  CHECK(overlay.series[0].style != overlay.series[2].style);
  CHECK(overlay.series[3].y == std::vector<double>{1.1, 0.8});
  CHECK(overlay.series[3].dash == 1);

  // Mean over seeds: one train and one test/loss line per group.
  CurveOptions mean;
  mean.mean_over_seeds = true;
  const std::vector<CurveChart> grouped_charts =
      curve_charts(load_curves(load_run_records({kFixtures + "/runs"})), mean);
  const LineChart& grouped = chart_for(grouped_charts, "loss_train_val").chart;
  CHECK(labels_of(grouped) ==
        std::vector<std::string>{"train loss: trainer.lr=0.001 (n=3)", "test/loss: trainer.lr=0.001 (n=3)",
                                 "train loss: trainer.lr=0.01 (n=1)", "test/loss: trainer.lr=0.01 (n=1)"});
}

TEST_CASE("the train+val chart: by default without --metrics, --together asks for it or leaves it out", "[curves]") {
  const CurveSet set = load_curves(load_run_records({kFixtures + "/runs/lr_small_s0"}));
  auto stems = [&](const CurveOptions& o) {
    std::vector<std::string> out;
    for (const CurveChart& c : curve_charts(set, o)) out.push_back(c.file_stem);
    return out;
  };
  CurveOptions chosen;
  chosen.metrics = {"test/acc"};
  CHECK(stems(chosen) == std::vector<std::string>{"curves_test_acc"});
  chosen.together = std::vector<std::string>{"loss"};
  CHECK(stems(chosen) == std::vector<std::string>{"curves_test_acc", "curves_loss_train_val"});
  CurveOptions off;
  off.together = std::vector<std::string>{};
  CHECK(stems(off) == std::vector<std::string>{"curves_loss", "curves_lr", "curves_test_acc", "curves_test_loss"});

  CurveOptions bad;
  bad.together = std::vector<std::string>{"los"};
  CHECK_THROWS_WITH(curve_charts(set, bad), Contains("no run logged the training metric 'los' (--together)") &&
                                                Contains("did you mean 'loss'"));
  bad.together = std::vector<std::string>{"lr"};
  CHECK_THROWS_WITH(curve_charts(set, bad), Contains("no run logged an evaluation of 'lr' (--together)"));
  // A run without evaluations: nothing to pair, so no chart by default.
  const CurveSet diverged = load_curves(load_run_records({kFixtures + "/diverged"}));
  for (const CurveChart& c : curve_charts(diverged, {})) CHECK(c.file_stem != "curves_loss_train_val");

  // Through the CLI.
  testing::TempDir dir;
  const std::string out = (dir.path / "o").string();
  const auto none = plot("fixtures/curves/runs/lr_small_s0 --together none --out " + out);
  CHECK(none.status == 0);
  CHECK_FALSE(fs::exists(out + "/curves_loss_train_val.png"));
  const auto asked = plot("fixtures/curves/runs/lr_small_s0 --metrics lr --together loss --out " + out);
  INFO(asked.err);
  CHECK(asked.status == 0);
  CHECK(asked.err == "wrote " + out + "/curves_lr.png\nwrote " + out + "/curves_loss_train_val.png\n");
  const Png image(out + "/curves_loss_train_val.png");
  CHECK(image.blue > 50);    // the training line
  CHECK(image.orange > 50);  // the evaluation markers
  CHECK(plot("fixtures/curves/runs/lr_small_s0 --together lr --out " + out).status == 2);
}

}  // namespace BLOCKLAB_TEST_FILE
