#include "analysis/curves.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "analysis/table.h"
#include "analysis/text_util.h"
#include "experiments/json_io.h"
#include "registry/config_error.h"
#include "registry/suggest.h"

namespace fs = std::filesystem;

namespace blocklab {
namespace {

constexpr std::size_t kCompactLabels = 36;  // longer overlay labels use short key names (lr=...)
constexpr std::size_t kMaxLabel = 54;       // longer legend entries are cut (keeping the status mark)

// ---- One flat JSON object per line ---------------------------------------------------------

struct JsonField {
  enum Kind { Number, True, Other };
  std::string key;
  Kind kind = Other;
  double number = 0;
};

// The fields of one line holding one JSON object (false when it is not one): numbers (NaN or
// +-inf for a non-finite one, experiments/json_io.h) and `true` are kept; strings, false, null
// and nested values are skipped.
bool read_fields(const std::string& line, std::vector<JsonField>& fields) {
  fields.clear();
  Json object;
  if (!try_parse_json(line, object) || !object.is_object()) return false;
  for (auto it = object.begin(); it != object.end(); ++it) {
    JsonField f;
    f.key = it.key();
    if (it.value().is_number()) {
      f.kind = JsonField::Number;
      f.number = it.value().get<double>();
    } else if (it.value().is_boolean() && it.value().get<bool>()) {
      f.kind = JsonField::True;
    }
    fields.push_back(std::move(f));
  }
  return true;
}

bool blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

std::string excerpt(const std::string& line) {
  constexpr std::size_t kMax = 60;
  return line.size() <= kMax ? line : line.substr(0, kMax) + "...";
}

const char* kMetricsHint =
    "metrics.jsonl holds one JSON object per line, appended by `blocklab run`; only a last line cut off by a kill "
    "is ignored";

// A step as a whole number ("120", not "120.0").
std::string step_text(double step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, step == std::floor(step) && std::abs(step) < 1e15 ? "%.0f" : "%g", step);
  return buf;
}

// Watches the steps of a metrics.jsonl line by line: training and evaluation lines each
// must step forward; the first line that does not is remembered with its predecessor.
class StepOrder {
 public:
  void see(bool eval, double step, std::size_t line) {
    if (std::isnan(step)) return;
    Last& last = eval ? eval_ : train_;
    if (last.line && step <= last.step) {
      if (!bad_++) first_ = "line " + std::to_string(line) + " logs step " + step_text(step) + " after step " +
                            step_text(last.step) + " (line " + std::to_string(last.line) + ")";
    }
    last = {step, line};
  }
  std::string problem(const std::string& path) const {
    if (!bad_) return "";
    return path + ": " + first_ + (bad_ > 1 ? ", and " + std::to_string(bad_ - 1) + " more line(s) step back" : "") +
           ": two processes appended to this file (the run was started twice), so its curves and summary may mix "
           "two runs; run it again with `blocklab run ... --force`";
  }

 private:
  struct Last {
    double step = 0;
    std::size_t line = 0;
  };
  Last train_, eval_;
  std::size_t bad_ = 0;
  std::string first_;
};

// The step, epoch and kind of one parsed line.
struct LineKind {
  double step = kNaN, epoch = kNaN;
  bool diverged = false, eval = false;
};

LineKind line_kind(const std::vector<JsonField>& fields) {
  LineKind k;
  for (const JsonField& f : fields) {
    if (f.kind == JsonField::True && f.key == "diverged") k.diverged = true;
    if (f.kind != JsonField::Number) continue;
    if (f.key == "step")
      k.step = f.number;
    else if (f.key == "epoch")
      k.epoch = f.number;
    else if (f.key.find('/') != std::string::npos)
      k.eval = true;
  }
  return k;
}

// Adds one point, first dropping the points a restarted run logs again (steps at or after it).
void add_point(MetricSeries& s, double step, double epoch, double value) {
  if (!std::isfinite(value)) return;
  if (!std::isnan(step))
    while (!s.step.empty() && s.step.back() >= step) {
      s.step.pop_back();
      s.epoch.pop_back();
      s.value.pop_back();
    }
  s.step.push_back(step);
  s.epoch.push_back(epoch);
  s.value.push_back(value);
}

// ---- Labels ---------------------------------------------------------------------------------

bool is_repetition_key(const std::string& path) {
  for (const std::string& k : repetition_keys())
    if (under(path, k)) return true;
  return false;
}

// "<experiment>/<run id>" from results/runs/<experiment>/<id>.
std::string run_name(const std::string& run_dir) {
  const fs::path p(run_dir);
  const std::string id = p.filename().string();
  const std::string parent = p.parent_path().filename().string();
  return parent.empty() ? id : parent + "/" + id;
}

std::string run_id(const std::string& run_dir) { return fs::path(run_dir).filename().string(); }

// Each dotted key as its shortest suffix of whole components that no other key ends with:
// trainer.lr -> lr, model.mixer.type and model.channel.type -> mixer.type and channel.type.
std::vector<std::string> short_key_names(const std::vector<std::string>& keys) {
  auto suffix = [](const std::string& key, int parts) {
    std::size_t at = key.size();
    for (int i = 0; i < parts; ++i) {
      const std::size_t dot = at == 0 ? std::string::npos : key.rfind('.', at - 1);
      if (dot == std::string::npos) return key;
      at = dot;
    }
    return key.substr(at + 1);
  };
  std::vector<std::string> out;
  for (const std::string& key : keys) {
    std::string name = key;
    for (int parts = 1; parts < 64; ++parts) {
      const std::string candidate = suffix(key, parts);
      const bool unique = std::none_of(keys.begin(), keys.end(), [&](const std::string& other) {
        return other != key && (other == candidate ||
                                (other.size() > candidate.size() &&
                                 other.compare(other.size() - candidate.size(), candidate.size(), candidate) == 0 &&
                                 other[other.size() - candidate.size() - 1] == '.'));
      });
      if (unique || candidate == key) {
        name = candidate;
        break;
      }
    }
    out.push_back(name);
  }
  return out;
}

// The leaves that tell these configs apart, in label order: name order, then the repetition
// keys (seed, threads, device); output_dir never counts.
std::vector<std::string> label_keys(const std::vector<const ConfigNode*>& configs) {
  std::vector<std::string> first, last;
  for (const std::string& path : varying_config_leaves(configs)) {
    if (under(path, "output_dir")) continue;
    (is_repetition_key(path) ? last : first).push_back(path);
  }
  first.insert(first.end(), last.begin(), last.end());
  return first;
}

// Orders configs by their values of `keys`, one key after the other: numbers ascending
// before other values (by text), an unset key last.
bool config_less(const ConfigNode& a, const ConfigNode& b, const std::vector<std::string>& keys) {
  for (const std::string& key : keys) {
    const ConfigNode* x = a.find_path(key);
    const ConfigNode* y = b.find_path(key);
    auto rank = [](const ConfigNode* n) { return !n ? 2 : (n->is_scalar() && n->is_number()) ? 0 : 1; };
    if (rank(x) != rank(y)) return rank(x) < rank(y);
    if (!x) continue;
    if (rank(x) == 0) {
      if (x->as_double() != y->as_double()) return x->as_double() < y->as_double();
      continue;
    }
    const std::string tx = config_value_text(*x), ty = config_value_text(*y);
    if (tx != ty) return tx < ty;
  }
  return false;
}

bool is_loss(const std::string& metric) { return metric.find("loss") != std::string::npos; }

// ---- Charts ---------------------------------------------------------------------------------

struct XY {
  std::vector<double> x, y;
};

// The points of `s` against the chart's x axis; false (with `why`) when this run cannot give
// that x (an epoch axis for training lines of a run with no evaluation yet).
bool points(const CurveRun& run, const MetricSeries& s, bool epoch_axis, XY& out, std::string& why) {
  out = {};
  const bool use_epoch_field = epoch_axis && s.per_eval;
  const double spe = run.curves.steps_per_epoch;
  if (epoch_axis && !s.per_eval && !(spe > 0)) {
    why = run.name + " has no evaluation yet, so its steps cannot be placed on an epoch axis";
    return false;
  }
  for (std::size_t i = 0; i < s.value.size(); ++i) {
    double x = use_epoch_field ? s.epoch[i] : s.step[i];
    if (std::isnan(x)) continue;
    if (epoch_axis && !s.per_eval) x /= spe;
    out.x.push_back(x);
    out.y.push_back(s.value[i]);
  }
  return true;
}

const MetricSeries* first_series(const CurveSet& set, const std::string& metric) {
  for (const CurveRun& r : set.runs)
    if (const MetricSeries* s = r.curves.find(metric)) return s;
  return nullptr;
}

bool run_diverged(const CurveRun& r) { return r.curves.diverged || r.record.status == "diverged"; }

std::string status_mark(const CurveRun& r) {
  if (run_diverged(r)) return "(diverged)";
  if (r.record.status == "failed") return "(failed)";
  return "";
}

std::size_t code_points(const std::string& s) {
  return static_cast<std::size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// `label` then `mark` ("(diverged)"), the label cut with an ellipsis so that the whole stays
// within kMaxLabel characters and the mark is never the part the legend leaves out.
std::string with_mark(const std::string& label, const std::string& mark) {
  const std::size_t room = kMaxLabel - (mark.empty() ? 0 : code_points(mark) + 1);
  std::string text = label;
  if (code_points(text) > room) {
    std::size_t n = 0, cut = 0;
    for (; cut < text.size(); ++cut)
      if ((static_cast<unsigned char>(text[cut]) & 0xC0) != 0x80 && ++n > room - 1) break;
    text = text.substr(0, cut) + "\xE2\x80\xA6";  // U+2026
  }
  if (mark.empty()) return text;
  return text.empty() ? mark : text + " " + mark;
}

struct Group {
  std::vector<std::size_t> members;
  ConfigNode config;  // without the repetition keys
  std::string label;  // name and mark: "trainer.lr=0.001 (n=3, 1 diverged)"
  std::string name, mark;
};

// Runs whose configs differ only in repetition keys, in order of first appearance.
std::vector<Group> seed_groups(const CurveSet& set) {
  std::vector<Group> groups;
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < set.runs.size(); ++i) {
    ConfigNode config = set.runs[i].record.config;
    for (const std::string& k : repetition_keys()) config.erase(k);
    const std::string key = config_value_identity(config);
    const auto it = std::find(keys.begin(), keys.end(), key);
    if (it == keys.end()) {
      keys.push_back(key);
      groups.push_back({{i}, std::move(config), "", "", ""});
    } else {
      groups[static_cast<std::size_t>(it - keys.begin())].members.push_back(i);
    }
  }
  std::vector<const ConfigNode*> configs;
  for (const Group& g : groups) configs.push_back(&g.config);
  const std::vector<std::string> labels = differing_labels(configs, kCompactLabels);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    int diverged = 0, failed = 0;
    for (std::size_t m : groups[g].members) {
      const std::string mark = status_mark(set.runs[m]);
      diverged += mark == "(diverged)" ? 1 : 0;
      failed += mark == "(failed)" ? 1 : 0;
    }
    std::string counts = "n=" + std::to_string(groups[g].members.size());
    if (diverged) counts += ", " + std::to_string(diverged) + " diverged";
    if (failed) counts += ", " + std::to_string(failed) + " failed";
    groups[g].name = labels[g];
    groups[g].mark = "(" + counts + ")";
    groups[g].label = with_mark(groups[g].name, groups[g].mark);
  }
  return groups;
}

// Mean and sample std (n−1) at the x values every member logged.
PlotSeries group_series(const std::vector<XY>& members) {
  std::map<double, std::vector<double>> at;
  for (const XY& m : members)
    for (std::size_t i = 0; i < m.x.size(); ++i) at[m.x[i]].push_back(m.y[i]);
  PlotSeries s;
  const bool band = members.size() > 1;
  for (const auto& [x, ys] : at) {
    if (ys.size() != members.size()) continue;  // not every member reached this x
    double sum = 0;
    for (double y : ys) sum += y;
    const double mean = sum / static_cast<double>(ys.size());
    s.x.push_back(x);
    s.y.push_back(mean);
    if (!band) continue;
    double ss = 0;
    for (double y : ys) ss += (y - mean) * (y - mean);
    const double sd = std::sqrt(ss / static_cast<double>(ys.size() - 1));
    s.lo.push_back(mean - sd);
    s.hi.push_back(mean + sd);
  }
  return s;
}

constexpr std::size_t kMaxMarkedPoints = 40;  // longer curves are drawn without markers
constexpr double kRawOpacity = 0.25;          // the raw curve under a smoothed one

// Long curves (x ascending) keep, per pixel column, their first, lowest, highest and last
// points (M4 decimation): the line drawn is the same, with a few thousand points instead of
// hundreds of thousands (small SVGs, fast PNGs).
void decimate(PlotSeries& s, int columns) {
  const std::size_t n = s.y.size();
  if (n <= static_cast<std::size_t>(columns) * 8 || n < 2) return;
  const double x0 = s.x.front(), x1 = s.x.back();
  if (!(x1 > x0)) return;
  std::vector<std::size_t> keep;
  std::size_t i = 0;
  while (i < n) {
    const long column = static_cast<long>((s.x[i] - x0) / (x1 - x0) * columns);
    std::size_t lo = i, hi = i, j = i;
    for (; j < n && static_cast<long>((s.x[j] - x0) / (x1 - x0) * columns) == column; ++j) {
      if (!std::isfinite(s.y[j])) continue;
      if (!std::isfinite(s.y[lo]) || s.y[j] < s.y[lo]) lo = j;
      if (!std::isfinite(s.y[hi]) || s.y[j] > s.y[hi]) hi = j;
    }
    for (std::size_t k : {i, std::min(lo, hi), std::max(lo, hi), j - 1})
      if (keep.empty() || k > keep.back()) keep.push_back(k);
    i = j;
  }
  auto pick = [&](std::vector<double>& v) {
    if (v.empty()) return;
    std::vector<double> out;
    out.reserve(keep.size());
    for (std::size_t k : keep) out.push_back(v[k]);
    v.swap(out);
  };
  pick(s.x);
  pick(s.y);
  pick(s.lo);
  pick(s.hi);
}

void finish_chart(LineChart& chart, const std::string& metric) {
  std::size_t longest = 0;
  double lo = HUGE_VAL, hi = -HUGE_VAL;
  for (const PlotSeries& s : chart.series) {
    longest = std::max(longest, s.y.size());
    for (double y : s.y)
      if (std::isfinite(y)) lo = std::min(lo, y), hi = std::max(hi, y);
  }
  std::size_t widest_label = 0;
  for (PlotSeries& s : chart.series) {
    if (s.opacity == 1.0) s.markers = longest <= kMaxMarkedPoints;
    widest_label = std::max(widest_label, code_points(s.label));
  }
  // The legend shortens entries wider than 30% of the chart: make room for long ones (about
  // 7 px a character at the default size), up to 1200 px.
  const double wanted = static_cast<double>(widest_label) * 7.0 / 0.3;
  if (wanted > chart.width) chart.width = std::min(1200, static_cast<int>(std::ceil(wanted / 100) * 100));
  for (PlotSeries& s : chart.series) decimate(s, chart.width);
  chart.log_y = is_loss(metric) && lo > 0 && hi / lo >= 20;
  chart.integer_x = true;  // steps and epochs are whole numbers (an epoch axis is ticked at whole epochs)
}

// What one chart draws of a metric: its x axis, the trailing mean, and `kind`: "" for a
// chart of this metric alone, else what the curve is on a chart of several metrics ("train",
// "val/loss"), said in its legend entry.
struct SeriesSpec {
  std::string metric;
  bool epoch_axis = false;
  int smooth = 0;
  std::string kind;
};

// The series of one metric: a line per run, or per group of seeds when `groups` is not
// empty. Alone on its chart, a smoothed curve has its raw curve faintly underneath.
std::vector<PlotSeries> metric_series(const CurveSet& set, const std::vector<Group>& groups, const SeriesSpec& spec,
                                      std::vector<std::string>* notes) {
  const std::string& metric = spec.metric;
  const int smooth = spec.smooth;
  const bool single = set.runs.size() == 1;
  std::vector<PlotSeries> out;
  // Each run's points on this chart (smoothed when asked), or nothing.
  std::vector<XY> raw(set.runs.size()), drawn(set.runs.size());
  std::vector<bool> has(set.runs.size(), false);
  for (std::size_t i = 0; i < set.runs.size(); ++i) {
    const MetricSeries* s = set.runs[i].curves.find(metric);
    if (!s || s->value.empty()) continue;
    std::string why;
    if (!points(set.runs[i], *s, spec.epoch_axis, raw[i], why)) {
      if (notes) notes->push_back(metric + ": leaving out " + why);
      continue;
    }
    if (raw[i].x.empty()) continue;
    has[i] = true;
    drawn[i] = raw[i];
    drawn[i].y = trailing_mean(raw[i].y, smooth);
  }
  // "<kind>: <label>" on a chart of several metrics.
  auto named = [&](const std::string& label) {
    return spec.kind.empty() ? label : label.empty() ? spec.kind : spec.kind + ": " + label;
  };

  if (!groups.empty()) {
    for (std::size_t g = 0; g < groups.size(); ++g) {
      std::vector<XY> members;
      for (std::size_t m : groups[g].members)
        if (has[m]) members.push_back(drawn[m]);
      if (members.empty()) continue;
      PlotSeries s = group_series(members);
      if (s.x.empty()) continue;
      s.label = with_mark(named(groups[g].name), groups[g].mark);
      s.style = static_cast<int>(g);
      out.push_back(std::move(s));
    }
    return out;
  }
  std::vector<PlotSeries> faint, lines;
  for (std::size_t i = 0; i < set.runs.size(); ++i) {
    if (!has[i]) continue;
    const CurveRun& run = set.runs[i];
    PlotSeries s;
    s.style = static_cast<int>(i);
    s.x = drawn[i].x;
    s.y = drawn[i].y;
    if (single) {
      std::string mark;
      if (run_diverged(run))
        mark = std::isnan(run.curves.diverged_at) ? "(diverged)"
                                                  : "(diverged at step " + step_text(run.curves.diverged_at) + ")";
      else
        mark = status_mark(run);
      s.label = with_mark(spec.kind.empty() && smooth ? "trailing mean of " + std::to_string(smooth) : spec.kind, mark);
    } else {
      s.label = with_mark(named(run.label), status_mark(run));
    }
    if (smooth && spec.kind.empty()) {
      PlotSeries r;
      r.style = s.style;
      r.x = raw[i].x;
      r.y = raw[i].y;
      r.markers = false;
      r.opacity = kRawOpacity;
      r.line_scale = 0.75;
      if (single) r.label = "raw";
      faint.push_back(std::move(r));
    }
    lines.push_back(std::move(s));
  }
  for (auto& s : faint) out.push_back(std::move(s));  // underneath
  for (auto& s : lines) out.push_back(std::move(s));
  return out;
}

// "<what> — <run>" for one run, else "<what> (mean ± std over seeds, trailing mean of K)". A
// smoothed single run's legend says what is smoothed unless `legend_says_smooth` is false.
std::string curve_title(const CurveSet& set, bool grouped, const std::string& what, int smooth,
                        bool legend_says_smooth) {
  const bool single = set.runs.size() == 1;
  std::vector<std::string> how;
  if (grouped) how.push_back("mean \xC2\xB1 std over seeds");
  if (smooth && !(single && legend_says_smooth)) how.push_back("trailing mean of " + std::to_string(smooth));
  std::string title = what;
  if (single) title += " \xE2\x80\x94 " + set.runs[0].name;  // em dash
  if (!how.empty()) title += " (" + join(how, ", ") + ")";
  return title;
}

bool logged_in_training(const CurveSet& set, const std::string& name) {
  for (const CurveRun& r : set.runs)
    if (const MetricSeries* s = r.curves.find(name); s && !s->per_eval) return true;
  return false;
}

std::vector<std::string> training_metrics(const CurveSet& set) {
  std::set<std::string> names;
  for (const CurveRun& r : set.runs)
    for (const MetricSeries& s : r.curves.metrics)
      if (!s.per_eval) names.insert(s.name);
  return {names.begin(), names.end()};
}

// The evaluations of training metric `name`: "<split>/<name>" from evaluation lines, val
// first, then test, then other splits, each in order of first appearance.
std::vector<std::string> evaluations_of(const CurveSet& set, const std::string& name) {
  std::vector<std::string> found;
  for (const CurveRun& r : set.runs)
    for (const MetricSeries& s : r.curves.metrics) {
      const std::size_t slash = s.name.rfind('/');
      if (s.per_eval && slash != std::string::npos && s.name.compare(slash + 1, std::string::npos, name) == 0 &&
          std::find(found.begin(), found.end(), s.name) == found.end())
        found.push_back(s.name);
    }
  auto rank = [](const std::string& m) { return m.rfind("val/", 0) == 0 ? 0 : m.rfind("test/", 0) == 0 ? 1 : 2; };
  std::stable_sort(found.begin(), found.end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
  return found;
}

std::string together_stem(const std::string& name) { return curve_file_stem(name) + "_train_val"; }

// Training metric `name` and its evaluations on one chart against step (or epoch with --x
// epoch): the training curve a plain line, each evaluation markers joined by a dashed
// (then dotted) line; one colour per curve for a single line of each, else one per run or
// group. Empty series when nothing has points on this x axis.
CurveChart together_chart(const CurveSet& set, const std::vector<Group>& groups, const CurveOptions& options,
                          const std::string& name, std::vector<std::string>* notes) {
  std::vector<std::string> metrics = {name};
  for (const std::string& e : evaluations_of(set, name)) metrics.push_back(e);
  const bool epoch_axis = options.x == CurveX::Epoch;
  const int smooth = is_loss(name) && options.smooth > 1 ? options.smooth : 0;
  CurveChart cc;
  cc.metric = together_stem(name).substr(std::string("curves_").size());
  cc.file_stem = together_stem(name);
  LineChart& chart = cc.chart;
  chart.x_label = epoch_axis ? "epoch" : "step";
  chart.y_label = name;
  const std::vector<std::string> evals(metrics.begin() + 1, metrics.end());
  chart.title = curve_title(set, !groups.empty(), name + ": train and " + join(evals, ", "), smooth, false);

  std::vector<std::pair<std::size_t, PlotSeries>> all;  // (curve: 0 training, k evaluation k, series)
  bool train = false, eval = false;
  for (std::size_t k = 0; k < metrics.size(); ++k) {
    const SeriesSpec spec{metrics[k], epoch_axis, k == 0 ? smooth : 0, k == 0 ? "train " + name : metrics[k]};
    for (PlotSeries& s : metric_series(set, groups, spec, notes)) {
      (k == 0 ? train : eval) = true;
      all.push_back({k, std::move(s)});
    }
  }
  if (!train || !eval) return cc;
  // A run's (or group's) curves next to each other in the legend.
  std::stable_sort(all.begin(), all.end(),
                   [](const auto& a, const auto& b) { return a.second.style < b.second.style; });
  const bool one_line_each =
      std::all_of(all.begin(), all.end(), [&](const auto& p) { return p.second.style == all[0].second.style; });
  for (auto& [k, s] : all) {
    s.dash = k == 0 ? 0 : 1 + static_cast<int>((k - 1) % 2);
    if (one_line_each) s.style = static_cast<int>(k);
    chart.series.push_back(std::move(s));
  }
  finish_chart(chart, name);
  for (std::size_t i = 0; i < all.size(); ++i) chart.series[i].markers = all[i].first > 0;
  return cc;
}

// The --together names, checked: each a training metric some run logged with an evaluation.
// Without the option: "loss" when --metrics is not given and it can be drawn, else none.
std::vector<std::string> together_names(const CurveSet& set, const CurveOptions& options) {
  if (!options.together) {
    const bool drawable = logged_in_training(set, "loss") && !evaluations_of(set, "loss").empty();
    return options.metrics.empty() && drawable ? std::vector<std::string>{"loss"} : std::vector<std::string>{};
  }
  for (const std::string& name : *options.together) {
    if (!logged_in_training(set, name)) {
      const std::vector<std::string> names = training_metrics(set);
      std::vector<std::string> hints;
      const std::string dym = did_you_mean(name, names);
      if (!dym.empty()) hints.push_back(dym);
      hints.push_back("training metrics: " + join_names(names));
      throw ConfigError("no run logged the training metric '" + name + "' (--together)", Source{}, "", hints);
    }
    if (evaluations_of(set, name).empty())
      throw ConfigError("no run logged an evaluation of '" + name + "' (--together)", Source{}, "",
                        {"evaluation lines log it as <split>/" + name + " (val/" + name + ", test/" + name + ")"});
  }
  return *options.together;
}

}  // namespace

// ---- Reading --------------------------------------------------------------------------------

const MetricSeries* RunCurves::find(const std::string& name) const {
  for (const MetricSeries& s : metrics)
    if (s.name == name) return &s;
  return nullptr;
}

bool RunCurves::has_points() const {
  return std::any_of(metrics.begin(), metrics.end(), [](const MetricSeries& s) { return !s.value.empty(); });
}

RunCurves read_metrics_file(const std::string& path) {
  RunCurves curves;
  curves.path = path;
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw ConfigError(
        "missing file " + path, Source{}, "",
        {"`blocklab run` creates metrics.jsonl when a run starts: copy or restore the whole run directory"});
  if (fs::is_directory(path, ec)) throw ConfigError("cannot read " + path + ": it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("cannot read " + path + ": " + std::strerror(errno));

  std::map<std::string, std::size_t> index;  // metric name -> position in curves.metrics
  std::vector<JsonField> fields;
  std::string line;
  std::size_t number = 0;
  StepOrder order;
  while (std::getline(in, line)) {
    ++number;
    const bool complete = !in.eof();  // ended by a newline
    if (blank(line)) continue;
    if (!read_fields(line, fields)) {
      if (!complete) {  // a write cut off by a kill: ignored
        curves.truncated_tail = true;
        break;
      }
      throw ConfigError("corrupt file " + path + ": line " + std::to_string(number) + " is not a JSON object", Source{},
                        "", {"line " + std::to_string(number) + " reads: " + excerpt(line), kMetricsHint});
    }
    ++curves.lines;
    const LineKind kind = line_kind(fields);
    const double step = kind.step, epoch = kind.epoch;
    const bool eval = kind.eval;
    if (!kind.diverged) order.see(eval, step, number);
    if (kind.diverged) {  // the last line of a diverged run: its values are not drawn
      curves.diverged = true;
      curves.diverged_at = step;
      continue;
    }
    if (eval && std::isnan(curves.steps_per_epoch) && step > 0 && epoch > 0) curves.steps_per_epoch = step / epoch;
    bool any = false;
    for (const JsonField& f : fields) {
      if (f.kind != JsonField::Number || f.key == "step" || f.key == "epoch") continue;
      auto it = index.find(f.key);
      if (it == index.end()) {
        it = index.emplace(f.key, curves.metrics.size()).first;
        MetricSeries s;
        s.name = f.key;
        s.per_eval = eval;
        curves.metrics.push_back(std::move(s));
      }
      add_point(curves.metrics[it->second], step, epoch, f.number);
      any = true;
    }
    if (any) curves.diverged = false;  // logging went on after a divergence (a restarted run)
  }
  if (in.bad()) throw ConfigError("cannot read " + path + ": read error");
  curves.order_problem = order.problem(path);
  return curves;
}

std::string metrics_order_problem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<JsonField> fields;
  std::string line;
  StepOrder order;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    if (blank(line) || !read_fields(line, fields)) continue;  // corrupt lines are the readers' business
    const LineKind kind = line_kind(fields);
    if (!kind.diverged) order.see(kind.eval, kind.step, number);
  }
  return order.problem(path);
}

std::vector<double> trailing_mean(const std::vector<double>& in, int k) {
  if (k <= 1) return in;
  std::vector<double> out(in.size(), kNaN);
  double sum = 0;
  std::size_t count = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (std::isfinite(in[i])) sum += in[i], ++count;
    if (i >= static_cast<std::size_t>(k)) {
      const double gone = in[i - static_cast<std::size_t>(k)];
      if (std::isfinite(gone)) sum -= gone, --count;
    }
    if (std::isfinite(in[i]) && count > 0) out[i] = sum / static_cast<double>(count);
  }
  return out;
}

// ---- Runs and labels ------------------------------------------------------------------------

std::vector<std::string> differing_labels(const std::vector<const ConfigNode*>& configs, std::size_t max_length) {
  const std::vector<std::string> first = label_keys(configs);
  auto make = [&](const std::vector<std::string>& names) {
    std::vector<std::string> labels;
    for (const ConfigNode* c : configs) {
      std::vector<std::string> parts;
      for (std::size_t k = 0; k < first.size(); ++k)
        if (const ConfigNode* leaf = c->find_path(first[k])) parts.push_back(names[k] + "=" + config_value_text(*leaf));
      labels.push_back(join(parts, ", "));
    }
    return labels;
  };
  std::vector<std::string> labels = make(first);
  const bool too_long =
      std::any_of(labels.begin(), labels.end(), [&](const std::string& l) { return l.size() > max_length; });
  return too_long ? make(short_key_names(first)) : labels;
}

CurveSet load_curves(const std::vector<RunRecord>& records) {
  CurveSet set;
  for (const RunRecord& r : records) {
    if (r.run_dir.empty()) {
      set.notes.push_back("skipping " + r.label + ": " + r.status + ", no run directory yet");
      continue;
    }
    CurveRun run;
    run.curves = read_metrics_file(r.run_dir + "/metrics.jsonl");
    if (!run.curves.order_problem.empty()) set.warnings.push_back(run.curves.order_problem);
    if (!run.curves.has_points()) {
      set.notes.push_back("skipping " + r.run_dir + ": no metrics yet (the run has just started)");
      continue;
    }
    run.record = r;
    run.name = run_name(r.run_dir);
    set.runs.push_back(std::move(run));
  }
  // Lines in the order of what differs (lr=0.001 before lr=0.01, then seed 0, 1, 2...).
  std::vector<const ConfigNode*> configs;
  for (const CurveRun& r : set.runs) configs.push_back(&r.record.config);
  const std::vector<std::string> keys = label_keys(configs);
  std::stable_sort(set.runs.begin(), set.runs.end(), [&](const CurveRun& a, const CurveRun& b) {
    return config_less(a.record.config, b.record.config, keys);
  });
  configs.clear();
  for (const CurveRun& r : set.runs) configs.push_back(&r.record.config);
  const std::vector<std::string> labels = differing_labels(configs, kCompactLabels);
  std::map<std::string, int> uses;
  for (const std::string& l : labels) ++uses[l];
  for (std::size_t i = 0; i < set.runs.size(); ++i) {
    const std::string id = run_id(set.runs[i].record.run_dir);
    if (labels[i].empty())
      set.runs[i].label = id;
    else if (uses[labels[i]] > 1)
      set.runs[i].label = labels[i] + " (" + id + ")";
    else
      set.runs[i].label = labels[i];
  }
  return set;
}

std::vector<std::string> available_curve_metrics(const CurveSet& set) {
  std::set<std::string> names;
  for (const CurveRun& r : set.runs)
    for (const MetricSeries& s : r.curves.metrics) names.insert(s.name);
  return {names.begin(), names.end()};
}

std::vector<std::string> default_curve_metrics(const CurveSet& set) {
  std::vector<std::string> seen;
  for (const CurveRun& r : set.runs)
    for (const MetricSeries& s : r.curves.metrics)
      if (std::find(seen.begin(), seen.end(), s.name) == seen.end()) seen.push_back(s.name);
  std::vector<std::string> out;
  for (const char* name : {"loss", "lr"})
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) out.push_back(name);
  for (const std::string& name : seen)
    if (name.find('/') != std::string::npos) {
      const MetricSeries* s = first_series(set, name);
      if (s && s->per_eval) out.push_back(name);
    }
  return out.empty() ? seen : out;
}

std::string curve_file_stem(const std::string& metric) { return "curves_" + sanitize(metric); }

std::vector<CurveChart> curve_charts(const CurveSet& set, const CurveOptions& options,
                                     std::vector<std::string>* notes) {
  if (set.runs.empty())
    throw ConfigError("nothing to plot: no run has logged a metric yet", Source{}, "",
                      {"metrics.jsonl gets its first line after trainer.log_every steps"});
  const std::vector<std::string> available = available_curve_metrics(set);
  const std::vector<std::string> metrics = options.metrics.empty() ? default_curve_metrics(set) : options.metrics;
  for (const std::string& m : metrics)
    if (std::find(available.begin(), available.end(), m) == available.end()) {
      std::vector<std::string> hints;
      const std::string dym = did_you_mean(m, available);
      if (!dym.empty()) hints.push_back(dym);
      hints.push_back("metrics: " + join_names(available));
      throw ConfigError("no run logged the metric '" + m + "' (--metrics)", Source{}, "", hints);
    }
  const std::vector<std::string> together = together_names(set, options);

  const bool single = set.runs.size() == 1;
  const bool grouped = options.mean_over_seeds && !single;
  const std::vector<Group> groups = grouped ? seed_groups(set) : std::vector<Group>{};
  std::vector<CurveChart> charts;
  for (const std::string& metric : metrics) {
    const bool per_eval = first_series(set, metric)->per_eval;
    const bool epoch_axis = options.x == CurveX::Epoch || (options.x == CurveX::Auto && per_eval);
    const int smooth = !per_eval && is_loss(metric) && options.smooth > 1 ? options.smooth : 0;

    CurveChart cc;
    cc.metric = metric;
    cc.file_stem = curve_file_stem(metric);
    LineChart& chart = cc.chart;
    chart.x_label = epoch_axis ? "epoch" : "step";
    chart.y_label = metric;
    chart.title = curve_title(set, grouped, metric, smooth, true);

    chart.series = metric_series(set, groups, {metric, epoch_axis, smooth, ""}, notes);
    if (chart.series.empty()) {
      if (notes) notes->push_back("no chart for " + metric + ": no run has values for it on this x axis");
      continue;
    }
    finish_chart(chart, metric);
    charts.push_back(std::move(cc));
  }
  for (const std::string& name : together) {
    CurveChart cc = together_chart(set, groups, options, name, notes);
    if (cc.chart.series.empty()) {
      if (notes) notes->push_back("no chart for " + name + " with its evaluations: no run has both on this x axis");
      continue;
    }
    charts.push_back(std::move(cc));
  }
  if (notes) {  // a run left out of two charts for the same reason is said once
    std::vector<std::string> once;
    for (std::string& n : *notes)
      if (std::find(once.begin(), once.end(), n) == once.end()) once.push_back(std::move(n));
    *notes = std::move(once);
  }
  return charts;
}

}  // namespace blocklab
