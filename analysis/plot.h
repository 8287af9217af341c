// Line charts with uncertainty bands and dot charts of categories, rendered with cairo to PNG
// and SVG.
//
// Used by `blocklab table` (a sweep's metric against a numeric swept value as a line chart,
// one line per row group with a ± std band; against categories such as mixers as a dot
// chart) and by the training-curve plots. Colours come from a fixed colour-blind-safe
// palette in series order, so the same sweep always draws the same picture.
#pragma once

#include <string>
#include <vector>

namespace blocklab {

struct PlotSeries {
  std::string label;           // legend entry ("" = no legend entry)
  std::vector<double> x, y;    // equal lengths; NaN in y = a gap (missing cell)
  std::vector<double> lo, hi;  // optional band (same length as y, or both empty)
  // How the series is drawn; the defaults draw what charts always drew.
  int style = -1;           // palette slot (colour, then dashes past the palette); -1 = its index
  bool markers = true;      // a round marker at each point (off for long training curves)
  double opacity = 1.0;     // of the line and markers, in (0, 1] (e.g. a faint raw curve)
  double line_scale = 1.0;  // line width relative to the default, > 0
  bool line = true;         // joined by a line (false: a scatter of markers, e.g. a Pareto plot)
  int dash = -1;            // 0 solid, 1 dashed, 2 dotted; -1 = from the palette slot (solid for the first 10)
};

struct LineChart {
  std::string title, x_label, y_label;
  // Non-empty: a categorical x axis; series x values are indices into it (0, 1, ...).
  std::vector<std::string> x_categories;
  bool log_x = false;      // numeric x on a log10 scale (all x > 0)
  bool integer_x = false;  // numeric x ticks only at whole numbers (steps, epochs)
  bool log_y = false;      // y on a log10 scale (all finite y > 0; band bounds <= 0 run off the bottom)
  std::vector<PlotSeries> series;
  int width = 800, height = 500;  // pixels (PNG) / points (SVG)
};

// Writes the chart to `png_path` and `svg_path` (either may be "" to skip). Creates parent
// directories. Throws std::runtime_error naming the file when it cannot be written, and
// std::invalid_argument for inconsistent input (length mismatch, log_x with x <= 0, log_y with
// y <= 0, an opacity outside (0, 1] or a line_scale <= 0).
void render_line_chart(const LineChart& chart, const std::string& png_path, const std::string& svg_path);

// One marker series of a dot chart: a value per category with its error bar.
struct DotSeries {
  std::string label;           // legend entry ("" = no legend entry)
  std::vector<double> value;   // one per category; NaN = no value there (nothing drawn)
  std::vector<double> lo, hi;  // error bar ends per category (both empty: no bars; NaN: none there)
};

// A Cleveland dot chart: one row per category (labels on the left, where long names such as
// `attention/softmax` read horizontally), the value along the x axis, a marker per series
// with a horizontal error bar, series side by side within a row. Rows are sorted best first
// (dot_chart_order). The baseline category's label is bold and a dashed vertical reference
// line runs through its value (one per series, in the series' colour).
struct DotChart {
  std::string title, value_label, category_label;
  std::vector<std::string> categories;
  std::vector<DotSeries> series;
  int baseline = -1;             // index into categories of the marked baseline; -1 = none
  bool lower_is_better = false;  // best first: ascending values if true, else descending
  int width = 800;
  int height = 0;  // pixels / points; 0 = from the number of categories
};

// The category indices from top to bottom: by the mean over the series of each category's
// finite values, best first (see lower_is_better); categories without any value last; equal
// means keep their order.
std::vector<std::size_t> dot_chart_order(const DotChart& chart);

// The height render_dot_chart uses: `height`, or from the number of categories and series.
int dot_chart_height(const DotChart& chart);

// Like render_line_chart. Throws std::invalid_argument for inconsistent input (a series
// whose values or bars do not have one entry per category, a baseline out of range).
void render_dot_chart(const DotChart& chart, const std::string& png_path, const std::string& svg_path);

}  // namespace blocklab
