// Tests of the cairo line charts: files written (atomically, with parent directories), the
// PNG read back and checked for the palette colours, the translucent bands, NaN gaps, the
// flat-data range, categorical and log axes, input errors, unwritable paths, determinism.
// Dot charts: their row order (best first), height, horizontal error bars and input errors.
//
// With BLOCKLAB_PLOT_EXAMPLE_DIR set, the "example" test also leaves a few charts there to
// look at (example_sweep.png/.svg, example_categorical.png, example_log.png,
// example_dots.png/.svg).
#include <catch2/catch.hpp>

#include <cairo.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/plot.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("blocklab_plot_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Rgb {
  int r, g, b;
};

// The first colours of the palette (seaborn "colorblind") and the band of the first one:
// 20% of the colour over white.
constexpr Rgb kBlue{0x01, 0x73, 0xB2}, kOrange{0xDE, 0x8F, 0x05};
Rgb blended(Rgb c, double alpha) {
  auto mix = [&](int v) { return static_cast<int>(std::lround(v * alpha + 255 * (1 - alpha))); };
  return {mix(c.r), mix(c.g), mix(c.b)};
}

// A PNG read back with cairo.
struct Image {
  cairo_surface_t* surface = nullptr;
  int width = 0, height = 0;
  explicit Image(const std::string& path) {
    surface = cairo_image_surface_create_from_png(path.c_str());
    REQUIRE(cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS);
    cairo_surface_flush(surface);
    width = cairo_image_surface_get_width(surface);
    height = cairo_image_surface_get_height(surface);
  }
  ~Image() { cairo_surface_destroy(surface); }
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;

  Rgb at(int x, int y) const {
    const unsigned char* data = cairo_image_surface_get_data(surface);
    const int stride = cairo_image_surface_get_stride(surface);
    const std::uint32_t p = *reinterpret_cast<const std::uint32_t*>(data + y * stride + x * 4);
    return {static_cast<int>((p >> 16) & 0xff), static_cast<int>((p >> 8) & 0xff), static_cast<int>(p & 0xff)};
  }
  static bool near(Rgb a, Rgb b, int tol) {
    return std::abs(a.r - b.r) <= tol && std::abs(a.g - b.g) <= tol && std::abs(a.b - b.b) <= tol;
  }
  int count(Rgb c, int tol = 2) const {
    int n = 0;
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) n += near(at(x, y), c, tol);
    return n;
  }
  int non_white() const {
    int n = 0;
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) n += !near(at(x, y), {255, 255, 255}, 8);
    return n;
  }
  // Columns, left to right, where colour `c` appears.
  std::vector<int> columns_of(Rgb c, int tol = 2) const {
    std::vector<int> columns;
    for (int x = 0; x < width; ++x)
      for (int y = 0; y < height; ++y)
        if (near(at(x, y), c, tol)) {
          columns.push_back(x);
          break;
        }
    return columns;
  }
  // Rows (min, max) where colour `c` appears; (-1, -1) if nowhere.
  std::pair<int, int> rows_of(Rgb c, int tol = 2) const {
    int lo = -1, hi = -1;
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x)
        if (near(at(x, y), c, tol)) {
          if (lo < 0) lo = y;
          hi = y;
        }
    return {lo, hi};
  }
};

// Two series with ± bands; the first has a missing cell (NaN) in the middle.
LineChart sweep_chart(double missing = kNaN) {
  LineChart c;
  c.title = "Test accuracy vs. learning rate";
  c.x_label = "epochs";
  c.y_label = "test/acc";
  PlotSeries a{"attention/softmax", {1, 2, 3, 4, 5, 6}, {0.52, 0.61, missing, 0.70, 0.74, 0.78}, {}, {}};
  PlotSeries b{"attention/gmm", {1, 2, 3, 4, 5, 6}, {0.30, 0.36, 0.41, 0.43, 0.47, 0.50}, {}, {}};
  for (double y : a.y) a.lo.push_back(y - 0.05), a.hi.push_back(y + 0.05);
  for (double y : b.y) b.lo.push_back(y - 0.03), b.hi.push_back(y + 0.03);
  c.series = {a, b};
  return c;
}

// The bounding box of the pixels where blue dominates: the first palette colour, also where
// antialiasing or translucency blends it with white (greys and the other colours do not count).
struct BlueBox {
  int x0 = -1, y0 = -1, x1 = -1, y1 = -1;
};
BlueBox dots_blue_box(const Image& img) {
  BlueBox b;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const Rgb p = img.at(x, y);
      if (p.b - p.r <= 60 || p.b - p.g <= 20) continue;
      if (b.x0 < 0 || x < b.x0) b.x0 = x;
      if (b.y0 < 0) b.y0 = y;
      b.x1 = std::max(b.x1, x);
      b.y1 = y;
    }
  return b;
}

// Six mixers, one series of mean ± std, the first one the baseline; one without a value.
DotChart mixer_dots() {
  DotChart c;
  c.title = "test/acc (mean ± std over seeds)";
  c.value_label = "test/acc";
  c.category_label = "model.mixer.type";
  c.categories = {"attention/softmax", "attention/gmm", "attention/linear-elu",
                  "mixers/pool",       "ssm/s4d",       "mixers/metamixer-fft"};
  DotSeries s;
  s.value = {0.884, 0.891, 0.862, 0.871, kNaN, 0.879};
  for (double v : s.value) s.lo.push_back(v - 0.005), s.hi.push_back(v + 0.005);
  c.series = {s};
  c.baseline = 0;
  return c;
}

}  // namespace

TEST_CASE("a line chart with bands is written as PNG and SVG", "[plot]") {
  TempDir dir;
  const std::string png = dir.file("chart.png"), svg = dir.file("chart.svg");
  render_line_chart(sweep_chart(), png, svg);
  REQUIRE(fs::is_regular_file(png));
  REQUIRE(fs::is_regular_file(svg));

  Image img(png);
  CHECK(img.width == 800);
  CHECK(img.height == 500);
  CHECK(img.non_white() > 800 * 500 / 50);  // axes, text, lines, bands: not blank
  CHECK(img.count(kBlue) > 150);             // the first series' line and markers
  CHECK(img.count(kOrange) > 150);           // the second series'
  CHECK(img.count(blended(kBlue, 0.2)) > 1000);  // its translucent band over white
  CHECK(img.count(blended(kOrange, 0.2)) > 1000);

  const std::string text = read_bytes(svg);
  CHECK(text.rfind("<?xml", 0) == 0);
  CHECK(text.find("<svg") != std::string::npos);
  CHECK(text.find("</svg>") != std::string::npos);
}

TEST_CASE("a NaN value leaves a gap in the line and the band", "[plot]") {
  TempDir dir;
  render_line_chart(sweep_chart(0.66), dir.file("full.png"), "");
  render_line_chart(sweep_chart(kNaN), dir.file("gap.png"), "");
  Image full(dir.file("full.png")), gap(dir.file("gap.png"));
  // 0.66 lies inside the data range, so both charts have the same axes: the gap only
  // removes one marker, the two line segments around it and that stretch of band.
  CHECK(gap.count(kBlue) < full.count(kBlue) - 60);
  CHECK(gap.count(blended(kBlue, 0.2)) < full.count(blended(kBlue, 0.2)) - 500);
  CHECK(gap.count(kOrange) == Approx(full.count(kOrange)).margin(40));
}

TEST_CASE("a single point draws a marker and an error bar", "[plot]") {
  TempDir dir;
  LineChart c;
  c.series = {{"only", {3}, {1.0}, {0.8}, {1.2}}};
  render_line_chart(c, dir.file("one.png"), "");
  Image img(dir.file("one.png"));
  const auto [top, bottom] = img.rows_of(kBlue);
  REQUIRE(top >= 0);
  // The bar spans lo..hi, which is ~90% of the axes height; a marker alone is ~8 px.
  CHECK(bottom - top > 250);
}

TEST_CASE("flat data gets a non-empty range with the line in the middle", "[plot]") {
  TempDir dir;
  LineChart c;
  c.series = {{"", {0, 1, 2, 3}, {0.5, 0.5, 0.5, 0.5}, {}, {}}};  // no legend swatch
  render_line_chart(c, dir.file("flat.png"), "");
  Image img(dir.file("flat.png"));
  const auto [top, bottom] = img.rows_of(kBlue);
  REQUIRE(top >= 0);
  CHECK(top > img.height * 0.3);
  CHECK(bottom < img.height * 0.7);
}

TEST_CASE("categorical and log-x charts render", "[plot]") {
  TempDir dir;
  SECTION("categorical, with long labels") {
    LineChart c;
    c.title = "Mixers";
    c.y_label = "acc";
    c.x_categories = {"attention/softmax", "attention/gmm", "attention/linear-elu", "mixers/pool", "ssm/s4d",
                      "mixers/metamixer-fft"};
    c.series = {{"seed mean", {0, 1, 2, 3, 4, 5}, {0.8, 0.82, 0.79, 0.75, kNaN, 0.81},
                 {0.78, 0.8, 0.77, 0.72, kNaN, 0.8}, {0.82, 0.84, 0.81, 0.78, kNaN, 0.82}}};
    const std::string png = dir.file("cat/chart.png"), svg = dir.file("cat/chart.svg");
    render_line_chart(c, png, svg);
    Image img(png);
    CHECK(img.width == 800);
    CHECK(img.height == 500);
    CHECK(img.non_white() > 800 * 500 / 100);
    CHECK(img.count(kBlue) > 50);
    CHECK(fs::file_size(svg) > 1000);
  }
  SECTION("log x over five decades, other size") {
    LineChart c;
    c.title = "lr sweep";
    c.x_label = "learning rate";
    c.log_x = true;
    c.width = 640;
    c.height = 400;
    c.series = {{"a", {1e-5, 1e-4, 1e-3, 1e-2, 1e-1}, {0.2, 0.6, 0.8, 0.7, 0.1}, {}, {}},
                {"b", {3e-5, 3e-4, 3e-3, 3e-2}, {0.3, 0.5, 0.75, 0.4}, {0.25, 0.45, 0.7, 0.3}, {0.35, 0.55, 0.8, 0.5}}};
    render_line_chart(c, dir.file("log.png"), "");
    Image img(dir.file("log.png"));
    CHECK(img.width == 640);
    CHECK(img.height == 400);
    CHECK(img.count(kBlue) > 50);
    CHECK(img.count(kOrange) > 50);
  }
  SECTION("log x within one decade") {
    LineChart c;
    c.log_x = true;
    c.series = {{"", {2, 3, 5, 8}, {1, 2, 3, 4}, {}, {}}};
    render_line_chart(c, dir.file("narrow.png"), "");
    CHECK(Image(dir.file("narrow.png")).count(kBlue) > 50);
  }
  SECTION("many series cycle the palette") {
    LineChart c;
    for (int i = 0; i < 12; ++i)
      c.series.push_back({"series " + std::to_string(i), {0, 1, 2}, {1.0 * i, i + 0.5, i + 0.2}, {}, {}});
    render_line_chart(c, dir.file("many.png"), "");
    Image img(dir.file("many.png"));
    CHECK(img.count(kBlue) > 50);
    CHECK(img.count(kOrange) > 50);
    CHECK(img.count({0x56, 0xB4, 0xE9}) > 50);  // the tenth colour
  }
  SECTION("no series at all") {
    render_line_chart(LineChart{}, dir.file("empty.png"), "");
    CHECK(Image(dir.file("empty.png")).non_white() > 500);  // still a frame with ticks
  }
}

TEST_CASE("categorical points are not joined: markers with error bars, series side by side", "[plot]") {
  TempDir dir;
  LineChart c;
  c.x_categories = {"softmax", "mamba", "hyena"};
  c.series = {{"", {0, 1, 2}, {0.5, 0.5, 0.5}, {0.4, 0.4, 0.4}, {0.6, 0.6, 0.6}},  // no legend swatches
              {"", {0, 1, 2}, {0.5, 0.5, 0.5}, {0.45, 0.45, 0.45}, {0.55, 0.55, 0.55}}};
  render_line_chart(c, dir.file("cat.png"), "");
  Image img(dir.file("cat.png"));
  CHECK(img.count(blended(kBlue, 0.2), 1) == 0);  // no translucent band
  // Columns holding the first series' colour: three narrow groups (bar and marker per
  // category), none in the gaps between categories, where a joining line would run.
  const std::vector<int> blue_columns = img.columns_of(kBlue);
  REQUIRE(!blue_columns.empty());
  int groups = 1;
  for (std::size_t i = 1; i < blue_columns.size(); ++i) groups += blue_columns[i] - blue_columns[i - 1] > 20;
  CHECK(groups == 3);
  CHECK(blue_columns.size() < 3 * 30);
  // The bar spans lo..hi (0.4..0.6, most of the axes' height).
  const auto [top, bottom] = img.rows_of(kBlue);
  CHECK(bottom - top > 200);
  // The two series sit side by side in each category: their columns differ.
  const std::vector<int> orange_columns = img.columns_of(kOrange);
  REQUIRE(!orange_columns.empty());
  CHECK(orange_columns.front() > blue_columns.front() + 5);
}

TEST_CASE("legend entries follow the labels", "[plot]") {
  TempDir dir;
  LineChart labelled = sweep_chart(), unlabelled = sweep_chart();
  for (PlotSeries& s : unlabelled.series) s.label = "";
  LineChart one_label = unlabelled;
  one_label.series[1].label = "attention/gmm";
  render_line_chart(labelled, dir.file("labelled.png"), "");
  render_line_chart(unlabelled, dir.file("unlabelled.png"), "");
  render_line_chart(one_label, dir.file("one.png"), "");
  Image a(dir.file("labelled.png")), b(dir.file("unlabelled.png")), c(dir.file("one.png"));
  // A legend adds text and swatches (or takes room on the right): more ink.
  CHECK(a.non_white() > b.non_white() + 200);
  CHECK(c.non_white() > b.non_white() + 100);
  CHECK(a.non_white() > c.non_white() + 100);
}

TEST_CASE("inconsistent input is rejected before anything is written", "[plot]") {
  TempDir dir;
  const std::string png = dir.file("bad.png");
  LineChart c;
  SECTION("x and y lengths differ") { c.series = {{"a", {1, 2, 3}, {1, 2}, {}, {}}}; }
  SECTION("band shorter than y") { c.series = {{"a", {1, 2}, {1, 2}, {0}, {3}}}; }
  SECTION("only one side of the band") { c.series = {{"a", {1, 2}, {1, 2}, {0, 1}, {}}}; }
  SECTION("log x with zero") {
    c.log_x = true;
    c.series = {{"a", {0, 1}, {1, 2}, {}, {}}};
  }
  SECTION("log x with a negative value") {
    c.log_x = true;
    c.series = {{"a", {1, -1}, {1, 2}, {}, {}}};
  }
  SECTION("category index out of range") {
    c.x_categories = {"a", "b"};
    c.series = {{"a", {0, 2}, {1, 2}, {}, {}}};
  }
  SECTION("category index not an integer") {
    c.x_categories = {"a", "b"};
    c.series = {{"a", {0, 0.5}, {1, 2}, {}, {}}};
  }
  SECTION("non-finite x") { c.series = {{"a", {0, kNaN}, {1, 2}, {}, {}}}; }
  SECTION("zero size") { c.width = 0; }
  CHECK_THROWS_AS(render_line_chart(c, png, dir.file("bad.svg")), std::invalid_argument);
  CHECK_FALSE(fs::exists(png));
  CHECK_FALSE(fs::exists(dir.file("bad.svg")));
}

TEST_CASE("an unwritable path is an error naming the file", "[plot]") {
  const std::string under_proc = "/proc/blocklab_plot_test/chart.png";
  CHECK_THROWS_AS(render_line_chart(sweep_chart(), under_proc, ""), std::runtime_error);
  CHECK_THROWS_WITH(render_line_chart(sweep_chart(), under_proc, ""), Catch::Contains("cannot write " + under_proc));
  const std::string svg = "/proc/blocklab_plot_test.svg";
  CHECK_THROWS_WITH(render_line_chart(sweep_chart(), "", svg), Catch::Contains(svg));

  TempDir dir;  // a parent "directory" that is a regular file
  { std::ofstream(dir.file("file")) << "x"; }
  const std::string below_file = dir.file("file/chart.png");
  CHECK_THROWS_WITH(render_line_chart(sweep_chart(), below_file, ""), Catch::Contains(below_file));
}

TEST_CASE("charts are written atomically into created directories", "[plot]") {
  TempDir dir;
  const std::string png = dir.file("a/b/c/chart.png"), svg = dir.file("a/b/c/chart.svg");
  render_line_chart(sweep_chart(), png, svg);
  LineChart other = sweep_chart();
  other.title = "replaced";
  render_line_chart(other, png, svg);  // overwrites in place
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.file("a/b/c"))) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"chart.png", "chart.svg"});  // no temporary files left
  CHECK(Image(png).width == 800);
}

TEST_CASE("the same chart gives identical files", "[plot]") {
  TempDir dir;
  render_line_chart(sweep_chart(), dir.file("1.png"), dir.file("1.svg"));
  render_line_chart(sweep_chart(), dir.file("2.png"), dir.file("2.svg"));
  const std::string a = read_bytes(dir.file("1.png")), b = read_bytes(dir.file("2.png"));
  REQUIRE(a.size() > 1000);
  CHECK(a == b);
  CHECK(read_bytes(dir.file("1.svg")) == read_bytes(dir.file("2.svg")));
}

TEST_CASE("example charts for a person to look at", "[plot]") {
  const char* out = std::getenv("BLOCKLAB_PLOT_EXAMPLE_DIR");
  if (!out) return;
  const fs::path dir(out);
  render_line_chart(sweep_chart(), (dir / "example_sweep.png").string(), (dir / "example_sweep.svg").string());

  LineChart cat;
  cat.title = "ViT on Fashion-MNIST: test accuracy by mixer (3 seeds)";
  cat.x_label = "model.mixer";
  cat.y_label = "test/acc";
  cat.x_categories = {"attention/softmax", "attention/gmm", "attention/linear-elu", "mixers/pool", "ssm/s4d",
                      "mixers/metamixer-fft"};
  cat.series = {{"depth 4", {0, 1, 2, 3, 4, 5}, {0.884, 0.891, 0.862, 0.871, kNaN, 0.879},
                 {0.879, 0.887, 0.851, 0.866, kNaN, 0.874}, {0.889, 0.895, 0.873, 0.876, kNaN, 0.884}},
                {"depth 8", {0, 1, 2, 3, 4, 5}, {0.893, 0.899, 0.868, 0.874, 0.866, 0.887},
                 {0.889, 0.896, 0.86, 0.87, 0.861, 0.883}, {0.897, 0.902, 0.876, 0.878, 0.871, 0.891}}};
  render_line_chart(cat, (dir / "example_categorical.png").string(), "");

  LineChart lr;
  lr.title = "Learning-rate sweep";
  lr.x_label = "trainer.lr";
  lr.y_label = "val/loss";
  lr.log_x = true;
  const std::vector<double> xs = {1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2};
  const std::vector<std::vector<double>> ys = {{2.1, 1.6, 1.1, 0.72, 0.55, 0.61, 1.4}, {2.3, 1.9, 1.3, 0.8, 0.58, 0.57, 0.9},
                                               {2.2, 1.7, 1.2, 0.75, 0.6, kNaN, 2.2}};
  const char* names[] = {"AdamW", "Lion", "SGD + momentum"};
  for (int i = 0; i < 3; ++i) {
    PlotSeries s{names[i], xs, ys[i], {}, {}};
    for (double y : s.y) s.lo.push_back(y * 0.92), s.hi.push_back(y * 1.08);
    lr.series.push_back(s);
  }
  render_line_chart(lr, (dir / "example_log.png").string(), (dir / "example_log.svg").string());
}

TEST_CASE("dot charts order their rows best first; categories without a value go last", "[plot]") {
  DotChart c;
  c.categories = {"a", "b", "c", "d", "e"};
  c.series = {{"", {0.8, 0.9, kNaN, 0.85, 0.9}, {}, {}}};
  // Higher is better (also when the direction is unknown): descending; b and e tie and keep
  // their order; c has no value.
  CHECK(dot_chart_order(c) == std::vector<std::size_t>{1, 4, 3, 0, 2});
  c.lower_is_better = true;
  CHECK(dot_chart_order(c) == std::vector<std::size_t>{0, 3, 1, 4, 2});

  // Several series: by the mean of each category's finite values.
  DotChart two;
  two.categories = {"x", "y", "z"};
  two.series = {{"d=1", {0.80, 0.90, kNaN}, {}, {}}, {"d=2", {0.95, kNaN, kNaN}, {}, {}}};
  CHECK(dot_chart_order(two) == std::vector<std::size_t>{1, 0, 2});  // y 0.90, x 0.875, z none

  CHECK(dot_chart_order(DotChart{}).empty());
  CHECK(dot_chart_order(mixer_dots()) == std::vector<std::size_t>{1, 0, 5, 3, 2, 4});
}

TEST_CASE("a dot chart is written as PNG and SVG, its height from the number of rows", "[plot]") {
  TempDir dir;
  const DotChart c = mixer_dots();
  const int height = dot_chart_height(c);
  CHECK(height >= 300);
  CHECK(height < 800);
  DotChart many = c;
  for (int i = 0; i < 40; ++i) many.categories.push_back("mixer " + std::to_string(i));
  for (DotSeries& s : many.series) {
    s.value.resize(many.categories.size(), 0.5);
    s.lo.resize(many.categories.size(), 0.45);
    s.hi.resize(many.categories.size(), 0.55);
  }
  CHECK(dot_chart_height(many) > height + 40 * 15);  // every row keeps room for its label
  DotChart fixed = c;
  fixed.height = 640;
  CHECK(dot_chart_height(fixed) == 640);

  const std::string png = dir.file("dots/chart.png"), svg = dir.file("dots/chart.svg");
  render_dot_chart(c, png, svg);
  Image img(png);
  CHECK(img.width == 800);
  CHECK(img.height == height);
  CHECK(img.non_white() > 800 * height / 100);
  CHECK(img.count(kBlue) > 50);  // markers and bars
  CHECK(fs::file_size(svg) > 1000);
  render_dot_chart(many, dir.file("many.png"), "");
  CHECK(Image(dir.file("many.png")).height == dot_chart_height(many));
}

TEST_CASE("dot chart error bars are horizontal and span lo..hi; series sit side by side", "[plot]") {
  TempDir dir;
  DotChart c;
  c.categories = {"attention/softmax"};
  c.series = {{"", {0.5}, {0.1}, {0.9}}};  // no baseline, no legend: only the bar is blue
  render_dot_chart(c, dir.file("bar.png"), "");
  Image img(dir.file("bar.png"));
  const BlueBox box = dots_blue_box(img);
  REQUIRE(box.x0 >= 0);
  // lo..hi is (0.9 − 0.1) / (0.9 − 0.1 + 2 · 5% margins) of the axes' width, most of the image.
  CHECK(box.x1 - box.x0 > img.width * 0.6);
  CHECK(box.y1 - box.y0 < 20);  // a marker's height and the caps, not a vertical bar

  DotChart two = c;
  two.series.push_back({"", {0.5}, {0.4}, {0.6}});
  render_dot_chart(two, dir.file("two.png"), "");
  Image both(dir.file("two.png"));
  CHECK(both.rows_of(kOrange).first > both.rows_of(kBlue).first + 3);  // the second series below the first
}

TEST_CASE("inconsistent dot charts are rejected before anything is written", "[plot]") {
  TempDir dir;
  DotChart c = mixer_dots();
  SECTION("a value missing") { c.series[0].value.pop_back(); }
  SECTION("bars of the wrong length") { c.series[0].hi.pop_back(); }
  SECTION("baseline out of range") { c.baseline = 6; }
  SECTION("baseline below -1") { c.baseline = -2; }
  SECTION("zero width") { c.width = 0; }
  CHECK_THROWS_AS(render_dot_chart(c, dir.file("bad.png"), dir.file("bad.svg")), std::invalid_argument);
  CHECK_FALSE(fs::exists(dir.file("bad.png")));
  CHECK_FALSE(fs::exists(dir.file("bad.svg")));
}

TEST_CASE("example dot charts for a person to look at", "[plot]") {
  const char* out = std::getenv("BLOCKLAB_PLOT_EXAMPLE_DIR");
  if (!out) return;
  const fs::path dir(out);
  render_dot_chart(mixer_dots(), (dir / "example_dots.png").string(), (dir / "example_dots.svg").string());
  DotChart cols = mixer_dots();
  cols.series[0].label = "dataset=fashion_mnist";
  DotSeries other{"dataset=cifar10", {0.61, 0.64, 0.55, 0.58, 0.6, kNaN}, {}, {}};
  for (double v : other.value) other.lo.push_back(v - 0.01), other.hi.push_back(v + 0.01);
  cols.series.push_back(other);
  render_dot_chart(cols, (dir / "example_dots_columns.png").string(), "");
}

}  // namespace BLOCKLAB_TEST_FILE
