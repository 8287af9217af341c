// Heatmaps with the viridis colour map, rendered with cairo (PNG always, SVG on request).
//
// Used by `blocklab attn`: grids of per-head maps (attention overlaid on the input image, the
// DINO view), token x token matrices, layers x heads summaries. Values map linearly from
// [vmin, vmax] to viridis; NaN cells are drawn light grey.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace blocklab {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
};

// matplotlib's viridis at t in [0, 1] (clamped, NaN as 0): entry floor(t * 256) of the 256-entry
// table, as matplotlib's colormap picks it.
Rgb viridis(double t);

struct Heatmap {
  int rows = 0, cols = 0;
  std::vector<double> values;  // rows * cols, row-major
  std::string title;           // above the panel ("" = none)
  // Axis tick labels (optional; empty = none). Long label lists are thinned to fit.
  std::vector<std::string> row_labels, col_labels;
  std::string x_label, y_label;
  // NaN: from the finite values. vmin == vmax: the range is widened around the value, so
  // every finite cell gets the middle colour, viridis(0.5). Values outside are clamped.
  double vmin = NAN, vmax = NAN;
  bool annotate = false;          // print each value in its cell (small matrices)
  bool colorbar = true;           // its own colorbar when the figure's scales are not shared
  // Optional grey-scale background (image_h x image_w, values in [0,1]) under the map,
  // which is then stretched over the image and drawn with `alpha` (the DINO-style overlay).
  std::vector<double> image;
  int image_h = 0, image_w = 0;
  double alpha = 0.6;
};

struct HeatmapFigure {
  std::string title;             // figure title ("" = none)
  std::vector<Heatmap> panels;   // drawn left to right, top to bottom
  int columns = 0;               // panels per row (0: about square)
  // One vmin/vmax for every panel (the lowest vmin / highest vmax set on any panel, else the
  // range of all finite values) and one colorbar; false: each panel its own, with its own bar.
  bool shared_scale = true;
  bool colorbar = true;
  std::string colorbar_label;
  int panel_size = 220;          // pixels per panel side (cells are square when they fit)
};

// Writes the figure to `png_path` and, when `svg_path` is not "", to an SVG too. Creates
// parent directories; writes atomically. Throws std::invalid_argument for inconsistent input
// (values size != rows * cols, image size mismatch) and std::runtime_error naming a file that
// cannot be written.
void render_heatmaps(const HeatmapFigure& figure, const std::string& png_path, const std::string& svg_path = "");

// The pixel rectangle of cell (row, col) of panel `panel` in the PNG that render_heatmaps
// writes for `figure` (x, y, width, height), so tests can check decoded pixel colours.
struct PixelRect {
  double x = 0, y = 0, w = 0, h = 0;
};
PixelRect heatmap_cell_rect(const HeatmapFigure& figure, int panel, int row, int col);

}  // namespace blocklab
