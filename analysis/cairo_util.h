// Internal helpers shared by the cairo renderers (plot.cpp: line charts, heatmap.cpp:
// heatmaps): text with cairo's toy API in DejaVu Sans, tick numbers, and the output path
// (render to PNG / SVG bytes in memory, deterministic SVG ids, atomic file writes).
#pragma once

#include <cairo.h>

#include <functional>
#include <memory>
#include <string>

namespace blocklab::cairo_util {

inline constexpr const char* kFont = "DejaVu Sans";
inline constexpr const char* kMinus = "\xE2\x88\x92";     // U+2212, as matplotlib writes negative numbers
inline constexpr const char* kEllipsis = "\xE2\x80\xA6";  // U+2026

// Grey-scale text antialiasing without hinted metrics, so that text measures the same on
// every surface (PNG and SVG lay out identically).
void set_font_options(cairo_t* cr);

// Moves a coordinate to a pixel centre so that odd-width lines come out crisp in the PNG.
double snap(double v, double width);

// ---- Text (cairo's toy text API)

void set_font(cairo_t* cr, double size, bool bold = false);
double text_width(cairo_t* cr, const std::string& text);

struct FontBox {
  double ascent, descent;
  double height() const { return ascent + descent; }
};
// The cap height of "0" (the visual top of digits and capitals) and a short descent.
FontBox font_box(cairo_t* cr);

// Draws `text` with its horizontal anchor at `ha` (0 left, 0.5 centre, 1 right) and its
// vertical anchor at `va` (0 top, 0.5 middle, 1 bottom of the cap-height box).
void draw_text(cairo_t* cr, const std::string& text, double x, double y, double ha, double va);

// Returns the longest prefix of `text` (on a UTF-8 boundary) plus an ellipsis that fits.
std::string ellipsize(cairo_t* cr, const std::string& text, double max_w);
// A bold title that fits `max_w`: shrunk from `pt` down to 65 % of it, then ellipsized.
// Leaves that font set; `pt` becomes the size used.
std::string fit_title(cairo_t* cr, const std::string& title, double& pt, double max_w);

// ---- Numbers and ticks

// A leading '-' replaced by U+2212.
std::string with_minus(std::string s);
// A number in messages ("%g").
std::string num(double v);
// Formats a tick value on a grid of spacing `step`: as many decimals as the step needs (so
// 0.1 * 3 prints "0.3"), scientific for very large or very small values.
std::string format_tick(double v, double step);
// A 1-2-5 step that divides `span` into about `target` intervals.
double nice_step(double span, double target);

// ---- Output

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
using Surface = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using Context = std::unique_ptr<cairo_t, ContextDeleter>;

using DrawFunction = std::function<void(cairo_t*)>;
// Renders with `draw` into an RGB image of width x height pixels and returns the PNG bytes.
// Errors throw std::runtime_error("cannot write <path>: ...").
std::string render_png_bytes(int width, int height, const DrawFunction& draw, const std::string& path);
// Renders with `draw` into an SVG of width x height points and returns its text, with
// cairo's process-wide object ids renumbered so that equal drawings give equal files.
std::string render_svg_bytes(double width, double height, const DrawFunction& draw, const std::string& path);
// Writes `bytes` to a hidden temporary file in the destination's directory (created when
// missing), flushes it to disk and renames it over `path`; on any failure the temporary file
// is removed and std::runtime_error("cannot write <path>: ...") is thrown.
void write_atomically(const std::string& path, const std::string& bytes);

}  // namespace blocklab::cairo_util
