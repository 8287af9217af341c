// Heatmaps drawn with cairo (see heatmap.h), in the look of matplotlib's imshow + colorbar.
//
// HeatmapLayout: the panels sit in a grid of equal slots. A slot is [row tick labels | axes box |
// per-panel colorbar] wide and [panel title / axes box / column tick labels] high; the axes
// box is as large as the largest panel's axes, and each panel's axes are centred in it.
// Axes keep the aspect ratio of the matrix (or of the background image when there is one):
// a cell is a whole number of pixels whenever the matrix has at most `panel_size` rows and
// columns, so cells are uniform and crisp. The matrix is painted as an image of one pixel
// per cell, scaled up with nearest-neighbour filtering (matplotlib's interpolation="nearest"),
// which keeps the PNG pixels of a cell exactly the colour-map colour and the SVG small; the
// frame is drawn just outside the axes so it covers no cell. One shared colorbar on the
// right, or a small one next to each panel when the panels have their own scales.
//
// Colour scale: vmin/vmax set on panels win (with shared_scale, the lowest vmin and highest
// vmax set on any panel), otherwise the finite data range. When vmin == vmax the range is
// widened symmetrically around the value, so every finite cell gets the colour-map middle
// (viridis(0.5)) and the colorbar is centred on the value. An all-NaN map gets [0, 1].
//
// One drawing function renders both outputs (PNG from an RGB image surface, SVG from an
// SVG surface in points); both are written atomically (cairo_util.h).
#include "analysis/heatmap.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "analysis/cairo_util.h"

namespace blocklab {
namespace {

using namespace cairo_util;

// matplotlib's viridis (_cm_listed.py, _viridis_data), each channel rounded to 8 bits as
// matplotlib.colors.to_hex does.
constexpr std::uint32_t kViridis[256] = {
    0x440154, 0x440256, 0x450457, 0x450559, 0x46075A, 0x46085C, 0x460A5D, 0x460B5E,
    0x470D60, 0x470E61, 0x471063, 0x471164, 0x471365, 0x481467, 0x481668, 0x481769,
    0x48186A, 0x481A6C, 0x481B6D, 0x481C6E, 0x481D6F, 0x481F70, 0x482071, 0x482173,
    0x482374, 0x482475, 0x482576, 0x482677, 0x482878, 0x482979, 0x472A7A, 0x472C7A,
    0x472D7B, 0x472E7C, 0x472F7D, 0x46307E, 0x46327E, 0x46337F, 0x463480, 0x453581,
    0x453781, 0x453882, 0x443983, 0x443A83, 0x443B84, 0x433D84, 0x433E85, 0x423F85,
    0x424086, 0x424186, 0x414287, 0x414487, 0x404588, 0x404688, 0x3F4788, 0x3F4889,
    0x3E4989, 0x3E4A89, 0x3E4C8A, 0x3D4D8A, 0x3D4E8A, 0x3C4F8A, 0x3C508B, 0x3B518B,
    0x3B528B, 0x3A538B, 0x3A548C, 0x39558C, 0x39568C, 0x38588C, 0x38598C, 0x375A8C,
    0x375B8D, 0x365C8D, 0x365D8D, 0x355E8D, 0x355F8D, 0x34608D, 0x34618D, 0x33628D,
    0x33638D, 0x32648E, 0x32658E, 0x31668E, 0x31678E, 0x31688E, 0x30698E, 0x306A8E,
    0x2F6B8E, 0x2F6C8E, 0x2E6D8E, 0x2E6E8E, 0x2E6F8E, 0x2D708E, 0x2D718E, 0x2C718E,
    0x2C728E, 0x2C738E, 0x2B748E, 0x2B758E, 0x2A768E, 0x2A778E, 0x2A788E, 0x29798E,
    0x297A8E, 0x297B8E, 0x287C8E, 0x287D8E, 0x277E8E, 0x277F8E, 0x27808E, 0x26818E,
    0x26828E, 0x26828E, 0x25838E, 0x25848E, 0x25858E, 0x24868E, 0x24878E, 0x23888E,
    0x23898E, 0x238A8D, 0x228B8D, 0x228C8D, 0x228D8D, 0x218E8D, 0x218F8D, 0x21908D,
    0x21918C, 0x20928C, 0x20928C, 0x20938C, 0x1F948C, 0x1F958B, 0x1F968B, 0x1F978B,
    0x1F988B, 0x1F998A, 0x1F9A8A, 0x1E9B8A, 0x1E9C89, 0x1E9D89, 0x1F9E89, 0x1F9F88,
    0x1FA088, 0x1FA188, 0x1FA187, 0x1FA287, 0x20A386, 0x20A486, 0x21A585, 0x21A685,
    0x22A785, 0x22A884, 0x23A983, 0x24AA83, 0x25AB82, 0x25AC82, 0x26AD81, 0x27AD81,
    0x28AE80, 0x29AF7F, 0x2AB07F, 0x2CB17E, 0x2DB27D, 0x2EB37C, 0x2FB47C, 0x31B57B,
    0x32B67A, 0x34B679, 0x35B779, 0x37B878, 0x38B977, 0x3ABA76, 0x3BBB75, 0x3DBC74,
    0x3FBC73, 0x40BD72, 0x42BE71, 0x44BF70, 0x46C06F, 0x48C16E, 0x4AC16D, 0x4CC26C,
    0x4EC36B, 0x50C46A, 0x52C569, 0x54C568, 0x56C667, 0x58C765, 0x5AC864, 0x5CC863,
    0x5EC962, 0x60CA60, 0x63CB5F, 0x65CB5E, 0x67CC5C, 0x69CD5B, 0x6CCD5A, 0x6ECE58,
    0x70CF57, 0x73D056, 0x75D054, 0x77D153, 0x7AD151, 0x7CD250, 0x7FD34E, 0x81D34D,
    0x84D44B, 0x86D549, 0x89D548, 0x8BD646, 0x8ED645, 0x90D743, 0x93D741, 0x95D840,
    0x98D83E, 0x9BD93C, 0x9DD93B, 0xA0DA39, 0xA2DA37, 0xA5DB36, 0xA8DB34, 0xAADC32,
    0xADDC30, 0xB0DD2F, 0xB2DD2D, 0xB5DE2B, 0xB8DE29, 0xBADE28, 0xBDDF26, 0xC0DF25,
    0xC2DF23, 0xC5E021, 0xC8E020, 0xCAE11F, 0xCDE11D, 0xD0E11C, 0xD2E21B, 0xD5E21A,
    0xD8E219, 0xDAE319, 0xDDE318, 0xDFE318, 0xE2E418, 0xE5E419, 0xE7E419, 0xEAE51A,
    0xECE51B, 0xEFE51C, 0xF1E51D, 0xF4E61E, 0xF6E620, 0xF8E621, 0xFBE723, 0xFDE725,
};

constexpr std::uint32_t kTextHex = 0x222222;
constexpr std::uint32_t kFrameHex = 0x333333;
constexpr std::uint32_t kNanHex = 0xDDDDDD;  // cells without a value
constexpr int kMaxPixels = 32767;            // cairo's largest image side

int viridis_index(double t) {
  if (t >= 1) return 255;
  if (t > 0) return std::min(255, static_cast<int>(t * 256));  // matplotlib: floor(t * N)
  return 0;  // t <= 0 or NaN
}

void set_hex(cairo_t* cr, std::uint32_t hex, double alpha = 1.0) {
  cairo_set_source_rgba(cr, ((hex >> 16) & 0xff) / 255.0, ((hex >> 8) & 0xff) / 255.0, (hex & 0xff) / 255.0, alpha);
}

// Text on a cell: dark on light colours, white on dark ones (seaborn's rule: relative
// luminance of the linearised sRGB colour above 0.408 is "light").
bool is_light(std::uint32_t hex) {
  auto lin = [](std::uint32_t c) {
    const double v = c / 255.0;
    return v <= 0.03928 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
  };
  const double l = 0.2126 * lin((hex >> 16) & 0xff) + 0.7152 * lin((hex >> 8) & 0xff) + 0.0722 * lin(hex & 0xff);
  return l > 0.408;
}

// ---------------------------------------------------------------------------------------
// Input

[[noreturn]] void bad_panel(std::size_t i, const Heatmap& p, const std::string& what) {
  std::string name = "panel " + std::to_string(i);
  if (!p.title.empty()) name += " ('" + p.title + "')";
  throw std::invalid_argument("heatmap: " + name + ": " + what);
}

void validate(const HeatmapFigure& f) {
  if (f.panels.empty()) throw std::invalid_argument("heatmap: the figure has no panels");
  if (f.panel_size < 32 || f.panel_size > 4096)
    throw std::invalid_argument("heatmap: panel_size " + std::to_string(f.panel_size) + " is outside 32..4096");
  if (f.columns < 0) throw std::invalid_argument("heatmap: columns " + std::to_string(f.columns) + " is negative");
  for (std::size_t i = 0; i < f.panels.size(); ++i) {
    const Heatmap& p = f.panels[i];
    if (p.rows < 1 || p.cols < 1 || p.rows > kMaxPixels || p.cols > kMaxPixels)
      bad_panel(i, p, "matrix size " + std::to_string(p.rows) + "x" + std::to_string(p.cols) + " is outside 1..32767");
    const std::size_t n = static_cast<std::size_t>(p.rows) * static_cast<std::size_t>(p.cols);
    if (p.values.size() != n)
      bad_panel(i, p, std::to_string(p.values.size()) + " values for a " + std::to_string(p.rows) + "x" +
                          std::to_string(p.cols) + " matrix (expected " + std::to_string(n) + ")");
    if (!p.row_labels.empty() && p.row_labels.size() != static_cast<std::size_t>(p.rows))
      bad_panel(i, p, std::to_string(p.row_labels.size()) + " row labels for " + std::to_string(p.rows) + " rows");
    if (!p.col_labels.empty() && p.col_labels.size() != static_cast<std::size_t>(p.cols))
      bad_panel(i, p, std::to_string(p.col_labels.size()) + " column labels for " + std::to_string(p.cols) + " columns");
    if (!p.image.empty() || p.image_h != 0 || p.image_w != 0) {
      if (p.image_h < 1 || p.image_w < 1 || p.image_h > kMaxPixels || p.image_w > kMaxPixels)
        bad_panel(i, p, "image size " + std::to_string(p.image_h) + "x" + std::to_string(p.image_w) +
                            " is outside 1..32767");
      const std::size_t m = static_cast<std::size_t>(p.image_h) * static_cast<std::size_t>(p.image_w);
      if (p.image.size() != m)
        bad_panel(i, p, std::to_string(p.image.size()) + " image values for a " + std::to_string(p.image_h) + "x" +
                            std::to_string(p.image_w) + " image (expected " + std::to_string(m) + ")");
    }
    if (!(p.alpha >= 0 && p.alpha <= 1)) bad_panel(i, p, "alpha " + num(p.alpha) + " is not in [0, 1]");
    if (std::isinf(p.vmin) || std::isinf(p.vmax)) bad_panel(i, p, "vmin/vmax must be finite or NaN");
    if (p.vmin > p.vmax) bad_panel(i, p, "vmin " + num(p.vmin) + " is above vmax " + num(p.vmax));
  }
}

// ---------------------------------------------------------------------------------------
// Colour scale

struct Scale {
  double lo = 0, hi = 1;
  double t(double v) const { return (v - lo) / (hi - lo); }
};

Scale make_scale(const std::vector<const Heatmap*>& panels) {
  double set_lo = INFINITY, set_hi = -INFINITY, data_lo = INFINITY, data_hi = -INFINITY;
  for (const Heatmap* p : panels) {
    if (std::isfinite(p->vmin)) set_lo = std::min(set_lo, p->vmin);
    if (std::isfinite(p->vmax)) set_hi = std::max(set_hi, p->vmax);
    for (double v : p->values)
      if (std::isfinite(v)) data_lo = std::min(data_lo, v), data_hi = std::max(data_hi, v);
  }
  const bool fixed_lo = std::isfinite(set_lo), fixed_hi = std::isfinite(set_hi);
  Scale s;
  s.lo = fixed_lo ? set_lo : data_lo;
  s.hi = fixed_hi ? set_hi : data_hi;
  if (!std::isfinite(s.lo) && !std::isfinite(s.hi)) return Scale{0, 1};
  if (!std::isfinite(s.lo)) s.lo = s.hi;
  if (!std::isfinite(s.hi)) s.hi = s.lo;
  if (s.lo > s.hi) {  // a set bound beyond every value: keep the set one
    if (fixed_lo)
      s.hi = s.lo;
    else
      s.lo = s.hi;
  }
  if (s.hi - s.lo <= 1e-12 * std::max(1.0, std::abs(s.lo))) {
    const double d = s.lo == 0 ? 0.5 : std::abs(s.lo) * 0.1;
    s.lo -= d, s.hi += d;
  }
  return s;
}

std::uint32_t cell_colour(const Scale& s, double v) {
  return std::isnan(v) ? kNanHex : kViridis[viridis_index(s.t(v))];
}

// ---------------------------------------------------------------------------------------
// HeatmapLayout

// Sizes in pixels for 220-pixel panels; text scales with the panel size.
struct HeatmapStyle {
  double title_pt, panel_title_pt, label_pt, tick_pt, pad, tick_len, tick_gap;
  int frame_w, cbar_w, panel_cbar_w;

  explicit HeatmapStyle(const HeatmapFigure& f) {
    const double fs = std::clamp(f.panel_size / 220.0, 0.75, 3.0);
    title_pt = 16 * fs;
    panel_title_pt = 12.5 * fs;
    label_pt = 11 * fs;
    tick_pt = 9.5 * fs;
    pad = 10 * fs;
    tick_len = 3.5 * fs;
    tick_gap = 2.5 * fs;
    frame_w = std::max(1, static_cast<int>(std::lround(fs)));
    cbar_w = static_cast<int>(std::lround(std::clamp(0.055 * f.panel_size, 8.0, 40.0)));
    panel_cbar_w = static_cast<int>(std::lround(std::clamp(0.045 * f.panel_size, 6.0, 30.0)));
  }
};

struct Box {
  double x = 0, y = 0, w = 0, h = 0;
  double x1() const { return x + w; }
  double y1() const { return y + h; }
};

// The tick labels along one side of a panel: which indices are labelled (every n-th when
// crowded), their (shortened) texts, whether they are rotated to vertical, and how far they
// reach away from the axes.
struct AxisLabels {
  std::vector<int> shown;
  std::vector<std::string> text;  // parallel to shown
  bool vertical = false;
  double extent = 0;
  double reach(const HeatmapStyle& st) const { return shown.empty() ? 0 : st.tick_len + st.tick_gap + extent; }
};

struct CbarTick {
  double v;
  std::string text;
};

struct Colorbar {
  Box bar;  // w == 0: none
  Scale scale;
  std::vector<CbarTick> ticks;
  double labels_w = 0;
};

struct PanelLayout {
  Box axes;
  int grid_h = 0, grid_w = 0;  // the pixel grid of the axes: the image's, else the matrix's
  Scale scale;
  AxisLabels rows, cols;
  std::string title;
  double annot_pt = 0;  // 0: no annotations
  int annot_decimals = 0;
  Colorbar cbar;  // per-panel colorbar
};

struct HeatmapLayout {
  int width = 0, height = 0;
  std::string title;
  double title_pt = 0;
  std::vector<PanelLayout> panels;
  Colorbar cbar;  // shared colorbar
};

std::vector<CbarTick> colorbar_ticks(const Scale& s, double length, const HeatmapStyle& st) {
  const double target = std::clamp(length / (st.tick_pt * 3.5), 1.0, 8.0);
  const double step = nice_step(s.hi - s.lo, target);
  std::vector<CbarTick> ticks;
  const double k0 = std::ceil(s.lo / step - 1e-9), k1 = std::floor(s.hi / step + 1e-9);
  for (double k = k0; k <= k1 && ticks.size() < 100; k += 1) ticks.push_back({k * step, format_tick(k * step, step)});
  return ticks;
}

// Width right of the bar: ticks, their labels and the rotated colorbar label.
double colorbar_reach(cairo_t* cr, const HeatmapStyle& st, Colorbar& cb, const std::string& label) {
  set_font(cr, st.tick_pt);
  cb.labels_w = 0;
  for (const CbarTick& t : cb.ticks) cb.labels_w = std::max(cb.labels_w, text_width(cr, t.text));
  double reach = st.tick_len + st.tick_gap + cb.labels_w;
  if (!label.empty()) {
    set_font(cr, st.label_pt);
    reach += st.pad * 0.7 + font_box(cr).height();
  }
  return reach;
}

AxisLabels row_labels(cairo_t* cr, const HeatmapStyle& st, const Heatmap& p, double cell_h, double max_w) {
  AxisLabels a;
  if (p.row_labels.empty()) return a;
  set_font(cr, st.tick_pt);
  const int every = std::max(1, static_cast<int>(std::ceil(font_box(cr).height() * 1.3 / cell_h)));
  for (int i = 0; i < p.rows; i += every) {
    a.shown.push_back(i);
    a.text.push_back(ellipsize(cr, p.row_labels[static_cast<std::size_t>(i)], max_w));
    a.extent = std::max(a.extent, text_width(cr, a.text.back()));
  }
  return a;
}

// Horizontal labels unless rotating them to vertical keeps more of them.
AxisLabels col_labels(cairo_t* cr, const HeatmapStyle& st, const Heatmap& p, double cell_w, double max_w) {
  AxisLabels a;
  if (p.col_labels.empty()) return a;
  set_font(cr, st.tick_pt);
  const double h = font_box(cr).height();
  std::vector<std::string> texts;
  double widest = 0;
  for (const std::string& t : p.col_labels) {
    texts.push_back(ellipsize(cr, t, max_w));
    widest = std::max(widest, text_width(cr, texts.back()));
  }
  const int every_h = std::max(1, static_cast<int>(std::ceil((widest + st.tick_pt * 0.6) / cell_w)));
  const int every_v = std::max(1, static_cast<int>(std::ceil(h * 1.3 / cell_w)));
  a.vertical = every_h > every_v;
  const int every = a.vertical ? every_v : every_h;
  for (int i = 0; i < p.cols; i += every) {
    a.shown.push_back(i);
    a.text.push_back(texts[static_cast<std::size_t>(i)]);
    a.extent = std::max(a.extent, a.vertical ? text_width(cr, a.text.back()) : h);
  }
  return a;
}

std::string annotation(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);  // no "-0.00"
  return with_minus(s);
}

// Font size and decimals for the cell values: about two significant digits for the largest
// value (none for whole numbers), as large as the cell allows up to the tick size; fewer
// decimals when the text does not fit, no annotations when even that is too small to read.
void fit_annotations(cairo_t* cr, const HeatmapStyle& st, const Heatmap& p, PanelLayout& P) {
  P.annot_pt = 0;
  if (!p.annotate) return;
  const double cw = P.axes.w / p.cols, ch = P.axes.h / p.rows;
  double maxabs = 0;
  bool whole = true;
  for (double v : p.values)
    if (std::isfinite(v)) maxabs = std::max(maxabs, std::abs(v)), whole = whole && v == std::round(v);
  int decimals = 0;
  if (!(whole && maxabs < 1e6) && maxabs > 0)
    decimals = std::clamp(1 - static_cast<int>(std::floor(std::log10(maxabs))), 0, 3);
  const double min_pt = 6;
  for (int d = decimals; d >= 0; --d) {
    set_font(cr, st.tick_pt);
    double widest = 0;
    for (double v : p.values)
      if (std::isfinite(v)) widest = std::max(widest, text_width(cr, annotation(v, d)));
    double pt = std::min(st.tick_pt, 0.5 * ch);
    if (widest > 0) pt = std::min(pt, st.tick_pt * 0.85 * cw / widest);
    if (pt >= min_pt) {
      P.annot_pt = pt, P.annot_decimals = d;
      return;
    }
  }
}

HeatmapLayout make_layout(cairo_t* cr, const HeatmapFigure& f) {
  const HeatmapStyle st(f);
  HeatmapLayout L;
  const std::size_t n = f.panels.size();
  L.panels.resize(n);
  const double label_max_w = 0.35 * f.panel_size;

  // Colour scales.
  const bool with_cbar = f.colorbar;
  if (f.shared_scale) {
    std::vector<const Heatmap*> all;
    for (const Heatmap& p : f.panels) all.push_back(&p);
    L.cbar.scale = make_scale(all);
    for (PanelLayout& P : L.panels) P.scale = L.cbar.scale;
  } else {
    for (std::size_t i = 0; i < n; ++i) L.panels[i].scale = make_scale({&f.panels[i]});
  }

  // Axes sizes and the space around them.
  double box_w = 0, box_h = 0, left_w = 0, bottom_h = 0, right_w = 0;
  bool any_title = false;
  set_font(cr, st.label_pt);
  const double label_h = font_box(cr).height();
  for (std::size_t i = 0; i < n; ++i) {
    const Heatmap& p = f.panels[i];
    PanelLayout& P = L.panels[i];
    P.grid_h = p.image.empty() ? p.rows : p.image_h;
    P.grid_w = p.image.empty() ? p.cols : p.image_w;
    const double unit = static_cast<double>(f.panel_size) / std::max(P.grid_h, P.grid_w);
    if (unit >= 1) {
      P.axes.w = std::floor(unit) * P.grid_w, P.axes.h = std::floor(unit) * P.grid_h;
    } else {
      P.axes.w = std::max(1.0, std::round(unit * P.grid_w)), P.axes.h = std::max(1.0, std::round(unit * P.grid_h));
    }
    box_w = std::max(box_w, P.axes.w), box_h = std::max(box_h, P.axes.h);
    P.rows = row_labels(cr, st, p, P.axes.h / p.rows, label_max_w);
    P.cols = col_labels(cr, st, p, P.axes.w / p.cols, label_max_w);
    left_w = std::max(left_w, P.rows.reach(st) + (p.y_label.empty() ? 0 : st.pad * 0.6 + label_h));
    bottom_h = std::max(bottom_h, P.cols.reach(st) + (p.x_label.empty() ? 0 : st.pad * 0.6 + label_h));
    any_title = any_title || !p.title.empty();
    fit_annotations(cr, st, p, P);
    if (with_cbar && !f.shared_scale && p.colorbar) {
      P.cbar.scale = P.scale;
      P.cbar.ticks = colorbar_ticks(P.scale, P.axes.h, st);
      right_w = std::max(right_w, std::round(st.pad * 0.8) + st.panel_cbar_w +
                                      colorbar_reach(cr, st, P.cbar, f.colorbar_label));
    }
  }
  set_font(cr, st.panel_title_pt);
  const double top_h = std::ceil(any_title ? font_box(cr).height() + st.pad * 0.8 : 0);
  left_w = std::ceil(left_w), bottom_h = std::ceil(bottom_h), right_w = std::ceil(right_w);
  const double slot_w = left_w + box_w + right_w, slot_h = top_h + box_h + bottom_h;
  const double hgap = std::round(st.pad * 2), vgap = std::round(st.pad * 1.6);

  const int ncol = f.columns > 0 ? std::min<int>(f.columns, static_cast<int>(n))
                                 : static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n)) - 1e-9));
  const int nrow = static_cast<int>((n + ncol - 1) / ncol);
  const double grid_x0 = std::round(st.pad * 1.2);
  const double grid_w = ncol * slot_w + (ncol - 1) * hgap;
  double width = grid_x0 + grid_w + std::round(st.pad * 1.2);
  if (with_cbar && f.shared_scale) {
    const double span = nrow * slot_h + (nrow - 1) * vgap - top_h - bottom_h;
    L.cbar.ticks = colorbar_ticks(L.cbar.scale, span, st);
    const double reach = colorbar_reach(cr, st, L.cbar, f.colorbar_label);
    L.cbar.bar = {grid_x0 + grid_w + std::round(st.pad * 1.5), 0, static_cast<double>(st.cbar_w), span};
    width = L.cbar.bar.x1() + std::ceil(reach) + std::round(st.pad * 1.2);
  }

  // Figure title: shrunk to fit the width, then shortened.
  double grid_y0 = std::round(st.pad * 1.2);
  if (!f.title.empty()) {
    L.title_pt = st.title_pt;
    L.title = fit_title(cr, f.title, L.title_pt, width - 2 * st.pad);
    grid_y0 = std::round(st.pad + font_box(cr).height() + st.pad * 1.4);
  }

  for (std::size_t i = 0; i < n; ++i) {
    const Heatmap& p = f.panels[i];
    PanelLayout& P = L.panels[i];
    const double sx = grid_x0 + static_cast<double>(i % ncol) * (slot_w + hgap);
    const double sy = grid_y0 + static_cast<double>(i / ncol) * (slot_h + vgap);
    P.axes.x = sx + left_w + std::floor((box_w - P.axes.w) / 2);
    P.axes.y = sy + top_h + std::floor((box_h - P.axes.h) / 2);
    set_font(cr, st.panel_title_pt);
    P.title = ellipsize(cr, p.title, slot_w);
    if (with_cbar && !f.shared_scale)
      P.cbar.bar = {P.axes.x1() + std::round(st.pad * 0.8), P.axes.y, static_cast<double>(st.panel_cbar_w), P.axes.h};
  }
  L.cbar.bar.y = grid_y0 + top_h;
  const double height = grid_y0 + nrow * slot_h + (nrow - 1) * vgap + std::round(st.pad * 1.2);
  if (width > kMaxPixels || height > kMaxPixels)
    throw std::invalid_argument("heatmap: the figure would be " + num(width) + "x" + num(height) +
                                " pixels (at most 32767 per side); use a smaller panel_size or fewer panels");
  L.width = static_cast<int>(width), L.height = static_cast<int>(height);
  return L;
}

// Measures text the way the PNG does, on a scratch image surface.
HeatmapLayout layout_for_png(const HeatmapFigure& f) {
  Surface surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1));
  Context cr(cairo_create(surface.get()));
  set_font_options(cr.get());
  return make_layout(cr.get(), f);
}

// ---------------------------------------------------------------------------------------
// Drawing

// An image of w x h pixels with the given 0xRRGGBB colours (row-major).
Surface rgb_image(int w, int h, const std::vector<std::uint32_t>& px) {
  Surface s(cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h));
  if (cairo_surface_status(s.get()) != CAIRO_STATUS_SUCCESS)
    throw std::runtime_error(std::string("heatmap: cannot create an image: ") +
                             cairo_status_to_string(cairo_surface_status(s.get())));
  cairo_surface_flush(s.get());
  unsigned char* data = cairo_image_surface_get_data(s.get());
  const int stride = cairo_image_surface_get_stride(s.get());
  for (int y = 0; y < h; ++y) {
    auto* row = reinterpret_cast<std::uint32_t*>(data + static_cast<std::ptrdiff_t>(y) * stride);
    std::copy_n(px.begin() + static_cast<std::ptrdiff_t>(y) * w, w, row);
  }
  cairo_surface_mark_dirty(s.get());
  return s;
}

// Paints `image` stretched over `b`: each source pixel a sharp rectangle when enlarged,
// averaged (no aliasing) when the image has more pixels than the box, unless `sharp`.
void paint_image(cairo_t* cr, cairo_surface_t* image, const Box& b, double alpha, bool sharp = false) {
  const int w = cairo_image_surface_get_width(image), h = cairo_image_surface_get_height(image);
  const double sx = b.w / w, sy = b.h / h;
  cairo_save(cr);
  cairo_rectangle(cr, b.x, b.y, b.w, b.h);
  cairo_clip(cr);
  cairo_translate(cr, b.x, b.y);
  cairo_scale(cr, sx, sy);
  cairo_set_source_surface(cr, image, 0, 0);
  cairo_pattern_set_filter(cairo_get_source(cr), sharp || (sx >= 1 && sy >= 1) ? CAIRO_FILTER_NEAREST : CAIRO_FILTER_GOOD);
  cairo_paint_with_alpha(cr, alpha);
  cairo_restore(cr);
}

// A frame of the given width just outside `b`.
void draw_frame(cairo_t* cr, const HeatmapStyle& st, const Box& b) {
  const double o = st.frame_w / 2.0;
  cairo_rectangle(cr, b.x - o, b.y - o, b.w + 2 * o, b.h + 2 * o);
  set_hex(cr, kFrameHex);
  cairo_set_line_width(cr, st.frame_w);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_MITER);
  cairo_stroke(cr);
}

void draw_colorbar(cairo_t* cr, const HeatmapStyle& st, const Colorbar& cb, const std::string& label) {
  const Box& b = cb.bar;
  std::vector<std::uint32_t> px(256);
  for (int j = 0; j < 256; ++j) px[static_cast<std::size_t>(j)] = kViridis[255 - j];  // top: vmax
  const Surface gradient = rgb_image(1, 256, px);
  paint_image(cr, gradient.get(), b, 1.0, true);  // 256 bands, as matplotlib draws them
  draw_frame(cr, st, b);
  const double x = b.x1() + st.frame_w;
  set_hex(cr, kFrameHex);
  cairo_set_line_width(cr, st.frame_w);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  for (const CbarTick& t : cb.ticks) {
    const double y = snap(b.y1() - cb.scale.t(t.v) * b.h, st.frame_w);
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + st.tick_len, y);
  }
  cairo_stroke(cr);
  set_hex(cr, kTextHex);
  set_font(cr, st.tick_pt);
  for (const CbarTick& t : cb.ticks)
    draw_text(cr, t.text, x + st.tick_len + st.tick_gap, b.y1() - cb.scale.t(t.v) * b.h, 0, 0.5);
  if (!label.empty()) {
    set_font(cr, st.label_pt);
    cairo_save(cr);
    cairo_translate(cr, x + st.tick_len + st.tick_gap + cb.labels_w + st.pad * 0.7, b.y + b.h / 2);
    cairo_rotate(cr, -M_PI / 2);
    draw_text(cr, ellipsize(cr, label, std::max(b.h, 4 * st.label_pt)), 0, 0, 0.5, 0);
    cairo_restore(cr);
  }
}

void draw_axis_labels(cairo_t* cr, const HeatmapStyle& st, const Heatmap& p, const PanelLayout& P) {
  const Box& a = P.axes;
  const double cw = a.w / p.cols, ch = a.h / p.rows, o = st.frame_w;
  set_hex(cr, kFrameHex);
  cairo_set_line_width(cr, st.frame_w);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  for (int i : P.rows.shown) {
    const double y = snap(a.y + (i + 0.5) * ch, st.frame_w);
    cairo_move_to(cr, a.x - o, y);
    cairo_line_to(cr, a.x - o - st.tick_len, y);
  }
  for (int j : P.cols.shown) {
    const double x = snap(a.x + (j + 0.5) * cw, st.frame_w);
    cairo_move_to(cr, x, a.y1() + o);
    cairo_line_to(cr, x, a.y1() + o + st.tick_len);
  }
  cairo_stroke(cr);

  set_hex(cr, kTextHex);
  set_font(cr, st.tick_pt);
  const double lx = a.x - o - st.tick_len - st.tick_gap, ly = a.y1() + o + st.tick_len + st.tick_gap;
  for (std::size_t k = 0; k < P.rows.shown.size(); ++k)
    draw_text(cr, P.rows.text[k], lx, a.y + (P.rows.shown[k] + 0.5) * ch, 1, 0.5);
  for (std::size_t k = 0; k < P.cols.shown.size(); ++k) {
    const double x = a.x + (P.cols.shown[k] + 0.5) * cw;
    if (!P.cols.vertical) {
      draw_text(cr, P.cols.text[k], x, ly, 0.5, 0);
      continue;
    }
    cairo_save(cr);  // reading upwards, ending at the tick
    cairo_translate(cr, x, ly);
    cairo_rotate(cr, -M_PI / 2);
    draw_text(cr, P.cols.text[k], 0, 0, 1, 0.5);
    cairo_restore(cr);
  }

  set_font(cr, st.label_pt);
  if (!p.x_label.empty()) {
    const double y = a.y1() + o + (P.cols.shown.empty() ? 0 : P.cols.reach(st)) + st.pad * 0.6;
    draw_text(cr, ellipsize(cr, p.x_label, a.w + 2 * st.pad), a.x + a.w / 2, y, 0.5, 0);
  }
  if (!p.y_label.empty()) {
    const double x = a.x - o - (P.rows.shown.empty() ? 0 : P.rows.reach(st)) - st.pad * 0.6 - font_box(cr).height();
    cairo_save(cr);
    cairo_translate(cr, x, a.y + a.h / 2);
    cairo_rotate(cr, -M_PI / 2);
    draw_text(cr, ellipsize(cr, p.y_label, std::max(a.h, 4 * st.label_pt)), 0, 0, 0.5, 0);
    cairo_restore(cr);
  }
}

void draw_annotations(cairo_t* cr, const Heatmap& p, const PanelLayout& P) {
  if (P.annot_pt <= 0) return;
  const Box& a = P.axes;
  const double cw = a.w / p.cols, ch = a.h / p.rows;
  set_font(cr, P.annot_pt);
  for (int r = 0; r < p.rows; ++r)
    for (int c = 0; c < p.cols; ++c) {
      const double v = p.values[static_cast<std::size_t>(r) * p.cols + c];
      if (!std::isfinite(v)) continue;
      set_hex(cr, is_light(cell_colour(P.scale, v)) ? 0x000000 : 0xFFFFFF);
      draw_text(cr, annotation(v, P.annot_decimals), a.x + (c + 0.5) * cw, a.y + (r + 0.5) * ch, 0.5, 0.5);
    }
}

void draw_panel(cairo_t* cr, const HeatmapStyle& st, const HeatmapFigure& f, std::size_t i, const HeatmapLayout& L) {
  const Heatmap& p = f.panels[i];
  const PanelLayout& P = L.panels[i];
  if (!p.image.empty()) {
    std::vector<std::uint32_t> grey(p.image.size());
    for (std::size_t k = 0; k < grey.size(); ++k) {
      const double v = std::isfinite(p.image[k]) ? std::clamp(p.image[k], 0.0, 1.0) : 0.0;
      const auto g = static_cast<std::uint32_t>(std::lround(v * 255));
      grey[k] = g << 16 | g << 8 | g;
    }
    paint_image(cr, rgb_image(p.image_w, p.image_h, grey).get(), P.axes, 1.0);
  }
  std::vector<std::uint32_t> cells(p.values.size());
  for (std::size_t k = 0; k < cells.size(); ++k) cells[k] = cell_colour(P.scale, p.values[k]);
  paint_image(cr, rgb_image(p.cols, p.rows, cells).get(), P.axes, p.image.empty() ? 1.0 : p.alpha);
  draw_annotations(cr, p, P);
  draw_frame(cr, st, P.axes);
  draw_axis_labels(cr, st, p, P);
  if (!P.title.empty()) {
    set_hex(cr, kTextHex);
    set_font(cr, st.panel_title_pt);
    draw_text(cr, P.title, P.axes.x + P.axes.w / 2, P.axes.y - st.frame_w - st.pad * 0.8, 0.5, 1);
  }
  if (P.cbar.bar.w > 0) draw_colorbar(cr, st, P.cbar, f.colorbar_label);
}

void draw_figure(cairo_t* cr, const HeatmapFigure& f) {
  set_font_options(cr);
  const HeatmapStyle st(f);
  const HeatmapLayout L = make_layout(cr, f);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  for (std::size_t i = 0; i < f.panels.size(); ++i) draw_panel(cr, st, f, i, L);
  if (L.cbar.bar.w > 0) draw_colorbar(cr, st, L.cbar, f.colorbar_label);
  if (!L.title.empty()) {
    set_hex(cr, kTextHex);
    set_font(cr, L.title_pt, true);
    draw_text(cr, L.title, L.width / 2.0, st.pad, 0.5, 0);
  }
}

// cairo's SVG leaves the smoothing of scaled images to the viewer, which would blur a 7x7
// map into a blob; ask for sharp pixels as in the PNG (CSS "pixelated" for browsers, the
// SVG 1.1 "optimizeSpeed" for the others).
std::string pixelated(const std::string& svg) {
  static const std::string kTag = "<image ";
  static const std::string kStyle =
      "<image image-rendering=\"optimizeSpeed\" style=\"image-rendering:optimizeSpeed;image-rendering:pixelated\" ";
  std::string out;
  std::size_t i = 0;
  for (std::size_t at; (at = svg.find(kTag, i)) != std::string::npos; i = at + kTag.size()) out.append(svg, i, at - i) += kStyle;
  return out.append(svg, i, std::string::npos);
}

}  // namespace

Rgb viridis(double t) {
  const std::uint32_t c = kViridis[viridis_index(t)];
  return {static_cast<std::uint8_t>(c >> 16), static_cast<std::uint8_t>(c >> 8), static_cast<std::uint8_t>(c)};
}

void render_heatmaps(const HeatmapFigure& figure, const std::string& png_path, const std::string& svg_path) {
  validate(figure);
  const HeatmapLayout L = layout_for_png(figure);
  const DrawFunction draw = [&](cairo_t* cr) { draw_figure(cr, figure); };
  if (!png_path.empty()) write_atomically(png_path, render_png_bytes(L.width, L.height, draw, png_path));
  if (!svg_path.empty()) write_atomically(svg_path, pixelated(render_svg_bytes(L.width, L.height, draw, svg_path)));
}

PixelRect heatmap_cell_rect(const HeatmapFigure& figure, int panel, int row, int col) {
  validate(figure);
  if (panel < 0 || static_cast<std::size_t>(panel) >= figure.panels.size())
    throw std::out_of_range("heatmap_cell_rect: panel " + std::to_string(panel) + " of " +
                            std::to_string(figure.panels.size()));
  const Heatmap& p = figure.panels[static_cast<std::size_t>(panel)];
  if (row < 0 || row >= p.rows || col < 0 || col >= p.cols)
    throw std::out_of_range("heatmap_cell_rect: cell (" + std::to_string(row) + ", " + std::to_string(col) +
                            ") of a " + std::to_string(p.rows) + "x" + std::to_string(p.cols) + " matrix");
  const HeatmapLayout L = layout_for_png(figure);
  const Box& a = L.panels[static_cast<std::size_t>(panel)].axes;
  const double cw = a.w / p.cols, ch = a.h / p.rows;
  return {a.x + col * cw, a.y + row * ch, cw, ch};
}

}  // namespace blocklab
