// Line charts with uncertainty bands, drawn with cairo (see plot.h).
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

  explicit Style(const LineChart& c) {
    const double raw = std::min(c.width / 800.0, c.height / 500.0);
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

[[noreturn]] void bad_input(std::size_t i, const PlotSeries& s, const std::string& what) {
  std::string name = "series " + std::to_string(i);
  if (!s.label.empty()) name += " ('" + s.label + "')";
  throw std::invalid_argument("plot: " + name + ": " + what);
}

void validate(const LineChart& c) {
  if (c.width < 16 || c.height < 16 || c.width > 16384 || c.height > 16384)
    throw std::invalid_argument("plot: chart size " + std::to_string(c.width) + "x" + std::to_string(c.height) +
                                " is outside 16..16384");
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
  auto pad = [](double& lo, double& hi, double empty_lo, double empty_hi, double degenerate) {
    if (!(lo <= hi)) {
      lo = empty_lo, hi = empty_hi;
    } else if (hi - lo <= 1e-12 * std::max(1.0, std::abs(lo))) {
      const double d = degenerate > 0 ? degenerate : (lo == 0 ? 1.0 : std::abs(lo) * 0.1);
      lo -= d, hi += d;
    } else {
      const double m = 0.05 * (hi - lo);
      lo -= m, hi += m;
    }
  };
  ya.categorical = false;
  ya.log = c.log_y;
  if (c.log_y) {
    pad(y0, y1, -1, 1, 0.5);
    ya.lo = std::pow(10.0, y0), ya.hi = std::pow(10.0, y1);
  } else {
    pad(y0, y1, 0, 1, 0);
    ya.lo = y0, ya.hi = y1;
  }
  xa.log = c.log_x;
  xa.categorical = !c.x_categories.empty();
  if (xa.categorical) {
    xa.lo = -0.5, xa.hi = static_cast<double>(c.x_categories.size()) - 0.5;
  } else if (c.log_x) {
    pad(x0, x1, -1, 1, 0.5);
    xa.lo = std::pow(10.0, x0), xa.hi = std::pow(10.0, x1);
  } else {
    pad(x0, x1, 0, 1, 0);
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

struct LegendEntry {
  std::size_t series;
  std::string text;
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
  double ytick_w = 0;  // widest y tick label
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

// Ticks for the y axis given the plot height, for the x axis given the plot width (x
// labels must not overlap, so the step grows until they fit).
void make_ticks(cairo_t* cr, const Style& st, Layout& L) {
  const double ph = L.plot.y1 - L.plot.y0, pw = L.plot.x1 - L.plot.x0;
  if (L.ya.log) {
    log_ticks(L.ya, static_cast<int>(std::clamp(ph / (st.tick_pt * 2.5), 2.0, 12.0)));
  } else {
    const double target = std::clamp(ph / (st.tick_pt * 4.0), 2.0, 8.0);
    L.ya.major = linear_ticks(L.ya.lo, L.ya.hi, nice_step(L.ya.hi - L.ya.lo, target));
  }
  if (L.xa.categorical) return;
  if (L.xa.log) {
    for (int max_labels = 12; max_labels >= 1; --max_labels) {
      log_ticks(L.xa, max_labels);
      double widest = 0;
      for (const Tick& t : L.xa.major) widest = std::max(widest, tick_label_width(cr, st, t));
      if (L.xa.major.size() <= 1 || (widest + st.tick_pt) * L.xa.major.size() <= pw) break;
    }
    return;
  }
  double target = std::clamp(pw / (st.tick_pt * 7.0), 2.0, 10.0);
  for (int tries = 0; tries < 8; ++tries) {
    double step = nice_step(L.xa.hi - L.xa.lo, target);
    if (L.xa.integer && step < 1) step = 1;
    L.xa.major = linear_ticks(L.xa.lo, L.xa.hi, step);
    double widest = 0;
    for (const Tick& t : L.xa.major) widest = std::max(widest, tick_label_width(cr, st, t));
    const double step_px = step / (L.xa.hi - L.xa.lo) * pw;
    if (widest + st.tick_pt * 1.2 <= step_px || L.xa.major.size() <= 2) break;
    target = std::max(1.0, target * 0.6);
  }
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

void measure_legend(cairo_t* cr, const Style& st, const LineChart& c, Layout& L) {
  L.legend.clear();
  set_font(cr, st.legend_pt);
  double widest = 0;
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    if (c.series[i].label.empty()) continue;
    std::string text = ellipsize(cr, c.series[i].label, 0.3 * c.width);
    widest = std::max(widest, text_width(cr, text));
    L.legend.push_back({i, text});
  }
  if (L.legend.empty()) return;
  L.legend_row = st.legend_pt * 1.55;
  L.legend_swatch = 24 * st.s;
  L.legend_w = st.legend_pt * 0.8 + L.legend_swatch + st.legend_pt * 0.6 + widest + st.legend_pt * 0.8;
  L.legend_h = st.legend_pt * 0.5 + L.legend_row * static_cast<double>(L.legend.size()) + st.legend_pt * 0.5;
}

void compute_layout(cairo_t* cr, const Style& st, const LineChart& c, Layout& L, bool legend_outside) {
  const double W = c.width, H = c.height;
  L.legend_outside = legend_outside && !L.legend.empty();
  // Title: shrink a long title, then shorten it.
  L.title.clear();
  double top = st.pad * 1.6;
  if (!c.title.empty()) {
    L.title_pt = st.title_pt;
    L.title = fit_title(cr, c.title, L.title_pt, W - 2 * st.pad);
    top = st.pad + font_box(cr).height() + st.pad * 1.2;
  }
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

Layout make_layout(cairo_t* cr, const Style& st, const LineChart& c) {
  Layout L;
  data_limits(c, L.xa, L.ya);
  measure_legend(cr, st, c, L);
  compute_layout(cr, st, c, L, false);
  if (L.legend.empty()) return L;
  const double inset = st.pad * 0.8;
  const double pw = L.plot.x1 - L.plot.x0, ph = L.plot.y1 - L.plot.y0;
  if (L.legend_w <= pw * 0.45 && L.legend_h <= ph * 0.6) {
    const auto pts = covered_points(c, L);
    const double m = st.marker_r + st.line_w;  // keep clear of markers and line edges
    const Rect ur{L.plot.x1 - inset - L.legend_w, L.plot.y0 + inset, L.plot.x1 - inset, L.plot.y0 + inset + L.legend_h};
    const Rect ul{L.plot.x0 + inset, ur.y0, L.plot.x0 + inset + L.legend_w, ur.y1};
    const Rect lr{ur.x0, L.plot.y1 - inset - L.legend_h, ur.x1, L.plot.y1 - inset};
    const Rect ll{ul.x0, lr.y0, ul.x1, lr.y1};
    for (const Rect& r : {ur, ul, lr, ll}) {
      const Rect grown{r.x0 - m, r.y0 - m, r.x1 + m, r.y1 + m};
      const bool free = std::none_of(pts.begin(), pts.end(), [&](const auto& p) { return grown.contains(p.first, p.second); });
      if (free) {
        L.legend_box = r;
        return L;
      }
    }
  }
  compute_layout(cr, st, c, L, true);
  L.legend_box = {L.plot.x1 + st.pad * 1.2, L.plot.y0, L.plot.x1 + st.pad * 1.2 + L.legend_w, L.plot.y0 + L.legend_h};
  return L;
}

// ---------------------------------------------------------------------------------------
// Drawing

// The palette slot a series is drawn with: its own index unless it names another.
std::size_t slot(const LineChart& c, std::size_t series) {
  const int style = c.series[series].style;
  return style >= 0 ? static_cast<std::size_t>(style) : series;
}

void set_dash(cairo_t* cr, const Style& st, std::size_t series) {
  // Past the palette, lines repeat the colours with dashes, then dots.
  const int cycle = static_cast<int>(series / kPaletteSize) % 3;
  if (cycle == 1) {
    const double d[] = {6 * st.s, 3 * st.s};
    cairo_set_dash(cr, d, 2, 0);
  } else if (cycle == 2) {
    const double d[] = {1 * st.s, 3 * st.s};
    cairo_set_dash(cr, d, 2, 0);
  } else {
    cairo_set_dash(cr, nullptr, 0, 0);
  }
}

Colour colour(std::size_t series) { return kPalette[series % kPaletteSize]; }

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

// A vertical bar from y0 to y1 (screen) with caps, at screen x.
void draw_error_bar(cairo_t* cr, const Style& st, Colour col, double x, double y0, double y1) {
  const double cap = 4 * st.s;
  cairo_new_path(cr);
  cairo_move_to(cr, x, y0);
  cairo_line_to(cr, x, y1);
  cairo_move_to(cr, x - cap, y0);
  cairo_line_to(cr, x + cap, y0);
  cairo_move_to(cr, x - cap, y1);
  cairo_line_to(cr, x + cap, y1);
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
        draw_error_bar(cr, st, col, L.px(drawn_x(c, i, j)), L.py(s.lo[j]), L.py(s.hi[j]));
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
  set_dash(cr, st, slot(c, i));
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

void draw_legend(cairo_t* cr, const Style& st, const LineChart& c, const Layout& L) {
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
  for (std::size_t e = 0; e < L.legend.size(); ++e) {
    const std::size_t i = L.legend[e].series;
    const PlotSeries& s = c.series[i];
    const Colour col = colour(slot(c, i));
    const double cy = b.y0 + st.legend_pt * 0.5 + L.legend_row * (static_cast<double>(e) + 0.5);
    const double sx0 = b.x0 + st.legend_pt * 0.8, sx1 = sx0 + L.legend_swatch;
    if (!joined(c) || !s.line) {  // as drawn: a marker (on its error bar)
      if (has_band(s)) draw_error_bar(cr, st, col, (sx0 + sx1) / 2, cy - st.legend_pt * 0.45, cy + st.legend_pt * 0.45);
      draw_marker(cr, st, col, (sx0 + sx1) / 2, cy, s.opacity);
    } else {
      if (has_band(s)) {
        set_rgb(cr, col, kBandAlpha);
        cairo_rectangle(cr, sx0, cy - st.legend_pt * 0.45, sx1 - sx0, st.legend_pt * 0.9);
        cairo_fill(cr);
      }
      cairo_move_to(cr, sx0, cy);
      cairo_line_to(cr, sx1, cy);
      set_rgb(cr, col, s.opacity);
      cairo_set_line_width(cr, st.line_w * s.line_scale);
      set_dash(cr, st, slot(c, i));
      cairo_stroke(cr);
      if (s.markers) draw_marker(cr, st, col, (sx0 + sx1) / 2, cy, s.opacity);
    }
    set_rgb(cr, kText);
    set_font(cr, st.legend_pt);
    draw_text(cr, L.legend[e].text, sx1 + st.legend_pt * 0.6, cy, 0, 0.5);
  }
}

void draw_chart(cairo_t* cr, const LineChart& c) {
  const Style st(c);
  set_font_options(cr);
  const Layout L = make_layout(cr, st, c);
  const Rect& p = L.plot;

  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);

  // Grid at the major ticks (and at each category).
  cairo_set_line_width(cr, st.grid_w);
  set_rgb(cr, kGrid);
  for (const Tick& t : L.ya.major) {
    const double y = snap(L.py(t.v), st.grid_w);
    cairo_move_to(cr, p.x0, y);
    cairo_line_to(cr, p.x1, y);
  }
  if (L.xa.categorical) {
    for (std::size_t i = 0; i < c.x_categories.size(); ++i) {
      const double x = snap(L.px(static_cast<double>(i)), st.grid_w);
      cairo_move_to(cr, x, p.y0);
      cairo_line_to(cr, x, p.y1);
    }
  } else {
    for (const Tick& t : L.xa.major) {
      const double x = snap(L.px(t.v), st.grid_w);
      cairo_move_to(cr, x, p.y0);
      cairo_line_to(cr, x, p.y1);
    }
  }
  cairo_stroke(cr);

  // Data, clipped to the axes.
  cairo_save(cr);
  cairo_rectangle(cr, p.x0, p.y0, p.x1 - p.x0, p.y1 - p.y0);
  cairo_clip(cr);
  draw_bands(cr, st, c, L);
  draw_lines(cr, st, c, L);
  cairo_restore(cr);

  // Frame and ticks.
  set_rgb(cr, kFrame);
  cairo_set_line_width(cr, st.frame_w);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_SQUARE);
  const double fx0 = snap(p.x0, st.frame_w), fx1 = snap(p.x1, st.frame_w);
  const double fy0 = snap(p.y0, st.frame_w), fy1 = snap(p.y1, st.frame_w);
  cairo_rectangle(cr, fx0, fy0, fx1 - fx0, fy1 - fy0);
  cairo_stroke(cr);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  for (const Tick& t : L.ya.major) {
    const double y = snap(L.py(t.v), st.frame_w);
    cairo_move_to(cr, fx0, y);
    cairo_line_to(cr, fx0 - st.tick_len, y);
  }
  std::vector<double> xticks;
  if (L.xa.categorical)
    for (std::size_t i = 0; i < c.x_categories.size(); ++i) xticks.push_back(static_cast<double>(i));
  else
    for (const Tick& t : L.xa.major) xticks.push_back(t.v);
  for (double v : xticks) {
    const double x = snap(L.px(v), st.frame_w);
    cairo_move_to(cr, x, fy1);
    cairo_line_to(cr, x, fy1 + st.tick_len);
  }
  for (double v : L.xa.minor) {
    const double x = snap(L.px(v), st.frame_w);
    cairo_move_to(cr, x, fy1);
    cairo_line_to(cr, x, fy1 + st.minor_len);
  }
  for (double v : L.ya.minor) {
    const double y = snap(L.py(v), st.frame_w);
    cairo_move_to(cr, fx0, y);
    cairo_line_to(cr, fx0 - st.minor_len, y);
  }
  cairo_stroke(cr);

  // Tick labels.
  set_rgb(cr, kText);
  const double ylab_x = fx0 - st.tick_len - st.tick_gap;
  for (const Tick& t : L.ya.major) draw_tick_label(cr, st, t, ylab_x, L.py(t.v), 1, 0.5);
  const double xlab_y = fy1 + st.tick_len + st.tick_gap;
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
    for (const Tick& t : L.xa.major) draw_tick_label(cr, st, t, L.px(t.v), xlab_y + sup_room, 0.5, 0);
  }

  // Axis labels and title.
  const XLabelExtent xe = x_label_extent(cr, st, L);
  set_font(cr, st.label_pt);
  if (!c.x_label.empty()) {
    const std::string text = ellipsize(cr, c.x_label, c.width - 2 * st.pad);
    draw_text(cr, text, (p.x0 + p.x1) / 2, xlab_y + xe.below + st.pad * 0.9, 0.5, 0);
  }
  if (!c.y_label.empty()) {
    const std::string text = ellipsize(cr, c.y_label, c.height - 2 * st.pad);
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
    cx = std::clamp(cx, st.pad + w / 2, c.width - st.pad - w / 2);
    draw_text(cr, L.title, cx, st.pad, 0.5, 0);
  }

  draw_legend(cr, st, c, L);
}

}  // namespace

void render_line_chart(const LineChart& chart, const std::string& png_path, const std::string& svg_path) {
  validate(chart);
  const DrawFunction draw = [&](cairo_t* cr) { draw_chart(cr, chart); };
  if (!png_path.empty()) write_atomically(png_path, render_png_bytes(chart.width, chart.height, draw, png_path));
  if (!svg_path.empty()) write_atomically(svg_path, render_svg_bytes(chart.width, chart.height, draw, svg_path));
}

}  // namespace blocklab
