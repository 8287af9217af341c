// Line charts with uncertainty bands, rendered with cairo to PNG and SVG.
//
// Used by `blocklab table` (a sweep's metric against the swept value, one line per row
// group, a ± std band) and by the training-curve plots. Colours come from a fixed
// colour-blind-safe palette in series order, so the same sweep always draws the same picture.
#pragma once

#include <string>
#include <vector>

namespace blocklab {

struct PlotSeries {
  std::string label;            // legend entry ("" = no legend entry)
  std::vector<double> x, y;     // equal lengths; NaN in y = a gap (missing cell)
  std::vector<double> lo, hi;   // optional band (same length as y, or both empty)
  // How the series is drawn; the defaults draw what charts always drew.
  int style = -1;               // palette slot (colour, then dashes past the palette); -1 = its index
  bool markers = true;          // a round marker at each point (off for long training curves)
  double opacity = 1.0;         // of the line and markers, in (0, 1] (e.g. a faint raw curve)
  double line_scale = 1.0;      // line width relative to the default, > 0
  bool line = true;             // joined by a line (false: a scatter of markers, e.g. a Pareto plot)
};

struct LineChart {
  std::string title, x_label, y_label;
  // Non-empty: a categorical x axis; series x values are indices into it (0, 1, ...).
  std::vector<std::string> x_categories;
  bool log_x = false;           // numeric x on a log10 scale (all x > 0)
  bool integer_x = false;       // numeric x ticks only at whole numbers (steps, epochs)
  bool log_y = false;           // y on a log10 scale (all finite y > 0; band bounds <= 0 run off the bottom)
  std::vector<PlotSeries> series;
  int width = 800, height = 500;  // pixels (PNG) / points (SVG)
};

// Writes the chart to `png_path` and `svg_path` (either may be "" to skip). Creates parent
// directories. Throws std::runtime_error naming the file when it cannot be written, and
// std::invalid_argument for inconsistent input (length mismatch, log_x with x <= 0, log_y with
// y <= 0, an opacity outside (0, 1] or a line_scale <= 0).
void render_line_chart(const LineChart& chart, const std::string& png_path, const std::string& svg_path);

}  // namespace blocklab
