// Shared cairo helpers (see cairo_util.h).
#include "analysis/cairo_util.h"

#include <cairo-svg.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

namespace blocklab::cairo_util {

void set_font_options(cairo_t* cr) {
  cairo_font_options_t* fo = cairo_font_options_create();
  cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
  cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
  cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_SLIGHT);
  cairo_set_font_options(cr, fo);
  cairo_font_options_destroy(fo);
}

double snap(double v, double width) {
  const long w = std::lround(width);
  return (w % 2 == 1) ? std::floor(v) + 0.5 : std::round(v);
}

// ---------------------------------------------------------------------------------------
// Text

void set_font(cairo_t* cr, double size, bool bold) {
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double text_width(cairo_t* cr, const std::string& text) {
  if (text.empty()) return 0;
  cairo_text_extents_t e;
  cairo_text_extents(cr, text.c_str(), &e);
  return e.x_advance;
}

FontBox font_box(cairo_t* cr) {
  cairo_font_extents_t e;
  cairo_font_extents(cr, &e);
  // The font's ascent covers accents; digits and capitals sit lower. Use the cap height of
  // "0" for the visual top so that centred labels look centred.
  cairo_text_extents_t t;
  cairo_text_extents(cr, "0", &t);
  return {-t.y_bearing, e.descent * 0.6};
}

void draw_text(cairo_t* cr, const std::string& text, double x, double y, double ha, double va) {
  if (text.empty()) return;
  const FontBox fb = font_box(cr);
  const double w = text_width(cr, text);
  const double top = y - va * fb.ascent;
  cairo_move_to(cr, x - ha * w, top + fb.ascent);
  cairo_show_text(cr, text.c_str());
  cairo_new_path(cr);
}

std::string fit_title(cairo_t* cr, const std::string& title, double& pt, double max_w) {
  const double smallest = pt * 0.65;
  set_font(cr, pt, true);
  while (text_width(cr, title) > max_w && pt > smallest) {
    pt *= 0.92;
    set_font(cr, pt, true);
  }
  return ellipsize(cr, title, max_w);
}

std::string ellipsize(cairo_t* cr, const std::string& text, double max_w) {
  if (text_width(cr, text) <= max_w) return text;
  std::string cut = text;
  while (!cut.empty()) {
    // Drop one UTF-8 code point.
    std::size_t n = cut.size() - 1;
    while (n > 0 && (static_cast<unsigned char>(cut[n]) & 0xC0) == 0x80) --n;
    cut.resize(n);
    if (text_width(cr, cut + kEllipsis) <= max_w) return cut + kEllipsis;
  }
  return kEllipsis;
}

// ---------------------------------------------------------------------------------------
// Numbers and ticks

std::string with_minus(std::string s) {
  if (!s.empty() && s[0] == '-') s = kMinus + s.substr(1);
  return s;
}

std::string format_tick(double v, double step) {
  const int step_exp = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  if (std::abs(v) < step * 1e-6) return "0";
  char buf[64];
  const double mag = std::abs(v);
  if (mag >= 1e6 || step_exp < -4) {
    const int v_exp = static_cast<int>(std::floor(std::log10(mag)));
    const int digits = std::clamp(v_exp - step_exp, 0, 8);
    std::snprintf(buf, sizeof buf, "%.*e", digits, v);
    std::string s(buf);
    const auto e = s.find('e');
    std::string mant = s.substr(0, e);
    const int exp = std::stoi(s.substr(e + 1));
    if (mant.find('.') != std::string::npos) {
      while (mant.back() == '0') mant.pop_back();
      if (mant.back() == '.') mant.pop_back();
    }
    return with_minus(mant + "e" + std::to_string(exp));
  }
  std::snprintf(buf, sizeof buf, "%.*f", std::max(0, -step_exp), v);
  return with_minus(buf);
}

double nice_step(double span, double target) {
  const double raw = span / std::max(1.0, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double m = norm <= 1.0 + 1e-9 ? 1 : norm <= 2.0 + 1e-9 ? 2 : norm <= 5.0 + 1e-9 ? 5 : 10;
  return m * mag;
}

// ---------------------------------------------------------------------------------------
// Output

namespace {

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

void check(cairo_status_t status, const std::string& path) {
  if (status != CAIRO_STATUS_SUCCESS)
    throw std::runtime_error("cannot write " + path + ": cairo: " + cairo_status_to_string(status));
}

// cairo names SVG objects after process-wide counters ("surface528", "image17"), so the
// same drawing would differ between calls; renumber them (consistently, references
// included) in order of appearance so that equal drawings give equal files.
std::string renumber_ids(const std::string& svg, const std::string& word) {
  std::vector<std::pair<std::string, std::string>> seen;  // old digits -> new digits
  std::string out;
  out.reserve(svg.size());
  std::size_t i = 0;
  while (i < svg.size()) {
    const std::size_t at = svg.find(word, i);
    if (at == std::string::npos) break;
    std::size_t end = at + word.size();
    while (end < svg.size() && svg[end] >= '0' && svg[end] <= '9') ++end;
    out.append(svg, i, at + word.size() - i);
    const std::string digits = svg.substr(at + word.size(), end - at - word.size());
    if (!digits.empty()) {
      auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& p) { return p.first == digits; });
      if (it == seen.end()) it = seen.insert(seen.end(), {digits, std::to_string(seen.size() + 1)});
      out += it->second;
    }
    i = end;
  }
  out.append(svg, i, std::string::npos);
  return out;
}

}  // namespace

std::string render_png_bytes(int width, int height, const DrawFunction& draw, const std::string& path) {
  Surface surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height));
  check(cairo_surface_status(surface.get()), path);
  {
    Context cr(cairo_create(surface.get()));
    draw(cr.get());
    check(cairo_status(cr.get()), path);
  }
  cairo_surface_flush(surface.get());
  std::string bytes;
  check(cairo_surface_write_to_png_stream(surface.get(), append_bytes, &bytes), path);
  return bytes;
}

std::string render_svg_bytes(double width, double height, const DrawFunction& draw, const std::string& path) {
  std::string bytes;
  Surface surface(cairo_svg_surface_create_for_stream(append_bytes, &bytes, width, height));
  check(cairo_surface_status(surface.get()), path);
  cairo_svg_surface_set_document_unit(surface.get(), CAIRO_SVG_UNIT_PT);
  {
    Context cr(cairo_create(surface.get()));
    draw(cr.get());
    check(cairo_status(cr.get()), path);
  }
  cairo_surface_finish(surface.get());
  check(cairo_surface_status(surface.get()), path);
  return renumber_ids(renumber_ids(bytes, "surface"), "image");
}

void write_atomically(const std::string& path, const std::string& bytes) {
  namespace fs = std::filesystem;
  auto fail = [&](const std::string& why) { throw std::runtime_error("cannot write " + path + ": " + why); };
  const fs::path dest(path);
  if (!dest.has_filename()) fail("not a file name");
  std::error_code ec;
  if (dest.has_parent_path()) {
    fs::create_directories(dest.parent_path(), ec);
    if (ec) fail(ec.message());
  }
  static std::atomic<unsigned> counter{0};
  const fs::path tmp = dest.parent_path() / ("." + dest.filename().string() + ".tmp-" + std::to_string(::getpid()) +
                                             "-" + std::to_string(counter++));
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(std::strerror(errno));
  auto abandon = [&](int err) {
    if (f) std::fclose(f);
    std::remove(tmp.c_str());
    fail(std::strerror(err));
  };
  if (std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) abandon(errno);
  if (std::fflush(f) != 0 || ::fsync(::fileno(f)) != 0) abandon(errno);
  const int rc = std::fclose(f);
  f = nullptr;
  if (rc != 0) abandon(errno);
  fs::rename(tmp, dest, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail(ec.message());
  }
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace blocklab::cairo_util
