// Line charts with uncertainty bands and dot charts of categories, drawn with cairo (see
// plot.h).
//
// One drawing function renders both outputs: an RGB image surface for the PNG and an SVG
// surface (units: points). Both are rendered into memory and then written to a hidden
// temporary file next to the destination, which is renamed into place, so a killed process
// never leaves a half-written chart under the real name (cairo_util.h, shared with the
// heatmaps).
//
// The look follows a plain matplotlib/seaborn figure: white background, a dark frame with
// outward ticks, light grid lines at the major ticks, 1-2-5 tick steps (decades with minor
// ticks on log axes), 5% padding around the data, a colour-blind-safe palette (seaborn's
// "colorblind", derived from Okabe-Ito), lines with white-edged round markers and a 20%
// translucent band, and a legend in the first free corner of the axes (upper right first)
// or outside on the right when every corner would cover data. On a categorical x axis the
// points are not joined (the categories have no order to interpolate along): each point is a
// marker with a ± error bar, the series side by side within a category (seaborn's dodged
// pointplot without lines).
//
// A dot chart turns that on its side (a Cleveland dot plot, seaborn's horizontal pointplot
// without lines): one row per category with its label on the left, so long names read
// horizontally and rows can be sorted by value; the value axis, ticks, grid, frame, titles
// and legend are the line chart's own helpers.
#include "analysis/plot.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "analysis/cairo_util.h"

namespace blocklab {
namespace {

using namespace cairo_util;  // text, tick numbers, output (shared with heatmap.cpp)

// ---------------------------------------------------------------------------------------
// Style

struct Colour {
  double r, g, b;
};

constexpr Colour rgb(unsigned hex) {
  return {((hex >> 16) & 0xff) / 255.0, ((hex >> 8) & 0xff) / 255.0, (hex & 0xff) / 255.0};
}

// seaborn "colorblind" (Okabe-Ito based), in series order.
constexpr Colour kPalette[] = {rgb(0x0173B2), rgb(0xDE8F05), rgb(0x029E73), rgb(0xD55E00), rgb(0xCC78BC),
                               rgb(0xCA9161), rgb(0xFBAFE4), rgb(0x949494), rgb(0xECE133), rgb(0x56B4E9)};
constexpr int kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

constexpr Colour kText = rgb(0x222222);
constexpr Colour kFrame = rgb(0x333333);
constexpr Colour kGrid = rgb(0xE3E3E3);
constexpr Colour kLegendEdge = rgb(0xCCCCCC);
constexpr double kBandAlpha = 0.2;

// Sizes in pixels for an 800x500 chart; everything scales with the chart.
struct Style {
  double s;  // scale factor
  double title_pt, label_pt, tick_pt, legend_pt;
  double pad, tick_len, minor_len, tick_gap;
  double line_w, marker_r, marker_edge, frame_w, grid_w;

  Style(int width, int height) {
    const double raw = std::min(width / 800.0, height / 500.0);
    s = std::clamp(raw, 0.6, 4.0);
    const double fs = std::clamp(raw, 0.75, 4.0);  // text stays readable on small charts
    title_pt = 17 * fs;
    label_pt = 14 * fs;
    tick_pt = 12 * fs;
    legend_pt = 12 * fs;
    pad = 10 * fs;
    tick_len = 4.5 * s;
    minor_len = 2.5 * s;
    tick_gap = 3.5 * fs;
    line_w = 2 * s;
    marker_r = 4 * s;
    marker_edge = 1 * s;
    frame_w = std::max(1.0, std::round(1 * s));
    grid_w = std::max(1.0, std::round(1 * s));
  }
};

void set_rgb(cairo_t* cr, Colour c, double alpha = 1.0) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

// ---------------------------------------------------------------------------------------
// Numbers and ticks

// A tick label; `sup` non-empty draws `text` followed by a superscript (10 with exponent).
struct Tick {
  double v;
  std::string text, sup;
};

std::vector<Tick> linear_ticks(double lo, double hi, double step) {
  std::vector<Tick> ticks;
  const double k0 = std::ceil(lo / step - 1e-9), k1 = std::floor(hi / step + 1e-9);
  for (double k = k0; k <= k1 && ticks.size() < 1000; k += 1) {
    const double v = k * step;
    ticks.push_back({v, format_tick(v, step), ""});
  }
  return ticks;
}

struct Axis {
  double lo = 0, hi = 1;  // data limits (log10 space of nothing: real values)
  bool log = false;
  bool categorical = false;
  bool integer = false;  // ticks only at whole numbers
  std::vector<Tick> major;
  std::vector<double> minor;
  double t(double v) const { return log ? std::log10(v) : v; }
};

// Decade ticks for a log axis with at most `max_labels` labels; within less than two
// decades it falls back to 1-2-5 (then 1..9) multiples.
void log_ticks(Axis& a, int max_labels) {
  a.major.clear();
  a.minor.clear();
  const double llo = std::log10(a.lo), lhi = std::log10(a.hi);
  const int d0 = static_cast<int>(std::ceil(llo - 1e-9)), d1 = static_cast<int>(std::floor(lhi + 1e-9));
  const int decades = d1 - d0 + 1;
  const int first = static_cast<int>(std::floor(llo)) - 1, last = static_cast<int>(std::ceil(lhi)) + 1;
  auto inside = [&](double v) { return v >= a.lo * (1 - 1e-9) && v <= a.hi * (1 + 1e-9); };
  if (decades >= 2) {
    const int stride = std::max(1, (decades + max_labels - 1) / std::max(1, max_labels));
    for (int d = first; d <= last; ++d) {
      const double v = std::pow(10.0, d);
      const bool labelled = ((d % stride) + stride) % stride == 0;
      if (inside(v)) {
        if (labelled)
          a.major.push_back({v, "10", with_minus(std::to_string(d))});
        else
          a.minor.push_back(v);
      }
      if (stride == 1)
        for (int m = 2; m <= 9; ++m)
          if (inside(m * v)) a.minor.push_back(m * v);
    }
    return;
  }
  for (const std::vector<int>& mults : {std::vector<int>{1, 2, 5}, std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9}}) {
    a.major.clear();
    a.minor.clear();
    for (int d = first; d <= last; ++d)
      for (int m = 1; m <= 9; ++m) {
        const double v = m * std::pow(10.0, d);
        if (!inside(v)) continue;
        if (std::find(mults.begin(), mults.end(), m) != mults.end())
          a.major.push_back({v, format_tick(v, std::pow(10.0, d)), ""});
        else
          a.minor.push_back(v);
      }
    if (a.major.size() >= 2) return;
  }
}

// ---------------------------------------------------------------------------------------
// Input

[[noreturn]] void bad_input(std::size_t i, const std::string& label, const std::string& what) {
  std::string name = "series " + std::to_string(i);
  if (!label.empty()) name += " ('" + label + "')";
  throw std::invalid_argument("plot: " + name + ": " + what);
}

[[noreturn]] void bad_input(std::size_t i, const PlotSeries& s, const std::string& what) {
  bad_input(i, s.label, what);
}

void validate_size(int width, int height) {
  if (width < 16 || height < 16 || width > 16384 || height > 16384)
    throw std::invalid_argument("plot: chart size " + std::to_string(width) + "x" + std::to_string(height) +
                                " is outside 16..16384");
}

void validate(const LineChart& c) {
  validate_size(c.width, c.height);
  const bool cat = !c.x_categories.empty();
  if (cat && c.log_x) throw std::invalid_argument("plot: log_x cannot be used with a categorical x axis");
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const PlotSeries& s = c.series[i];
    if (!(s.opacity > 0 && s.opacity <= 1)) bad_input(i, s, "opacity " + num(s.opacity) + " is not in (0, 1]");
    if (!(s.line_scale > 0 && std::isfinite(s.line_scale)))
      bad_input(i, s, "line_scale " + num(s.line_scale) + " is not positive");
    if (c.log_y)
      for (double y : s.y)
        if (std::isfinite(y) && y <= 0) bad_input(i, s, "y value " + num(y) + " is not positive (log_y)");
    if (s.x.size() != s.y.size())
      bad_input(i, s, "x has " + std::to_string(s.x.size()) + " values but y has " + std::to_string(s.y.size()));
    if (s.lo.size() != s.hi.size() || (!s.lo.empty() && s.lo.size() != s.y.size()))
      bad_input(i, s, "band lo/hi have " + std::to_string(s.lo.size()) + "/" + std::to_string(s.hi.size()) +
                          " values; expected none or " + std::to_string(s.y.size()));
    for (double x : s.x) {
      if (!std::isfinite(x)) bad_input(i, s, "x value " + num(x) + " is not finite");
      if (c.log_x && x <= 0) bad_input(i, s, "x value " + num(x) + " is not positive (log_x)");
      if (cat && (x < 0 || x > static_cast<double>(c.x_categories.size() - 1) || x != std::floor(x)))
        bad_input(i, s, "x value " + num(x) + " is not a category index in 0.." +
                            std::to_string(c.x_categories.size() - 1));
    }
  }
}

bool has_band(const PlotSeries& s) { return !s.lo.empty(); }

// Categorical charts draw unjoined points with error bars (see the top of the file).
bool joined(const LineChart& c) { return c.x_categories.empty(); }

// The x at which point j of series i is drawn: its own, or on a categorical axis moved
// sideways so that the series of one category sit next to each other, not on top.
double drawn_x(const LineChart& c, std::size_t i, std::size_t j) {
  const double x = c.series[i].x[j];
  const auto n = static_cast<double>(c.series.size());
  if (joined(c) || n < 2) return x;
  const double step = std::min(0.15, 0.6 / n);  // category widths
  return x + (static_cast<double>(i) - (n - 1) / 2) * step;
}

// matplotlib's 5% margins around [lo, hi]; an empty range (lo > hi) becomes the given one,
// a degenerate one gets a sensible width (`degenerate`, or 10% of the value).
void pad_range(double& lo, double& hi, double empty_lo, double empty_hi, double degenerate) {
  if (!(lo <= hi)) {
    lo = empty_lo, hi = empty_hi;
  } else if (hi - lo <= 1e-12 * std::max(1.0, std::abs(lo))) {
    const double d = degenerate > 0 ? degenerate : (lo == 0 ? 1.0 : std::abs(lo) * 0.1);
    lo -= d, hi += d;
  } else {
    const double m = 0.05 * (hi - lo);
    lo -= m, hi += m;
  }
}

// The palette slot a series is drawn with: its own index unless it names another.
std::size_t slot(const LineChart& c, std::size_t series) {
  const int style = c.series[series].style;
  return style >= 0 ? static_cast<std::size_t>(style) : series;
}

// 0 solid, 1 dashed, 2 dotted: the series' own, else past the palette lines repeat the
// colours with dashes, then dots.
int dash_kind(const LineChart& c, std::size_t series) {
  const int dash = c.series[series].dash;
  return dash >= 0 ? dash % 3 : static_cast<int>(slot(c, series) / kPaletteSize) % 3;
}

void set_dash(cairo_t* cr, const Style& st, int kind) {
  if (kind == 1) {
    const double d[] = {6 * st.s, 3 * st.s};
    cairo_set_dash(cr, d, 2, 0);
  } else if (kind == 2) {
    const double d[] = {1 * st.s, 3 * st.s};
    cairo_set_dash(cr, d, 2, 0);
  } else {
    cairo_set_dash(cr, nullptr, 0, 0);
  }
}

Colour colour(std::size_t series) { return kPalette[series % kPaletteSize]; }

// Data limits with matplotlib's 5% margins; degenerate ranges get a sensible width.
void data_limits(const LineChart& c, Axis& xa, Axis& ya) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  auto grow_y = [&](double v) {
    if (c.log_y) {
      if (!(std::isfinite(v) && v > 0)) return;
      v = std::log10(v);
    }
    if (std::isfinite(v)) y0 = std::min(y0, v), y1 = std::max(y1, v);
  };
  for (const PlotSeries& s : c.series)
    for (std::size_t j = 0; j < s.y.size(); ++j) {
      const double x = c.log_x ? std::log10(s.x[j]) : s.x[j];
      x0 = std::min(x0, x), x1 = std::max(x1, x);
      grow_y(s.y[j]);
      if (has_band(s)) grow_y(s.lo[j]), grow_y(s.hi[j]);
    }
  ya.categorical = false;
  ya.log = c.log_y;
  if (c.log_y) {
    pad_range(y0, y1, -1, 1, 0.5);
    ya.lo = std::pow(10.0, y0), ya.hi = std::pow(10.0, y1);
  } else {
    pad_range(y0, y1, 0, 1, 0);
    ya.lo = y0, ya.hi = y1;
  }
  xa.log = c.log_x;
  xa.categorical = !c.x_categories.empty();
  if (xa.categorical) {
    xa.lo = -0.5, xa.hi = static_cast<double>(c.x_categories.size()) - 0.5;
  } else if (c.log_x) {
    pad_range(x0, x1, -1, 1, 0.5);
    xa.lo = std::pow(10.0, x0), xa.hi = std::pow(10.0, x1);
  } else {
    pad_range(x0, x1, 0, 1, 0);
    xa.lo = x0, xa.hi = x1;
    xa.integer = c.integer_x;
  }
}

// ---------------------------------------------------------------------------------------
// Layout

struct Rect {
  double x0, y0, x1, y1;
  bool contains(double x, double y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
};

// A legend row: its text and its swatch, drawn the way its series is drawn.
struct LegendEntry {
  std::string text;
  Colour colour{};
  bool line = false;    // a line across the swatch (dashed per `dash`)
  bool band = false;    // a translucent band behind the line
  bool bar = false;     // an error bar through the marker
  bool marker = false;  // a marker in the middle
  int dash = 0;         // 0 solid, 1 dashed, 2 dotted
  double opacity = 1.0, line_scale = 1.0;
};

struct Layout {
  Rect plot{};
  Axis xa, ya;
  // Categorical x labels: font size, rotation (degrees), every n-th label, shortened texts.
  double cat_pt = 0, cat_angle = 0;
  int cat_every = 1;
  std::vector<std::string> cat_text;
  std::string title;
  double title_pt = 0;
  std::vector<LegendEntry> legend;
  double ytick_w = 0;  // widest y tick label (of a dot chart: widest category label)
  double legend_w = 0, legend_h = 0, legend_row = 0, legend_swatch = 0;
  bool legend_outside = false;
  Rect legend_box{};

  double px(double x) const {
    return plot.x0 + (xa.t(x) - xa.t(xa.lo)) / (xa.t(xa.hi) - xa.t(xa.lo)) * (plot.x1 - plot.x0);
  }
  double py(double y) const {
    if (ya.log && !(y > 0)) return plot.y1 + 10 * (plot.y1 - plot.y0);  // below the axes (clipped)
    return plot.y1 - (ya.t(y) - ya.t(ya.lo)) / (ya.t(ya.hi) - ya.t(ya.lo)) * (plot.y1 - plot.y0);
  }
};

double tick_label_width(cairo_t* cr, const Style& st, const Tick& t) {
  set_font(cr, st.tick_pt);
  double w = text_width(cr, t.text);
  if (!t.sup.empty()) {
    set_font(cr, st.tick_pt * 0.72);
    w += text_width(cr, t.sup) + 0.5 * st.s;
  }
  return w;
}

void draw_tick_label(cairo_t* cr, const Style& st, const Tick& t, double x, double y, double ha, double va) {
  const double w = tick_label_width(cr, st, t);
  set_font(cr, st.tick_pt);
  const FontBox fb = font_box(cr);
  const double left = x - ha * w;
  const double base = y - va * fb.ascent + fb.ascent;
  cairo_move_to(cr, left, base);
  cairo_show_text(cr, t.text.c_str());
  if (!t.sup.empty()) {
    const double w0 = text_width(cr, t.text);
    set_font(cr, st.tick_pt * 0.72);
    cairo_move_to(cr, left + w0 + 0.5 * st.s, base - fb.ascent * 0.55);
    cairo_show_text(cr, t.sup.c_str());
  }
  cairo_new_path(cr);
}

// Ticks for a numeric x axis `pw` wide: the labels must not overlap, so the step grows until
// they fit.
void x_ticks(cairo_t* cr, const Style& st, Axis& xa, double pw) {
  if (xa.log) {
    for (int max_labels = 12; max_labels >= 1; --max_labels) {
      log_ticks(xa, max_labels);
      double widest = 0;
      for (const Tick& t : xa.major) widest = std::max(widest, tick_label_width(cr, st, t));
      if (xa.major.size() <= 1 || (widest + st.tick_pt) * xa.major.size() <= pw) break;
    }
    return;
  }
  double target = std::clamp(pw / (st.tick_pt * 7.0), 2.0, 10.0);
  for (int tries = 0; tries < 8; ++tries) {
    double step = nice_step(xa.hi - xa.lo, target);
    if (xa.integer && step < 1) step = 1;
    xa.major = linear_ticks(xa.lo, xa.hi, step);
    double widest = 0;
    for (const Tick& t : xa.major) widest = std::max(widest, tick_label_width(cr, st, t));
    const double step_px = step / (xa.hi - xa.lo) * pw;
    if (widest + st.tick_pt * 1.2 <= step_px || xa.major.size() <= 2) break;
    target = std::max(1.0, target * 0.6);
  }
}

// Ticks for the y axis given the plot height, for the x axis given the plot width.
void make_ticks(cairo_t* cr, const Style& st, Layout& L) {
  const double ph = L.plot.y1 - L.plot.y0, pw = L.plot.x1 - L.plot.x0;
  if (L.ya.log) {
    log_ticks(L.ya, static_cast<int>(std::clamp(ph / (st.tick_pt * 2.5), 2.0, 12.0)));
  } else {
    const double target = std::clamp(ph / (st.tick_pt * 4.0), 2.0, 8.0);
    L.ya.major = linear_ticks(L.ya.lo, L.ya.hi, nice_step(L.ya.hi - L.ya.lo, target));
  }
  if (!L.xa.categorical) x_ticks(cr, st, L.xa, pw);
}

// Fits the category labels into the space per category: horizontal, else rotated by the
// smallest angle that keeps neighbours apart, else smaller, else every n-th label. Long
// labels are shortened with an ellipsis so the axis takes at most ~35% of the height.
void fit_categories(cairo_t* cr, const Style& st, const LineChart& c, Layout& L, double max_extent) {
  const std::size_t n = c.x_categories.size();
  const double step_px = (L.plot.x1 - L.plot.x0) / static_cast<double>(n);
  L.cat_pt = st.tick_pt;
  L.cat_every = 1;
  L.cat_angle = 0;
  L.cat_text = c.x_categories;
  for (;;) {
    set_font(cr, L.cat_pt);
    double widest = 0;
    for (const std::string& t : c.x_categories) widest = std::max(widest, text_width(cr, t));
    const double h = font_box(cr).height();
    if (widest + 0.8 * L.cat_pt <= step_px) {
      L.cat_angle = 0;
      break;
    }
    bool fits = false;
    for (double a : {30.0, 45.0, 60.0, 90.0}) {
      if (step_px * std::sin(a * M_PI / 180) >= 1.25 * h) {
        L.cat_angle = a, fits = true;
        break;
      }
    }
    if (fits) break;
    if (L.cat_pt > 8 * st.s) {
      L.cat_pt = std::max(8 * st.s, L.cat_pt * 0.9);
      continue;
    }
    L.cat_angle = 90;
    L.cat_every = static_cast<int>(std::ceil(1.25 * h / step_px));
    break;
  }
  set_font(cr, L.cat_pt);
  if (L.cat_angle > 0) {
    const double a = L.cat_angle * M_PI / 180, h = font_box(cr).height();
    const double max_w = std::max(3 * L.cat_pt, (max_extent - h * std::cos(a)) / std::sin(a));
    for (std::string& t : L.cat_text) t = ellipsize(cr, t, max_w);
  } else {
    for (std::string& t : L.cat_text) t = ellipsize(cr, t, std::max(step_px, 3 * L.cat_pt));
  }
}

// Height below the axis line taken by the x tick labels, and how far the first and last
// labels reach left of the first / right of the last tick position.
struct XLabelExtent {
  double below = 0, left_overhang = 0, right_overhang = 0;
};

XLabelExtent x_label_extent(cairo_t* cr, const Style& st, const Layout& L) {
  XLabelExtent e;
  if (L.xa.categorical) {
    set_font(cr, L.cat_pt);
    const double h = font_box(cr).height();
    const double a = L.cat_angle * M_PI / 180;
    for (std::size_t i = 0; i < L.cat_text.size(); ++i) {
      if (static_cast<int>(i) % L.cat_every) continue;
      const double w = text_width(cr, L.cat_text[i]);
      const double x = L.px(static_cast<double>(i));
      if (L.cat_angle > 0) {
        e.below = std::max(e.below, w * std::sin(a) + h * std::cos(a));
        e.left_overhang = std::max(e.left_overhang, L.plot.x0 - (x - w * std::cos(a) - 0.5 * h * std::sin(a)));
      } else {
        e.below = std::max(e.below, h);
        e.left_overhang = std::max(e.left_overhang, L.plot.x0 - (x - w / 2));
        e.right_overhang = std::max(e.right_overhang, x + w / 2 - L.plot.x1);
      }
    }
    return e;
  }
  set_font(cr, st.tick_pt);
  e.below = font_box(cr).height() + (L.xa.log ? st.tick_pt * 0.3 : 0);
  for (const Tick& t : L.xa.major) {
    const double w = tick_label_width(cr, st, t), x = L.px(t.v);
    e.left_overhang = std::max(e.left_overhang, L.plot.x0 - (x - w / 2));
    e.right_overhang = std::max(e.right_overhang, x + w / 2 - L.plot.x1);
  }
  return e;
}

// The legend entries of a line chart's labelled series.
std::vector<LegendEntry> legend_entries(const LineChart& c) {
  std::vector<LegendEntry> entries;
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const PlotSeries& s = c.series[i];
    if (s.label.empty()) continue;
    LegendEntry e;
    e.text = s.label;
    e.colour = colour(slot(c, i));
    e.opacity = s.opacity;
    e.line_scale = s.line_scale;
    e.dash = dash_kind(c, i);
    if (!joined(c) || !s.line) {  // as drawn: a marker (on its error bar)
      e.bar = has_band(s);
      e.marker = true;
    } else {
      e.line = true;
      e.band = has_band(s);
      e.marker = s.markers;
    }
    entries.push_back(e);
  }
  return entries;
}

// Takes `entries` as the legend (texts shortened to 30% of the chart's width) and its size.
void measure_legend(cairo_t* cr, const Style& st, std::vector<LegendEntry> entries, double chart_width, Layout& L) {
  L.legend = std::move(entries);
  set_font(cr, st.legend_pt);
  double widest = 0;
  for (LegendEntry& e : L.legend) {
    e.text = ellipsize(cr, e.text, 0.3 * chart_width);
    widest = std::max(widest, text_width(cr, e.text));
  }
  if (L.legend.empty()) return;
  L.legend_row = st.legend_pt * 1.55;
  L.legend_swatch = 24 * st.s;
  L.legend_w = st.legend_pt * 0.8 + L.legend_swatch + st.legend_pt * 0.6 + widest + st.legend_pt * 0.8;
  L.legend_h = st.legend_pt * 0.5 + L.legend_row * static_cast<double>(L.legend.size()) + st.legend_pt * 0.5;
}

// The title shrunk, then shortened, to fit a chart `width` wide; returns the top of the axes.
double layout_title(cairo_t* cr, const Style& st, const std::string& title, double width, Layout& L) {
  L.title.clear();
  if (title.empty()) return st.pad * 1.6;
  L.title_pt = st.title_pt;
  L.title = fit_title(cr, title, L.title_pt, width - 2 * st.pad);
  return st.pad + font_box(cr).height() + st.pad * 1.2;
}

void compute_layout(cairo_t* cr, const Style& st, const LineChart& c, Layout& L, bool legend_outside) {
  const double W = c.width, H = c.height;
  L.legend_outside = legend_outside && !L.legend.empty();
  const double top = layout_title(cr, st, c.title, W, L);
  set_font(cr, st.label_pt);
  const double label_h = font_box(cr).height();

  double left = st.pad * 4, right = st.pad * 2, bottom = st.pad * 4;
  for (int iter = 0; iter < 4; ++iter) {
    L.plot = {left, top, std::max(left + 20, W - right), std::max(top + 20, H - bottom)};
    make_ticks(cr, st, L);
    if (L.xa.categorical) fit_categories(cr, st, c, L, 0.35 * H);
    double ytick_w = 0;
    for (const Tick& t : L.ya.major) ytick_w = std::max(ytick_w, tick_label_width(cr, st, t));
    const XLabelExtent xe = x_label_extent(cr, st, L);
    double new_left = st.pad + (c.y_label.empty() ? 0 : label_h + st.pad * 0.9) + ytick_w + st.tick_len + st.tick_gap;
    new_left = std::max(new_left, xe.left_overhang + st.pad * 0.5);
    double new_bottom =
        st.tick_len + st.tick_gap + xe.below + (c.x_label.empty() ? 0 : st.pad * 0.9 + label_h) + st.pad * 1.2;
    double new_right = std::max(st.pad * 2, xe.right_overhang + st.pad);
    if (L.legend_outside) new_right = std::max(new_right, L.legend_w + st.pad * 2.0);
    new_left = std::round(new_left), new_right = std::round(new_right), new_bottom = std::round(new_bottom);
    if (new_left == left && new_right == right && new_bottom == bottom && iter > 0) break;
    left = new_left, right = new_right, bottom = new_bottom;
  }
  L.plot = {left, std::round(top), std::max(left + 20, W - right), std::max(std::round(top) + 20, H - bottom)};
  make_ticks(cr, st, L);
  if (L.xa.categorical) fit_categories(cr, st, c, L, 0.35 * H);
  L.ytick_w = 0;
  for (const Tick& t : L.ya.major) L.ytick_w = std::max(L.ytick_w, tick_label_width(cr, st, t));
}

// Screen points that the series cover (markers, lines sampled every few pixels, band
// interiors), used to find a legend corner that hides no data.
std::vector<std::pair<double, double>> covered_points(const LineChart& c, const Layout& L) {
  std::vector<std::pair<double, double>> pts;
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const PlotSeries& s = c.series[i];
    const std::size_t n = s.y.size();
    for (std::size_t j = 0; j < n; ++j) {
      const double x = L.px(drawn_x(c, i, j));
      if (std::isfinite(s.y[j])) pts.push_back({x, L.py(s.y[j])});
      if (has_band(s) && std::isfinite(s.lo[j]) && std::isfinite(s.hi[j]))
        for (int k = 0; k <= 8; ++k) pts.push_back({x, L.py(s.lo[j] + (s.hi[j] - s.lo[j]) * k / 8.0)});
      if (j + 1 >= n || !joined(c)) continue;
      const double xa = L.px(s.x[j]), xb = L.px(s.x[j + 1]);
      const int steps = std::clamp(static_cast<int>(std::abs(xb - xa) / 3), 1, 2000);
      for (int k = 1; k < steps; ++k) {
        const double f = static_cast<double>(k) / steps, x = xa + (xb - xa) * f;
        if (std::isfinite(s.y[j]) && std::isfinite(s.y[j + 1]))
          pts.push_back({x, L.py(s.y[j] + (s.y[j + 1] - s.y[j]) * f)});
        if (has_band(s) && std::isfinite(s.lo[j]) && std::isfinite(s.hi[j]) && std::isfinite(s.lo[j + 1]) &&
            std::isfinite(s.hi[j + 1])) {
          const double lo = s.lo[j] + (s.lo[j + 1] - s.lo[j]) * f, hi = s.hi[j] + (s.hi[j + 1] - s.hi[j]) * f;
          for (int m = 0; m <= 4; ++m) pts.push_back({x, L.py(lo + (hi - lo) * m / 4.0)});
        }
      }
    }
  }
  return pts;
}

using Points = std::vector<std::pair<double, double>>;

// Puts the legend into the first corner of the axes (upper right, upper left, lower right,
// lower left) where it covers none of `pts` (screen points of the data); false when the
// legend is too big for the axes or no corner is free.
bool legend_in_corner(const Style& st, Layout& L, const Points& pts) {
  const double inset = st.pad * 0.8;
  const double pw = L.plot.x1 - L.plot.x0, ph = L.plot.y1 - L.plot.y0;
  if (L.legend_w > pw * 0.45 || L.legend_h > ph * 0.6) return false;
  const double m = st.marker_r + st.line_w;  // keep clear of markers and line edges
  const Rect ur{L.plot.x1 - inset - L.legend_w, L.plot.y0 + inset, L.plot.x1 - inset, L.plot.y0 + inset + L.legend_h};
  const Rect ul{L.plot.x0 + inset, ur.y0, L.plot.x0 + inset + L.legend_w, ur.y1};
  const Rect lr{ur.x0, L.plot.y1 - inset - L.legend_h, ur.x1, L.plot.y1 - inset};
  const Rect ll{ul.x0, lr.y0, ul.x1, lr.y1};
  for (const Rect& r : {ur, ul, lr, ll}) {
    const Rect grown{r.x0 - m, r.y0 - m, r.x1 + m, r.y1 + m};
    const bool free =
        std::none_of(pts.begin(), pts.end(), [&](const auto& p) { return grown.contains(p.first, p.second); });
    if (free) {
      L.legend_box = r;
      return true;
    }
  }
  return false;
}

// The legend right of the axes (the layout left room for it).
void legend_on_the_right(const Style& st, Layout& L) {
  L.legend_box = {L.plot.x1 + st.pad * 1.2, L.plot.y0, L.plot.x1 + st.pad * 1.2 + L.legend_w, L.plot.y0 + L.legend_h};
}

Layout make_layout(cairo_t* cr, const Style& st, const LineChart& c) {
  Layout L;
  data_limits(c, L.xa, L.ya);
  measure_legend(cr, st, legend_entries(c), c.width, L);
  compute_layout(cr, st, c, L, false);
  if (L.legend.empty() || legend_in_corner(st, L, covered_points(c, L))) return L;
  compute_layout(cr, st, c, L, true);
  legend_on_the_right(st, L);
  return L;
}

// ---------------------------------------------------------------------------------------
// Drawing

void draw_marker(cairo_t* cr, const Style& st, Colour col, double x, double y, double alpha = 1.0) {
  cairo_new_path(cr);
  cairo_arc(cr, x, y, st.marker_r, 0, 2 * M_PI);
  set_rgb(cr, col, alpha);
  cairo_fill_preserve(cr);
  cairo_set_source_rgba(cr, 1, 1, 1, alpha);
  cairo_set_line_width(cr, st.marker_edge);
  cairo_set_dash(cr, nullptr, 0, 0);
  cairo_stroke(cr);
}

// An error bar from (x0, y0) to (x1, y1) (screen; vertical or horizontal) with caps across
// its ends.
void draw_error_bar(cairo_t* cr, const Style& st, Colour col, double x0, double y0, double x1, double y1) {
  const double cap = 4 * st.s;
  const bool vertical = x0 == x1;
  const double cx = vertical ? cap : 0, cy = vertical ? 0 : cap;
  cairo_new_path(cr);
  cairo_move_to(cr, x0, y0);
  cairo_line_to(cr, x1, y1);
  cairo_move_to(cr, x0 - cx, y0 - cy);
  cairo_line_to(cr, x0 + cx, y0 + cy);
  cairo_move_to(cr, x1 - cx, y1 - cy);
  cairo_line_to(cr, x1 + cx, y1 + cy);
  set_rgb(cr, col);
  cairo_set_dash(cr, nullptr, 0, 0);
  cairo_set_line_width(cr, 1.5 * st.s);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  cairo_stroke(cr);
}

void draw_bands(cairo_t* cr, const Style& st, const LineChart& c, const Layout& L) {
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const PlotSeries& s = c.series[i];
    if (!has_band(s)) continue;
    const Colour col = colour(slot(c, i));
    const std::size_t n = s.y.size();
    auto ok = [&](std::size_t j) { return std::isfinite(s.lo[j]) && std::isfinite(s.hi[j]); };
    std::size_t j = 0;
    while (j < n) {
      if (!ok(j)) {
        ++j;
        continue;
      }
      std::size_t k = j;
      while (joined(c) && k + 1 < n && ok(k + 1)) ++k;
      if (k > j) {  // a run of points: fill between hi (forwards) and lo (backwards)
        cairo_new_path(cr);
        for (std::size_t m = j; m <= k; ++m) cairo_line_to(cr, L.px(s.x[m]), L.py(s.hi[m]));
        for (std::size_t m = k + 1; m-- > j;) cairo_line_to(cr, L.px(s.x[m]), L.py(s.lo[m]));
        cairo_close_path(cr);
        set_rgb(cr, col, kBandAlpha);
        cairo_fill(cr);
      } else {  // an isolated or categorical point: an error bar with caps
        const double x = L.px(drawn_x(c, i, j));
        draw_error_bar(cr, st, col, x, L.py(s.lo[j]), x, L.py(s.hi[j]));
      }
      j = k + 1;
    }
  }
}

// Series i as a polyline through its finite points (a NaN breaks it).
void stroke_line(cairo_t* cr, const Style& st, const LineChart& c, const Layout& L, std::size_t i) {
  const PlotSeries& s = c.series[i];
  cairo_new_path(cr);
  bool pen = false;
  for (std::size_t j = 0; j < s.y.size(); ++j) {
    if (!std::isfinite(s.y[j])) {
      pen = false;  // a gap
      continue;
    }
    const double x = L.px(s.x[j]), y = L.py(s.y[j]);
    if (pen)
      cairo_line_to(cr, x, y);
    else
      cairo_move_to(cr, x, y);
    pen = true;
  }
  set_rgb(cr, colour(slot(c, i)), s.opacity);
  cairo_set_line_width(cr, st.line_w * s.line_scale);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  set_dash(cr, st, dash_kind(c, i));
  cairo_stroke(cr);
}

void draw_lines(cairo_t* cr, const Style& st, const LineChart& c, const Layout& L) {
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const PlotSeries& s = c.series[i];
    const Colour col = colour(slot(c, i));
    if (joined(c) && s.line) stroke_line(cr, st, c, L, i);
    if (!s.markers && joined(c) && s.line) continue;  // unjoined points always have their marker
    for (std::size_t j = 0; j < s.y.size(); ++j)
      if (std::isfinite(s.y[j])) draw_marker(cr, st, col, L.px(drawn_x(c, i, j)), L.py(s.y[j]), s.opacity);
  }
  cairo_set_dash(cr, nullptr, 0, 0);
}

void draw_legend(cairo_t* cr, const Style& st, const Layout& L) {
  if (L.legend.empty()) return;
  const Rect& b = L.legend_box;
  const double r = 3 * st.s;
  cairo_new_path(cr);
  cairo_new_sub_path(cr);
  cairo_arc(cr, b.x1 - r, b.y0 + r, r, -M_PI / 2, 0);
  cairo_arc(cr, b.x1 - r, b.y1 - r, r, 0, M_PI / 2);
  cairo_arc(cr, b.x0 + r, b.y1 - r, r, M_PI / 2, M_PI);
  cairo_arc(cr, b.x0 + r, b.y0 + r, r, M_PI, 3 * M_PI / 2);
  cairo_close_path(cr);
  cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
  cairo_fill_preserve(cr);
  set_rgb(cr, kLegendEdge);
  cairo_set_line_width(cr, st.s);
  cairo_stroke(cr);
  set_font(cr, st.legend_pt);
  for (std::size_t k = 0; k < L.legend.size(); ++k) {
    const LegendEntry& e = L.legend[k];
    const double cy = b.y0 + st.legend_pt * 0.5 + L.legend_row * (static_cast<double>(k) + 0.5);
    const double sx0 = b.x0 + st.legend_pt * 0.8, sx1 = sx0 + L.legend_swatch, cx = (sx0 + sx1) / 2;
    if (e.band) {
      set_rgb(cr, e.colour, kBandAlpha);
      cairo_rectangle(cr, sx0, cy - st.legend_pt * 0.45, sx1 - sx0, st.legend_pt * 0.9);
      cairo_fill(cr);
    }
    if (e.line) {
      cairo_move_to(cr, sx0, cy);
      cairo_line_to(cr, sx1, cy);
      set_rgb(cr, e.colour, e.opacity);
      cairo_set_line_width(cr, st.line_w * e.line_scale);
      set_dash(cr, st, e.dash);
      cairo_stroke(cr);
    }
    if (e.bar) draw_error_bar(cr, st, e.colour, cx, cy - st.legend_pt * 0.45, cx, cy + st.legend_pt * 0.45);
    if (e.marker) draw_marker(cr, st, e.colour, cx, cy, e.opacity);
    set_rgb(cr, kText);
    set_font(cr, st.legend_pt);
    draw_text(cr, e.text, sx1 + st.legend_pt * 0.6, cy, 0, 0.5);
  }
  cairo_set_dash(cr, nullptr, 0, 0);
}

// Light grid lines across the axes at screen xs (vertical) and ys (horizontal).
void draw_grid(cairo_t* cr, const Style& st, const Rect& p, const std::vector<double>& xs,
               const std::vector<double>& ys) {
  cairo_set_line_width(cr, st.grid_w);
  set_rgb(cr, kGrid);
  for (double v : ys) {
    const double y = snap(v, st.grid_w);
    cairo_move_to(cr, p.x0, y);
    cairo_line_to(cr, p.x1, y);
  }
  for (double v : xs) {
    const double x = snap(v, st.grid_w);
    cairo_move_to(cr, x, p.y0);
    cairo_line_to(cr, x, p.y1);
  }
  cairo_stroke(cr);
}

// Screen positions of ticks: major and minor along the bottom (x) and the left side (y).
struct TickMarks {
  std::vector<double> x, x_minor, y, y_minor;
};

// The frame around the axes with outward ticks; returns the frame's rectangle as drawn
// (snapped to pixels), which the tick labels are placed against.
Rect draw_frame(cairo_t* cr, const Style& st, const Rect& p, const TickMarks& t) {
  set_rgb(cr, kFrame);
  cairo_set_line_width(cr, st.frame_w);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_SQUARE);
  const Rect f{snap(p.x0, st.frame_w), snap(p.y0, st.frame_w), snap(p.x1, st.frame_w), snap(p.y1, st.frame_w)};
  cairo_rectangle(cr, f.x0, f.y0, f.x1 - f.x0, f.y1 - f.y0);
  cairo_stroke(cr);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  auto tick_x = [&](double v, double len) {
    const double x = snap(v, st.frame_w);
    cairo_move_to(cr, x, f.y1);
    cairo_line_to(cr, x, f.y1 + len);
  };
  auto tick_y = [&](double v, double len) {
    const double y = snap(v, st.frame_w);
    cairo_move_to(cr, f.x0, y);
    cairo_line_to(cr, f.x0 - len, y);
  };
  for (double v : t.y) tick_y(v, st.tick_len);
  for (double v : t.x) tick_x(v, st.tick_len);
  for (double v : t.x_minor) tick_x(v, st.minor_len);
  for (double v : t.y_minor) tick_y(v, st.minor_len);
  cairo_stroke(cr);
  return f;
}

// The x axis label centred under the axes with its top at `x_label_top`, the y label rotated
// left of the y tick labels (L.ytick_w wide, ending at `ylab_x`), and the title above.
void draw_axis_titles(cairo_t* cr, const Style& st, int width, int height, const Layout& L, const std::string& x_label,
                      double x_label_top, const std::string& y_label, double ylab_x) {
  const Rect& p = L.plot;
  set_rgb(cr, kText);
  set_font(cr, st.label_pt);
  if (!x_label.empty()) {
    const std::string text = ellipsize(cr, x_label, width - 2 * st.pad);
    draw_text(cr, text, (p.x0 + p.x1) / 2, x_label_top, 0.5, 0);
  }
  if (!y_label.empty()) {
    const std::string text = ellipsize(cr, y_label, height - 2 * st.pad);
    cairo_save(cr);
    // Next to the tick labels (the margin can be wider, for rotated category labels).
    const double x = std::max(st.pad * 0.5, ylab_x - L.ytick_w - st.pad * 0.9 - font_box(cr).height());
    cairo_translate(cr, x, (p.y0 + p.y1) / 2);
    cairo_rotate(cr, -M_PI / 2);
    draw_text(cr, text, 0, 0, 0.5, 0);
    cairo_restore(cr);
  }
  if (!L.title.empty()) {
    set_font(cr, L.title_pt, true);
    const double w = text_width(cr, L.title);
    double cx = (p.x0 + p.x1) / 2;  // centred over the axes, kept inside the figure
    cx = std::clamp(cx, st.pad + w / 2, width - st.pad - w / 2);
    draw_text(cr, L.title, cx, st.pad, 0.5, 0);
  }
}

void draw_chart(cairo_t* cr, const LineChart& c) {
  const Style st(c.width, c.height);
  set_font_options(cr);
  const Layout L = make_layout(cr, st, c);
  const Rect& p = L.plot;

  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);

  // Ticks (and grid lines) at the major ticks, on a categorical x axis at each category.
  TickMarks t;
  for (const Tick& tick : L.ya.major) t.y.push_back(L.py(tick.v));
  if (L.xa.categorical)
    for (std::size_t i = 0; i < c.x_categories.size(); ++i) t.x.push_back(L.px(static_cast<double>(i)));
  else
    for (const Tick& tick : L.xa.major) t.x.push_back(L.px(tick.v));
  for (double v : L.xa.minor) t.x_minor.push_back(L.px(v));
  for (double v : L.ya.minor) t.y_minor.push_back(L.py(v));
  draw_grid(cr, st, p, t.x, t.y);

  // Data, clipped to the axes.
  cairo_save(cr);
  cairo_rectangle(cr, p.x0, p.y0, p.x1 - p.x0, p.y1 - p.y0);
  cairo_clip(cr);
  draw_bands(cr, st, c, L);
  draw_lines(cr, st, c, L);
  cairo_restore(cr);

  const Rect f = draw_frame(cr, st, p, t);

  // Tick labels.
  set_rgb(cr, kText);
  const double ylab_x = f.x0 - st.tick_len - st.tick_gap;
  for (const Tick& tick : L.ya.major) draw_tick_label(cr, st, tick, ylab_x, L.py(tick.v), 1, 0.5);
  const double xlab_y = f.y1 + st.tick_len + st.tick_gap;
  if (L.xa.categorical) {
    set_font(cr, L.cat_pt);
    const FontBox fb = font_box(cr);
    const double a = L.cat_angle * M_PI / 180;
    for (std::size_t i = 0; i < L.cat_text.size(); ++i) {
      if (static_cast<int>(i) % L.cat_every) continue;
      const double x = L.px(static_cast<double>(i));
      if (L.cat_angle == 0) {
        draw_text(cr, L.cat_text[i], x, xlab_y, 0.5, 0);
        continue;
      }
      // Rotated counter-clockwise, the text ends at the tick (matplotlib's ha="right",
      // rotation_mode="anchor").
      cairo_save(cr);
      cairo_translate(cr, x, xlab_y + 0.5 * fb.height() * std::cos(a));
      cairo_rotate(cr, -a);
      draw_text(cr, L.cat_text[i], 0, 0, 1, 0.5);
      cairo_restore(cr);
    }
  } else {
    const double sup_room = L.xa.log ? st.tick_pt * 0.3 : 0;
    for (const Tick& tick : L.xa.major) draw_tick_label(cr, st, tick, L.px(tick.v), xlab_y + sup_room, 0.5, 0);
  }

  const XLabelExtent xe = x_label_extent(cr, st, L);
  draw_axis_titles(cr, st, c.width, c.height, L, c.x_label, xlab_y + xe.below + st.pad * 0.9, c.y_label, ylab_x);
  draw_legend(cr, st, L);
}

// ---------------------------------------------------------------------------------------
// Dot charts (see plot.h): categories as rows, values along x, drawn with the line chart's
// style, ticks, frame, titles and legend.

bool has_bars(const DotSeries& s) { return !s.lo.empty(); }

void validate(const DotChart& c) {
  const std::size_t n = c.categories.size();
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const DotSeries& s = c.series[i];
    if (s.value.size() != n)
      bad_input(i, s.label,
                "has " + std::to_string(s.value.size()) + " values for " + std::to_string(n) + " categories");
    if (s.lo.size() != s.hi.size() || (!s.lo.empty() && s.lo.size() != n))
      bad_input(i, s.label,
                "error bars lo/hi have " + std::to_string(s.lo.size()) + "/" + std::to_string(s.hi.size()) +
                    " values; expected none or " + std::to_string(n));
  }
  if (c.baseline < -1 || c.baseline >= static_cast<int>(n))
    throw std::invalid_argument("plot: baseline " + std::to_string(c.baseline) + " is not a category index in -1.." +
                                std::to_string(static_cast<long>(n) - 1));
  validate_size(c.width, dot_chart_height(c));
}

// Sizes follow the chart's width (its height grows with the categories).
Style dot_style(const DotChart& c) { return Style(c.width, std::max(1, c.width * 5 / 8)); }

// The height of one category's row: room for the series side by side and for its label.
double dot_row_height(const Style& st, std::size_t series) {
  const double per_series = 2 * st.marker_r + 3 * st.s;
  return std::max(2.2 * st.tick_pt, static_cast<double>(std::max<std::size_t>(series, 1)) * per_series + 8 * st.s);
}

// Where series i sits within a row, in rows from the row's centre (side by side, not on top).
double dot_offset(const DotChart& c, std::size_t i) {
  const auto n = static_cast<double>(c.series.size());
  if (n < 2) return 0;
  const double step = std::min(0.22, 0.7 / n);
  return (static_cast<double>(i) - (n - 1) / 2) * step;
}

// The x range of every value and bar end, with the line chart's margins.
void dot_limits(const DotChart& c, Axis& xa) {
  double lo = INFINITY, hi = -INFINITY;
  auto grow = [&](double v) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  };
  for (const DotSeries& s : c.series)
    for (std::size_t j = 0; j < s.value.size(); ++j) {
      grow(s.value[j]);
      if (has_bars(s) && std::isfinite(s.value[j])) grow(s.lo[j]), grow(s.hi[j]);
    }
  pad_range(lo, hi, 0, 1, 0);
  xa = Axis{};
  xa.lo = lo, xa.hi = hi;
}

// A dot chart's layout on top of the line chart's: `order` lists the categories top to
// bottom; row r (0 = top) sits at y = r on an axis running downwards (ya from n − 0.5 to
// −0.5), so Layout::py places rows and the series offsets within them.
struct DotLayout {
  Layout L;
  std::vector<std::size_t> order;
  int baseline_row = -1;  // the row of the baseline category
  double height = 0;
  double tick_h = 0;  // height of the x tick labels
};

bool baseline_drawn(const DotChart& c, std::size_t i) {
  if (c.baseline < 0) return false;
  return std::isfinite(c.series[i].value[static_cast<std::size_t>(c.baseline)]);
}

std::vector<LegendEntry> dot_legend_entries(const DotChart& c) {
  std::vector<LegendEntry> entries;
  bool reference = false;
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    reference = reference || baseline_drawn(c, i);
    if (c.series[i].label.empty()) continue;
    LegendEntry e;
    e.text = c.series[i].label;
    e.colour = colour(i);
    e.bar = has_bars(c.series[i]);
    e.marker = true;
    entries.push_back(e);
  }
  if (reference) {  // the dashed line through the baseline's value
    LegendEntry e;
    e.text = "baseline";
    e.colour = c.series.size() == 1 ? colour(0) : kFrame;
    e.line = true;
    e.dash = 1;
    e.line_scale = 0.6;
    entries.push_back(e);
  }
  return entries;
}

void compute_dot_layout(cairo_t* cr, const Style& st, const DotChart& c, DotLayout& D, bool legend_outside) {
  Layout& L = D.L;
  const double W = c.width, H = D.height;
  const std::size_t n = c.categories.size();
  L.legend_outside = legend_outside && !L.legend.empty();
  const double top = layout_title(cr, st, c.title, W, L);
  set_font(cr, st.label_pt);
  const double label_h = font_box(cr).height();
  set_font(cr, st.tick_pt);
  D.tick_h = font_box(cr).height();

  // Category labels: at most 40% of the width, smaller when rows are tight; the baseline bold.
  const double row_h = n ? (H - top - 6 * st.pad) / static_cast<double>(n) : H;
  L.cat_pt = std::max(6 * st.s, std::min(st.tick_pt, row_h * 0.7));
  L.cat_text.clear();
  L.ytick_w = 0;
  for (std::size_t r = 0; r < n; ++r) {
    set_font(cr, L.cat_pt, static_cast<int>(r) == D.baseline_row);
    L.cat_text.push_back(ellipsize(cr, c.categories[D.order[r]], 0.4 * W));
    L.ytick_w = std::max(L.ytick_w, text_width(cr, L.cat_text.back()));
  }

  const double left = std::round(st.pad + (c.category_label.empty() ? 0 : label_h + st.pad * 0.9) + L.ytick_w +
                                 st.tick_len + st.tick_gap);
  const double bottom = std::round(st.tick_len + st.tick_gap + D.tick_h +
                                   (c.value_label.empty() ? 0 : st.pad * 0.9 + label_h) + st.pad * 1.2);
  double right = st.pad * 2;
  if (L.legend_outside) right = std::max(right, L.legend_w + st.pad * 2.0);
  for (int iter = 0; iter < 2; ++iter) {  // the last x tick label may reach past the axes
    L.plot = {left, std::round(top), std::max(left + 20, W - std::round(right)),
              std::max(std::round(top) + 20, H - bottom)};
    x_ticks(cr, st, L.xa, L.plot.x1 - L.plot.x0);
    double overhang = 0;
    for (const Tick& t : L.xa.major)
      overhang = std::max(overhang, L.px(t.v) + tick_label_width(cr, st, t) / 2 - L.plot.x1);
    if (overhang + st.pad <= right) break;
    right = overhang + st.pad;
  }
}

// Screen points of the markers, bars and reference lines (for the legend's corner).
Points dot_covered_points(const DotChart& c, const DotLayout& D) {
  const Layout& L = D.L;
  Points pts;
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const DotSeries& s = c.series[i];
    for (std::size_t r = 0; r < D.order.size(); ++r) {
      const std::size_t j = D.order[r];
      if (!std::isfinite(s.value[j])) continue;
      const double y = L.py(static_cast<double>(r) + dot_offset(c, i));
      pts.push_back({L.px(s.value[j]), y});
      if (has_bars(s) && std::isfinite(s.lo[j]) && std::isfinite(s.hi[j]))
        for (int k = 0; k <= 8; ++k) pts.push_back({L.px(s.lo[j] + (s.hi[j] - s.lo[j]) * k / 8.0), y});
    }
    if (baseline_drawn(c, i))
      for (double y = L.plot.y0; y <= L.plot.y1; y += 3)
        pts.push_back({L.px(s.value[static_cast<std::size_t>(c.baseline)]), y});
  }
  return pts;
}

DotLayout make_dot_layout(cairo_t* cr, const Style& st, const DotChart& c) {
  DotLayout D;
  D.height = dot_chart_height(c);
  D.order = dot_chart_order(c);
  for (std::size_t r = 0; r < D.order.size(); ++r)
    if (static_cast<int>(D.order[r]) == c.baseline) D.baseline_row = static_cast<int>(r);
  Layout& L = D.L;
  dot_limits(c, L.xa);
  L.ya.lo = static_cast<double>(std::max<std::size_t>(c.categories.size(), 1)) - 0.5, L.ya.hi = -0.5;  // row 0 on top
  measure_legend(cr, st, dot_legend_entries(c), c.width, L);
  compute_dot_layout(cr, st, c, D, false);
  if (L.legend.empty() || legend_in_corner(st, L, dot_covered_points(c, D))) return D;
  compute_dot_layout(cr, st, c, D, true);
  legend_on_the_right(st, L);
  return D;
}

void draw_dots(cairo_t* cr, const Style& st, const DotChart& c, const DotLayout& D) {
  const Layout& L = D.L;
  for (std::size_t i = 0; i < c.series.size(); ++i) {  // reference lines underneath
    if (!baseline_drawn(c, i)) continue;
    const double x = snap(L.px(c.series[i].value[static_cast<std::size_t>(c.baseline)]), st.s);
    cairo_move_to(cr, x, L.plot.y0);
    cairo_line_to(cr, x, L.plot.y1);
    set_rgb(cr, colour(i), 0.8);
    cairo_set_line_width(cr, st.line_w * 0.6);
    set_dash(cr, st, 1);
    cairo_stroke(cr);
  }
  cairo_set_dash(cr, nullptr, 0, 0);
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const DotSeries& s = c.series[i];
    for (std::size_t r = 0; r < D.order.size(); ++r) {
      const std::size_t j = D.order[r];
      if (!std::isfinite(s.value[j])) continue;
      const double y = L.py(static_cast<double>(r) + dot_offset(c, i));
      if (has_bars(s) && std::isfinite(s.lo[j]) && std::isfinite(s.hi[j]))
        draw_error_bar(cr, st, colour(i), L.px(s.lo[j]), y, L.px(s.hi[j]), y);
      draw_marker(cr, st, colour(i), L.px(s.value[j]), y);
    }
  }
}

void draw_dot_chart(cairo_t* cr, const DotChart& c) {
  const Style st = dot_style(c);
  set_font_options(cr);
  const DotLayout D = make_dot_layout(cr, st, c);
  const Layout& L = D.L;
  const Rect& p = L.plot;

  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);

  TickMarks t;
  for (const Tick& tick : L.xa.major) t.x.push_back(L.px(tick.v));
  for (std::size_t r = 0; r < D.order.size(); ++r) t.y.push_back(L.py(static_cast<double>(r)));
  draw_grid(cr, st, p, t.x, t.y);

  cairo_save(cr);
  cairo_rectangle(cr, p.x0, p.y0, p.x1 - p.x0, p.y1 - p.y0);
  cairo_clip(cr);
  draw_dots(cr, st, c, D);
  cairo_restore(cr);

  const Rect f = draw_frame(cr, st, p, t);

  set_rgb(cr, kText);
  const double ylab_x = f.x0 - st.tick_len - st.tick_gap;
  for (std::size_t r = 0; r < L.cat_text.size(); ++r) {
    set_font(cr, L.cat_pt, static_cast<int>(r) == D.baseline_row);
    draw_text(cr, L.cat_text[r], ylab_x, L.py(static_cast<double>(r)), 1, 0.5);
  }
  const double xlab_y = f.y1 + st.tick_len + st.tick_gap;
  for (const Tick& tick : L.xa.major) draw_tick_label(cr, st, tick, L.px(tick.v), xlab_y, 0.5, 0);

  draw_axis_titles(cr, st, c.width, static_cast<int>(D.height), L, c.value_label, xlab_y + D.tick_h + st.pad * 0.9,
                   c.category_label, ylab_x);
  draw_legend(cr, st, L);
}

}  // namespace

void render_line_chart(const LineChart& chart, const std::string& png_path, const std::string& svg_path) {
  validate(chart);
  const DrawFunction draw = [&](cairo_t* cr) { draw_chart(cr, chart); };
  if (!png_path.empty()) write_atomically(png_path, render_png_bytes(chart.width, chart.height, draw, png_path));
  if (!svg_path.empty()) write_atomically(svg_path, render_svg_bytes(chart.width, chart.height, draw, svg_path));
}

std::vector<std::size_t> dot_chart_order(const DotChart& chart) {
  const std::size_t n = chart.categories.size();
  std::vector<double> key(n, std::numeric_limits<double>::quiet_NaN());
  for (std::size_t j = 0; j < n; ++j) {
    double sum = 0;
    int count = 0;
    for (const DotSeries& s : chart.series)
      if (j < s.value.size() && std::isfinite(s.value[j])) sum += s.value[j], ++count;
    if (count) key[j] = sum / count;
  }
  std::vector<std::size_t> order(n);
  for (std::size_t j = 0; j < n; ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (std::isnan(key[a]) || std::isnan(key[b])) return !std::isnan(key[a]) && std::isnan(key[b]);
    return chart.lower_is_better ? key[a] < key[b] : key[a] > key[b];
  });
  return order;
}

int dot_chart_height(const DotChart& chart) {
  if (chart.height > 0) return chart.height;
  const Style st = dot_style(chart);
  // Title, x tick labels and axis label take about 130 px at the default size.
  const double rows = static_cast<double>(chart.categories.size()) * dot_row_height(st, chart.series.size());
  return static_cast<int>(std::clamp(std::round(130 * st.s + rows), std::round(300 * st.s), 16384.0));
}

void render_dot_chart(const DotChart& chart, const std::string& png_path, const std::string& svg_path) {
  validate(chart);
  const int height = dot_chart_height(chart);
  const DrawFunction draw = [&](cairo_t* cr) { draw_dot_chart(cr, chart); };
  if (!png_path.empty()) write_atomically(png_path, render_png_bytes(chart.width, height, draw, png_path));
  if (!svg_path.empty()) write_atomically(svg_path, render_svg_bytes(chart.width, height, draw, svg_path));
}

}  // namespace blocklab
