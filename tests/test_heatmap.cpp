// Tests of the viridis heatmaps and the .npy files: the colour map against matplotlib's
// table, rendered PNGs read back with cairo (every cell's pixels are the colour-map colour of
// its value, NaN cells grey, overlays blended with the image, annotations readable), input
// errors, unwritable paths, SVG output, determinism; .npy bytes checked against the format
// and, when the project venv has numpy, loaded with numpy.load.
//
// With BLOCKLAB_HEATMAP_EXAMPLE_DIR set, the "example" test leaves figures there to look at
// (heatmap_example_overlay.png/.svg, heatmap_example_layers.png, heatmap_example_tokens.png,
// heatmap_example_big.png, heatmap_example_own.png).
#include <catch2/catch.hpp>

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "analysis/heatmap.h"
#include "analysis/npy.h"
#include "process_support.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using blocklab::testing::slurp;
using blocklab::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// A PNG decoded with cairo into 0xRRGGBB pixels.
struct Image {
  int width = 0, height = 0;
  std::vector<std::uint32_t> pixels;  // row-major
  explicit Image(const std::string& path) {
    cairo_surface_t* png = cairo_image_surface_create_from_png(path.c_str());
    const cairo_status_t status = cairo_surface_status(png);
    if (status == CAIRO_STATUS_SUCCESS) {
      cairo_surface_flush(png);
      width = cairo_image_surface_get_width(png), height = cairo_image_surface_get_height(png);
      const int stride = cairo_image_surface_get_stride(png);
      const unsigned char* data = cairo_image_surface_get_data(png);
      for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
          pixels.push_back(reinterpret_cast<const std::uint32_t*>(data + y * stride)[x] & 0xFFFFFF);
    }
    cairo_surface_destroy(png);
    INFO(path);
    REQUIRE(status == CAIRO_STATUS_SUCCESS);
  }
  std::uint32_t pixel(int x, int y) const {
    if (x < 0 || y < 0 || x >= width || y >= height)
      FAIL("pixel (" << x << ", " << y << ") outside the " << width << "x" << height << " image");
    return pixels[static_cast<std::size_t>(y) * width + x];
  }
};

std::uint32_t hex(Rgb c) { return static_cast<std::uint32_t>(c.r) << 16 | c.g << 8 | c.b; }

std::string hex_text(std::uint32_t c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%06x", c);
  return buf;
}

// The pixel at the centre of a cell.
std::uint32_t centre_pixel(const Image& img, const HeatmapFigure& f, int panel, int row, int col) {
  const PixelRect r = heatmap_cell_rect(f, panel, row, col);
  return img.pixel(static_cast<int>(std::floor(r.x + r.w / 2)), static_cast<int>(std::floor(r.y + r.h / 2)));
}

// Every pixel of a cell (an inset of one pixel against antialiased edges) equals `want`.
bool cell_is(const Image& img, const HeatmapFigure& f, int panel, int row, int col, std::uint32_t want) {
  const PixelRect r = heatmap_cell_rect(f, panel, row, col);
  for (int y = static_cast<int>(std::ceil(r.y)) + 1; y < static_cast<int>(std::floor(r.y + r.h)) - 1; ++y)
    for (int x = static_cast<int>(std::ceil(r.x)) + 1; x < static_cast<int>(std::floor(r.x + r.w)) - 1; ++x)
      if (img.pixel(x, y) != want) return false;
  return true;
}

Heatmap matrix(int rows, int cols, std::vector<double> values, const std::string& title = "") {
  Heatmap h;
  h.rows = rows, h.cols = cols, h.values = std::move(values), h.title = title;
  return h;
}

// Two 3x4 panels with values 0..11 and 12..23 (one NaN) on one scale [0, 23].
HeatmapFigure two_panels() {
  HeatmapFigure f;
  f.title = "Two panels";
  f.colorbar_label = "value";
  std::vector<double> a(12), b(12);
  for (int i = 0; i < 12; ++i) a[i] = i, b[i] = 12 + i;
  b[5] = kNaN;  // row 1, column 1
  f.panels.push_back(matrix(3, 4, a, "first"));
  f.panels.push_back(matrix(3, 4, b, "second"));
  return f;
}

std::uint32_t channel(std::uint32_t c, int shift) { return (c >> shift) & 0xff; }

}  // namespace

TEST_CASE("viridis matches matplotlib's table", "[maps]") {
  CHECK(hex(viridis(0.0)) == 0x440154);
  CHECK(hex(viridis(0.5)) == 0x21918c);
  CHECK(hex(viridis(1.0)) == 0xfde725);
  // Values from matplotlib 3.6: matplotlib.colors.to_hex(matplotlib.colormaps["viridis"](t)).
  CHECK(hex(viridis(0.1)) == 0x482475);
  CHECK(hex(viridis(0.25)) == 0x3b528b);
  CHECK(hex(viridis(1.0 / 3)) == 0x31688e);
  CHECK(hex(viridis(0.75)) == 0x5ec962);
  CHECK(hex(viridis(0.9)) == 0xbddf26);
  // Clamped outside [0, 1].
  CHECK(viridis(-3) == viridis(0));
  CHECK(viridis(7) == viridis(1));
  CHECK(viridis(kNaN) == viridis(0));
  // Dark to light: the green channel rises through the map.
  for (int i = 1; i < 256; ++i) CHECK(viridis(i / 255.0).g >= viridis((i - 1) / 255.0).g);
}

TEST_CASE("a heatmap cell's PNG pixels are the colour-map colour of its value", "[maps]") {
  TempDir dir;
  const std::string png = (dir.path / "sub" / "maps.png").string();
  const HeatmapFigure f = two_panels();
  render_heatmaps(f, png);
  REQUIRE(fs::exists(png));
  CHECK_FALSE(fs::exists(dir.path / "sub" / "maps.svg"));  // only when asked
  const Image img(png);
  const double vmin = 0, vmax = 23;
  for (int p = 0; p < 2; ++p)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) {
        const double v = f.panels[p].values[r * 4 + c];
        if (std::isnan(v)) continue;
        const std::uint32_t want = hex(viridis((v - vmin) / (vmax - vmin)));
        INFO("panel " << p << " cell (" << r << ", " << c << ") value " << v << ": want " << hex_text(want));
        CHECK(hex_text(centre_pixel(img, f, p, r, c)) == hex_text(want));
        CHECK(cell_is(img, f, p, r, c, want));
      }
  // Square cells of whole pixels; the NaN cell light grey.
  const PixelRect r = heatmap_cell_rect(f, 0, 0, 0);
  CHECK(r.w == r.h);
  CHECK(r.w == std::floor(r.w));
  CHECK(hex_text(centre_pixel(img, f, 1, 1, 1)) == "#dddddd");
  // The panels sit side by side (2 panels: one row of two).
  CHECK(heatmap_cell_rect(f, 1, 0, 0).x > heatmap_cell_rect(f, 0, 0, 3).x + r.w);
  CHECK(heatmap_cell_rect(f, 1, 0, 0).y == r.y);
  // The colorbar: the top of the bar is viridis(1), the bottom viridis(0), right of the panels.
  const PixelRect last = heatmap_cell_rect(f, 1, 2, 3);
  bool top = false, bottom = false;
  for (int x = static_cast<int>(last.x + last.w) + 1; x < img.width; ++x) {
    top = top || img.pixel(x, static_cast<int>(r.y)) == hex(viridis(1.0));
    bottom = bottom || img.pixel(x, static_cast<int>(last.y + last.h) - 1) == hex(viridis(0.0));
  }
  CHECK(top);
  CHECK(bottom);
}

TEST_CASE("heatmap panels with their own scales and explicit vmin/vmax", "[maps]") {
  TempDir dir;
  const char* env = std::getenv("BLOCKLAB_HEATMAP_EXAMPLE_DIR");
  const std::string png = ((env ? fs::path(env) : dir.path) / "heatmap_example_own.png").string();
  HeatmapFigure f;
  f.shared_scale = false;
  f.columns = 1;  // stacked
  f.panels.push_back(matrix(2, 2, {0, 1, 2, 4}, "data range"));
  f.panels.push_back(matrix(2, 2, {-5, 0.25, 0.5, 9}, "vmin 0, vmax 1"));
  f.panels[1].vmin = 0, f.panels[1].vmax = 1;
  f.panels.push_back(matrix(1, 3, {7, 7, kNaN}, "flat"));
  render_heatmaps(f, png);
  const Image img(png);
  CHECK(centre_pixel(img, f, 0, 0, 0) == hex(viridis(0.0)));
  CHECK(centre_pixel(img, f, 0, 0, 1) == hex(viridis(0.25)));
  CHECK(centre_pixel(img, f, 0, 1, 1) == hex(viridis(1.0)));
  CHECK(centre_pixel(img, f, 1, 0, 0) == hex(viridis(0.0)));  // below vmin: clamped
  CHECK(centre_pixel(img, f, 1, 0, 1) == hex(viridis(0.25)));
  CHECK(centre_pixel(img, f, 1, 1, 0) == hex(viridis(0.5)));
  CHECK(centre_pixel(img, f, 1, 1, 1) == hex(viridis(1.0)));  // above vmax: clamped
  // vmin == vmax: every finite cell gets the middle of the map.
  CHECK(centre_pixel(img, f, 2, 0, 0) == hex(viridis(0.5)));
  CHECK(centre_pixel(img, f, 2, 0, 1) == hex(viridis(0.5)));
  CHECK(centre_pixel(img, f, 2, 0, 2) == 0xdddddd);
  // Stacked: one column.
  CHECK(heatmap_cell_rect(f, 1, 0, 0).y > heatmap_cell_rect(f, 0, 1, 0).y);
  CHECK(heatmap_cell_rect(f, 1, 0, 0).x == heatmap_cell_rect(f, 0, 0, 0).x);
}

TEST_CASE("a heatmap over an image is blended with it", "[maps]") {
  TempDir dir;
  const std::string png = (dir.path / "overlay.png").string();
  HeatmapFigure f;
  f.panel_size = 200;
  Heatmap h;
  h.rows = h.cols = 7;
  for (int i = 0; i < 49; ++i) h.values.push_back(i);
  // A 28x28 image, constant on each 4x4 block (one block per cell): grey (r + c) / 12.
  h.image_h = h.image_w = 28;
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) h.image.push_back((y / 4 + x / 4) / 12.0);
  h.alpha = 0.6;
  f.panels = {h};
  render_heatmaps(f, png);
  const Image img(png);
  int blended = 0;
  for (int r = 0; r < 7; ++r)
    for (int c = 0; c < 7; ++c) {
      const std::uint32_t map = hex(viridis((r * 7 + c) / 48.0));
      const double grey = std::round((r + c) / 12.0 * 255);
      const std::uint32_t got = centre_pixel(img, f, 0, r, c);
      INFO("cell (" << r << ", " << c << "): " << hex_text(got) << " over map " << hex_text(map));
      for (int shift : {16, 8, 0}) {
        const double want = 0.6 * channel(map, shift) + 0.4 * grey;
        CHECK(std::abs(channel(got, shift) - want) <= 2);
      }
      blended += got != map;
    }
  CHECK(blended >= 45);  // not the plain colour map
  // The cells follow the image's grid: 200 / 28 -> 7 pixels per image pixel, 28 per cell.
  CHECK(heatmap_cell_rect(f, 0, 0, 0).w == 28);
}

TEST_CASE("annotated heatmaps write readable numbers, labels and an SVG", "[maps]") {
  TempDir dir;
  const std::string png = (dir.path / "annot.png").string(), svg = (dir.path / "annot.svg").string();
  HeatmapFigure f;
  f.title = "Entropy per head";
  f.colorbar_label = "nats";
  Heatmap h;
  h.rows = h.cols = 4;
  for (int i = 0; i < 16; ++i) h.values.push_back(0.1 * i);
  h.annotate = true;
  h.row_labels = {"layer 0", "layer 1", "layer 2", "layer 3"};
  h.col_labels = {"0", "1", "2", "3"};
  h.x_label = "head", h.y_label = "layer";
  f.panels = {h};
  render_heatmaps(f, png, svg);
  const Image img(png);
  // White text on the dark first cell, black text on the light last one; the rest of the
  // cell keeps its colour.
  auto count = [&](int r, int c, auto&& match) {
    const PixelRect rect = heatmap_cell_rect(f, 0, r, c);
    int n = 0;
    for (int y = static_cast<int>(rect.y); y < static_cast<int>(rect.y + rect.h); ++y)
      for (int x = static_cast<int>(rect.x); x < static_cast<int>(rect.x + rect.w); ++x) n += match(img.pixel(x, y));
    return n;
  };
  auto whitish = [](std::uint32_t p) { return channel(p, 16) > 0xb0 && channel(p, 8) > 0xb0 && channel(p, 0) > 0xb0; };
  auto blackish = [](std::uint32_t p) { return channel(p, 16) < 0x30 && channel(p, 8) < 0x30 && channel(p, 0) < 0x30; };
  auto is = [](std::uint32_t want) { return [want](std::uint32_t p) { return p == want; }; };
  const PixelRect cell = heatmap_cell_rect(f, 0, 0, 0);
  CHECK(count(0, 0, whitish) > 5);
  CHECK(count(0, 0, blackish) == 0);
  CHECK(count(0, 0, is(hex(viridis(0.0)))) > 0.6 * cell.w * cell.h);
  CHECK(count(3, 3, blackish) > 5);
  CHECK(count(3, 3, whitish) == 0);
  CHECK(count(3, 3, is(hex(viridis(1.0)))) > 0.6 * cell.w * cell.h);
  // Row labels left of the axes: dark pixels there.
  const PixelRect first = heatmap_cell_rect(f, 0, 0, 0);
  int dark = 0;
  for (int x = 0; x < static_cast<int>(first.x) - 3; ++x)
    for (int y = static_cast<int>(first.y); y < static_cast<int>(first.y + first.h); ++y)
      dark += channel(img.pixel(x, y), 8) < 0x80;
  CHECK(dark > 20);
  const std::string text = slurp(svg);
  CHECK(text.rfind("<?xml", 0) == 0);
  CHECK(text.find("<svg") != std::string::npos);
  CHECK(text.find("<image") != std::string::npos);
  CHECK(text.find("image-rendering:pixelated") != std::string::npos);  // sharp cells in viewers too

  // Determinism: the same figure gives the same bytes (the SVG's object ids included).
  const std::string png2 = (dir.path / "again.png").string(), svg2 = (dir.path / "again.svg").string();
  render_heatmaps(f, png2, svg2);
  CHECK(slurp(png) == slurp(png2));
  CHECK(slurp(svg) == slurp(svg2));
}

TEST_CASE("heatmaps with many labels, large matrices and no colorbar render", "[maps]") {
  TempDir dir;
  HeatmapFigure f;
  f.colorbar = false;
  f.panel_size = 160;
  for (int p = 0; p < 5; ++p) {
    Heatmap h;
    h.rows = h.cols = 300;  // more cells than pixels
    for (int i = 0; i < 300 * 300; ++i) h.values.push_back(std::sin(i * 0.001 * (p + 1)));
    for (int i = 0; i < 300; ++i) h.row_labels.push_back("token " + std::to_string(i));
    for (int i = 0; i < 300; ++i) h.col_labels.push_back("token " + std::to_string(i));
    h.title = "head " + std::to_string(p) + " with a title far too long for its panel";
    f.panels.push_back(std::move(h));
  }
  const char* env = std::getenv("BLOCKLAB_HEATMAP_EXAMPLE_DIR");
  const std::string png = ((env ? fs::path(env) : dir.path) / "heatmap_example_big.png").string();
  render_heatmaps(f, png);
  const Image img(png);
  const PixelRect r = heatmap_cell_rect(f, 4, 299, 299);
  CHECK(r.w < 1);
  CHECK(r.x + r.w <= img.width);
  CHECK(r.y + r.h <= img.height);
  // 5 panels, about square: 3 columns, 2 rows.
  CHECK(heatmap_cell_rect(f, 3, 0, 0).x == heatmap_cell_rect(f, 0, 0, 0).x);
  CHECK(heatmap_cell_rect(f, 3, 0, 0).y > heatmap_cell_rect(f, 2, 0, 0).y);
}

TEST_CASE("heatmap input errors and unwritable paths", "[maps]") {
  TempDir dir;
  const std::string png = (dir.path / "bad.png").string();
  auto throws_invalid = [&](HeatmapFigure f) {
    CHECK_THROWS_AS(render_heatmaps(f, png), std::invalid_argument);
    CHECK_THROWS_AS(heatmap_cell_rect(f, 0, 0, 0), std::invalid_argument);
  };
  HeatmapFigure good = two_panels();
  {
    HeatmapFigure f = good;
    f.panels[1].values.pop_back();
    CHECK_THROWS_WITH(render_heatmaps(f, png), Catch::Contains("11 values for a 3x4 matrix"));
    throws_invalid(f);
  }
  {
    HeatmapFigure f = good;
    f.panels[0].rows = 0;
    throws_invalid(f);
  }
  {
    HeatmapFigure f = good;
    f.panels[0].image_h = f.panels[0].image_w = 4;
    f.panels[0].image.assign(15, 0.5);
    CHECK_THROWS_WITH(render_heatmaps(f, png), Catch::Contains("15 image values for a 4x4 image"));
    throws_invalid(f);
  }
  {
    HeatmapFigure f = good;
    f.panels[0].row_labels = {"a", "b"};
    throws_invalid(f);
  }
  {
    HeatmapFigure f = good;
    f.panels[0].alpha = 1.5;
    throws_invalid(f);
  }
  {
    HeatmapFigure f = good;
    f.panels[0].vmin = 2, f.panels[0].vmax = 1;
    throws_invalid(f);
  }
  {
    HeatmapFigure f = good;
    f.panel_size = 0;
    throws_invalid(f);
  }
  {
    HeatmapFigure f;
    throws_invalid(f);
  }
  CHECK_FALSE(fs::exists(png));
  CHECK_THROWS_AS(heatmap_cell_rect(good, 2, 0, 0), std::out_of_range);
  CHECK_THROWS_AS(heatmap_cell_rect(good, 0, 3, 0), std::out_of_range);

  // A path below a regular file cannot be created.
  const fs::path file = dir.path / "plain.txt";
  std::ofstream(file) << "x";
  const std::string blocked = (file / "maps.png").string();
  CHECK_THROWS_AS(render_heatmaps(good, blocked), std::runtime_error);
  CHECK_THROWS_WITH(render_heatmaps(good, blocked), Catch::Contains(blocked));
  const std::string blocked_svg = (file / "maps.svg").string();
  CHECK_THROWS_WITH(render_heatmaps(good, (dir.path / "ok.png").string(), blocked_svg), Catch::Contains(blocked_svg));
  // No temporary files are left behind.
  for (const auto& e : fs::directory_iterator(dir.path))
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
}

TEST_CASE("example heatmap figures", "[maps]") {
  const char* env = std::getenv("BLOCKLAB_HEATMAP_EXAMPLE_DIR");
  TempDir tmp;
  const fs::path out = env ? fs::path(env) : tmp.path;
  // A synthetic 28x28 "digit" (a ring) under four 7x7 attention maps from the CLS token.
  std::vector<double> image;
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) {
      const double d = std::hypot(y - 13.5, x - 13.5);
      image.push_back(std::clamp(1.0 - std::abs(d - 8) / 3.0, 0.0, 1.0));
    }
  HeatmapFigure overlay;
  overlay.title = "Layer 3: CLS attention per head";
  overlay.colorbar_label = "attention";
  for (int head = 0; head < 4; ++head) {
    Heatmap h;
    h.rows = h.cols = 7;
    h.title = "head " + std::to_string(head);
    double sum = 0;
    for (int y = 0; y < 7; ++y)
      for (int x = 0; x < 7; ++x) {
        const double cy = 1.5 + 4 * (head / 2), cx = 1.5 + 4 * (head % 2);
        const double v = std::exp(-((y - cy) * (y - cy) + (x - cx) * (x - cx)) / (2.0 + head));
        h.values.push_back(v);
        sum += v;
      }
    for (double& v : h.values) v /= sum;
    h.image = image, h.image_h = h.image_w = 28;
    overlay.panels.push_back(std::move(h));
  }
  render_heatmaps(overlay, (out / "heatmap_example_overlay.png").string(),
                  (out / "heatmap_example_overlay.svg").string());

  HeatmapFigure layers;
  layers.title = "Attention entropy";
  layers.colorbar_label = "entropy (nats)";
  Heatmap m;
  m.rows = m.cols = 4;
  for (int l = 0; l < 4; ++l) {
    m.row_labels.push_back(std::to_string(l));
    m.col_labels.push_back(std::to_string(l));
    for (int h = 0; h < 4; ++h) m.values.push_back(3.9 - 0.7 * l + 0.15 * h * (l % 2 ? 1 : -1));
  }
  m.values[5] = kNaN;
  m.annotate = true;
  m.x_label = "head", m.y_label = "layer";
  layers.panels = {m};
  render_heatmaps(layers, (out / "heatmap_example_layers.png").string());

  HeatmapFigure tokens;
  tokens.title = "Token x token attention (own scales)";
  tokens.shared_scale = false;
  tokens.columns = 2;
  for (int head = 0; head < 2; ++head) {
    Heatmap h;
    h.rows = h.cols = 17;
    for (int i = 0; i < 17; ++i) {
      const std::string name = i == 0 ? "[CLS]" : "p" + std::to_string(i - 1);
      h.row_labels.push_back(name), h.col_labels.push_back(name);
      for (int j = 0; j < 17; ++j) h.values.push_back(std::exp(-std::abs(i - j) / (1.0 + 3 * head)) * (head + 1));
    }
    h.title = "head " + std::to_string(head);
    h.x_label = "key", h.y_label = "query";
    tokens.panels.push_back(std::move(h));
  }
  render_heatmaps(tokens, (out / "heatmap_example_tokens.png").string());
  for (const char* name : {"heatmap_example_overlay.png", "heatmap_example_layers.png", "heatmap_example_tokens.png"})
    CHECK(fs::file_size(out / name) > 1000);
}

// ---------------------------------------------------------------------------------------
// .npy

namespace {

std::uint16_t le16(const std::string& b, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(b[at]) | static_cast<unsigned char>(b[at + 1]) << 8);
}

// Checks the format 1.0 preamble and returns the header text.
std::string npy_header(const std::string& bytes) {
  REQUIRE(bytes.size() >= 10);
  CHECK(bytes.substr(0, 6) == "\x93NUMPY");
  CHECK(bytes[6] == 1);
  CHECK(bytes[7] == 0);
  const std::size_t len = le16(bytes, 8);
  CHECK((10 + len) % 64 == 0);
  REQUIRE(bytes.size() >= 10 + len);
  const std::string header = bytes.substr(10, len);
  CHECK(header.back() == '\n');
  return header;
}

}  // namespace

TEST_CASE("npy files: float32 and int64 bytes, read back, numpy.load", "[maps]") {
  TempDir dir;
  const std::string f32 = (dir.path / "deep" / "probs.npy").string(), i64 = (dir.path / "ids.npy").string();
  std::vector<float> values(24);
  for (int i = 0; i < 24; ++i) values[i] = 0.5f * i - 3.0f;
  write_npy(f32, {2, 3, 4}, values.data());
  const std::vector<std::int64_t> ids = {-1, 0, 7, std::int64_t{1} << 40, -(std::int64_t{1} << 62)};
  write_npy(i64, {5}, ids.data());

  const std::string a = slurp(f32);
  const std::string ha = npy_header(a);
  CHECK(ha.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }", 0) == 0);
  CHECK(ha.find_first_not_of(' ', ha.find('}') + 1) == ha.size() - 1);  // spaces, then '\n'
  REQUIRE(a.size() == 10 + ha.size() + 24 * 4);
  for (int i = 0; i < 24; ++i) {
    float v;
    std::memcpy(&v, a.data() + 10 + ha.size() + 4 * i, 4);
    CHECK(v == values[i]);
  }
  // 0.5 * 1 - 3 = -2.5f = 0xC0200000, little-endian.
  CHECK(a.substr(10 + ha.size() + 4, 4) == std::string("\x00\x00\x20\xC0", 4));

  const std::string b = slurp(i64);
  const std::string hb = npy_header(b);
  CHECK(hb.rfind("{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }", 0) == 0);
  REQUIRE(b.size() == 10 + hb.size() + 5 * 8);
  CHECK(b.substr(10 + hb.size(), 8) == std::string(8, '\xff'));  // -1
  CHECK(b.substr(10 + hb.size() + 16, 8) == std::string("\x07\0\0\0\0\0\0\0", 8));
  CHECK(b.substr(10 + hb.size() + 24, 8) == std::string("\0\0\0\0\0\x01\0\0", 8));

  std::vector<std::int64_t> shape;
  CHECK(read_npy_f32(f32, shape) == values);
  CHECK(shape == std::vector<std::int64_t>{2, 3, 4});
  CHECK_THROWS_AS(read_npy_f32(i64, shape), std::runtime_error);
  CHECK_THROWS_WITH(read_npy_f32(i64, shape), Catch::Contains("'<i8'"));
  CHECK_THROWS_AS(read_npy_f32((dir.path / "missing.npy").string(), shape), std::runtime_error);
  // A scalar and an empty array round-trip too.
  const float one = 1.5f;
  write_npy((dir.path / "scalar.npy").string(), {}, &one);
  CHECK(read_npy_f32((dir.path / "scalar.npy").string(), shape) == std::vector<float>{1.5f});
  CHECK(shape.empty());
  write_npy((dir.path / "empty.npy").string(), {0, 3}, static_cast<const float*>(nullptr));
  CHECK(read_npy_f32((dir.path / "empty.npy").string(), shape).empty());
  CHECK(shape == std::vector<std::int64_t>{0, 3});
  // Unwritable: a path below a regular file.
  CHECK_THROWS_WITH(write_npy((fs::path(f32) / "x.npy").string(), {1}, &one), Catch::Contains("x.npy"));

  const fs::path python = fs::path(BLOCKLAB_TEST_DIR) / ".." / ".venv" / "bin" / "python";
  if (!fs::exists(python)) {
    WARN("no project venv python at " << python.string() << ": numpy.load check skipped");
    return;
  }
  const std::string script = dir.path / "check.py";
  std::ofstream(script) << "import sys\n"
                           "import numpy as np\n"
                           "a = np.load(sys.argv[1])\n"
                           "assert a.dtype == np.float32 and a.shape == (2, 3, 4), (a.dtype, a.shape)\n"
                           "assert (a.ravel() == np.arange(24, dtype=np.float32) * 0.5 - 3).all(), a\n"
                           "b = np.load(sys.argv[2])\n"
                           "assert b.dtype == np.int64 and b.shape == (5,), (b.dtype, b.shape)\n"
                           "assert b.tolist() == [-1, 0, 7, 1 << 40, -(1 << 62)], b\n"
                           "c = np.load(sys.argv[3])\n"
                           "assert c.shape == () and c == 1.5, c\n"
                           "print('numpy ok')\n";
  const std::string cmd = "'" + python.string() + "' '" + script + "' '" + f32 + "' '" + i64 + "' '" +
                          (dir.path / "scalar.npy").string() + "' 2>&1";
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe)) output += buf;
  const int status = ::pclose(pipe);
  if (output.find("No module named 'numpy'") != std::string::npos) {
    WARN("numpy is not installed in the project venv: numpy.load check skipped");
    return;
  }
  INFO(output);
  CHECK(status == 0);
  CHECK(output.find("numpy ok") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
