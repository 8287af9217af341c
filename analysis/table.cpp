#include "analysis/table.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "analysis/text_util.h"
#include "registry/config_error.h"
#include "registry/suggest.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

// Keys that say how a run was executed, not what it computed: runs differing only here (and
// in the seed) are repetitions of one config.
const std::vector<std::string> kExecutionKeys = {"seed", "output_dir", "threads", "device"};

const char* kUnset = "(unset)";

std::string fixed(double v, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

// ---- Config values ------------------------------------------------------------------------

// A value's identity for grouping: numbers compare by value (2e-3 == 0.002), strings by text,
// and a string "1" differs from the number 1.
std::string canonical(const ConfigNode& n) {
  if (n.is_null()) return "null";
  if (n.is_scalar()) {
    if (n.is_number()) return "n:" + format_double(n.as_double());
    if (n.is_bool()) return n.as_bool() ? "true" : "false";
    return "s:" + n.text();
  }
  std::vector<std::string> parts;
  if (n.is_sequence()) {
    for (const auto& item : n.items()) parts.push_back(canonical(item));
    return "[" + join(parts, ",") + "]";
  }
  for (const auto& [k, v] : n.entries()) parts.push_back(json_quote(k) + ":" + canonical(v));
  return "{" + join(parts, ",") + "}";
}

// A value as the table prints it: scalars as written in config.yaml, lists in flow style.
std::string display(const ConfigNode& n) {
  if (n.is_sequence()) {
    std::string json = dump_json(n);
    return json.substr(0, json.size() - 1);  // no trailing newline
  }
  return yaml_scalar_text(n);
}

// The leaves under `n` (scalars, nulls, lists and empty mappings) by dotted path.
void flatten(const ConfigNode& n, const std::string& prefix, std::map<std::string, const ConfigNode*>& out) {
  if (n.is_map() && !n.entries().empty()) {
    for (const auto& [k, v] : n.entries()) flatten(v, prefix.empty() ? k : prefix + "." + k, out);
    return;
  }
  out[prefix] = &n;
}

// Every path in the config, mappings included (the candidates for a did-you-mean).
void all_paths(const ConfigNode& n, const std::string& prefix, std::set<std::string>& out) {
  if (!prefix.empty()) out.insert(prefix);
  if (n.is_map())
    for (const auto& [k, v] : n.entries()) all_paths(v, prefix.empty() ? k : prefix + "." + k, out);
}

// The leaf paths whose values are not the same in every run (a leaf some runs lack counts).
std::vector<std::string> varying_leaves(const std::vector<const ConfigNode*>& configs) {
  std::map<std::string, std::set<std::string>> values;
  std::map<std::string, std::size_t> present;
  for (const ConfigNode* c : configs) {
    std::map<std::string, const ConfigNode*> leaves;
    flatten(*c, "", leaves);
    for (const auto& [path, node] : leaves) {
      values[path].insert(canonical(*node));
      ++present[path];
    }
  }
  std::vector<std::string> out;
  for (const auto& [path, set] : values)
    if (set.size() > 1 || present[path] < configs.size()) out.push_back(path);
  return out;
}

// ---- Axes ---------------------------------------------------------------------------------

struct AxisValue {
  std::string canon;
  const ConfigNode* node = nullptr;  // null when the key is unset
  int first_seen = 0;
};

// The config group option a mapping was chosen as, read from its type's provenance: "dlinear"
// for `model` from .../model/dlinear.yaml, "sigmoid" for `model.mixer` from
// .../model/mixer/sigmoid.yaml; "" when the type did not come from a file of that group.
std::string group_option(const ConfigNode& m, const std::string& key) {
  const ConfigNode* type = m.find("type");
  if (!type) return "";
  const std::string& file = type->source().file;
  std::string group = "/" + key + "/";
  std::replace(group.begin(), group.end(), '.', '/');
  const std::size_t at = file.rfind(group);
  const std::string suffix = ".yaml";
  if (at == std::string::npos || file.size() <= at + group.size() + suffix.size() ||
      file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0)
    return "";
  const std::string option = file.substr(at + group.size(), file.size() - at - group.size() - suffix.size());
  return option.find('/') == std::string::npos ? option : "";
}

// "(a=1, b=2)" of the leaves in `varying` that `m` has, or "".
std::string varying_text(const ConfigNode& m, const std::vector<std::string>& varying, const std::string& skip) {
  std::vector<std::string> shown;
  for (const std::string& path : varying)
    if (path != skip)
      if (const ConfigNode* leaf = m.find_path(path)) shown.push_back(path + "=" + display(*leaf));
  return shown.empty() ? "" : "(" + join(shown, ", ") + ")";
}

// Labels for mapping values ("--rows model.mixer"). When every value was chosen from a config
// group ("model=dlinear"), the option's name, with the leaves that differ between values of
// the same option; otherwise the mapping's type, with the leaves that differ between all the
// values of this axis. Labels stay short and still tell values apart.
std::vector<std::string> mapping_labels(const std::vector<AxisValue>& values, const std::string& key) {
  std::vector<std::string> options;
  for (const auto& v : values) options.push_back(group_option(*v.node, key));
  const bool by_option = std::none_of(options.begin(), options.end(), [](const std::string& o) { return o.empty(); });
  std::map<std::string, std::vector<const ConfigNode*>> peers;  // the values a label must tell apart
  for (std::size_t i = 0; i < values.size(); ++i) peers[by_option ? options[i] : ""].push_back(values[i].node);
  std::map<std::string, std::vector<std::string>> varying;
  for (const auto& [option, nodes] : peers) varying[option] = varying_leaves(nodes);
  std::vector<std::string> labels;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::string option = by_option ? options[i] : "";
    const std::string differs = varying_text(*values[i].node, varying[option], by_option ? "" : "type");
    const ConfigNode* type = values[i].node->find("type");
    std::string label = by_option ? options[i] : type && type->is_scalar() ? display(*type) : "";
    if (!differs.empty()) label += (label.empty() ? "" : " ") + differs;
    labels.push_back(label.empty() ? "{}" : label);
  }
  return labels;
}

// Numbers ascending, then other values in first-seen order, then (unset).
void sort_axis_values(std::vector<AxisValue>& values) {
  auto rank = [](const AxisValue& v) { return !v.node ? 2 : v.node->is_number() ? 0 : 1; };
  std::stable_sort(values.begin(), values.end(), [&](const AxisValue& a, const AxisValue& b) {
    if (rank(a) != rank(b)) return rank(a) < rank(b);
    if (rank(a) == 0) return a.node->as_double() < b.node->as_double();
    return a.first_seen < b.first_seen;
  });
}

// The axis of `key` over `runs`, and each run's position on it.
Axis build_axis(const std::vector<RunRecord>& runs, const std::string& key, std::vector<int>& position) {
  std::vector<AxisValue> values;
  std::vector<std::string> run_canon;
  for (const RunRecord& r : runs) {
    const ConfigNode* node = r.config.find_path(key);
    const std::string canon = node ? canonical(*node) : kUnset;
    run_canon.push_back(canon);
    if (std::none_of(values.begin(), values.end(), [&](const AxisValue& v) { return v.canon == canon; }))
      values.push_back({canon, node, static_cast<int>(values.size())});
  }
  sort_axis_values(values);

  Axis axis;
  axis.key = key;
  const bool all_maps = std::all_of(values.begin(), values.end(), [](const AxisValue& v) { return v.node && v.node->is_map(); });
  if (all_maps)
    axis.labels = mapping_labels(values, key);
  else
    for (const auto& v : values) axis.labels.push_back(v.node ? display(*v.node) : kUnset);
  if (std::all_of(values.begin(), values.end(), [](const AxisValue& v) { return v.node && v.node->is_number(); }))
    for (const auto& v : values) axis.numbers.push_back(v.node->as_double());

  position.clear();
  for (const std::string& canon : run_canon)
    position.push_back(static_cast<int>(std::find_if(values.begin(), values.end(),
                                                     [&](const AxisValue& v) { return v.canon == canon; }) -
                                        values.begin()));
  return axis;
}

// ---- Checks -------------------------------------------------------------------------------

void check_key_exists(const std::vector<RunRecord>& runs, const std::string& key, const std::string& option) {
  for (const RunRecord& r : runs)
    if (r.config.find_path(key)) return;
  std::set<std::string> paths;
  std::vector<const ConfigNode*> configs;
  for (const RunRecord& r : runs) {
    all_paths(r.config, "", paths);
    configs.push_back(&r.config);
  }
  std::vector<std::string> hints;
  const std::string dym = did_you_mean(key, std::vector<std::string>(paths.begin(), paths.end()));
  if (!dym.empty()) hints.push_back(dym);
  const std::vector<std::string> varying = varying_leaves(configs);
  if (!varying.empty()) hints.push_back("keys that differ between these runs: " + join_names(varying));
  throw ConfigError("no run has the config key '" + key + "' (" + option + ")", Source{}, "", hints);
}

void check_metric_exists(const std::vector<RunRecord>& runs, const std::string& metric) {
  std::set<std::string> names;
  for (const RunRecord& r : runs)
    for (const auto& kv : r.metrics) names.insert(kv.first);
  // Before any run has finished there is nothing to check against; the cells say pending.
  if (names.empty() || names.count(metric)) return;
  const std::vector<std::string> available(names.begin(), names.end());
  std::vector<std::string> hints;
  const std::string dym = did_you_mean(metric, available);
  if (!dym.empty()) hints.push_back(dym);
  hints.push_back("metrics: " + join_names(available));
  throw ConfigError("no run has the metric '" + metric + "' (--metric)", Source{}, "", hints);
}

Direction resolve_direction(const TableSpec& spec) {
  if (spec.best) return *spec.best;
  if (auto d = metric_direction(spec.metric)) return *d;
  throw ConfigError("cannot tell whether a higher or a lower '" + spec.metric + "' is better", Source{}, "",
                    {"add --best max (higher is better) or --best min (lower is better)"});
}

// Keys a cell's runs may differ in: the seed, execution keys, and the table's own keys.
bool ignored_in_cell(const std::string& path, const TableSpec& spec) {
  for (const auto& k : kExecutionKeys)
    if (under(path, k)) return true;
  for (const auto& k : spec.rows)
    if (under(path, k)) return true;
  return !spec.cols.empty() && under(path, spec.cols);
}

std::string leaf_text(const ConfigNode& config, const std::string& path) {
  const ConfigNode* n = config.find_path(path);
  return n ? display(*n) : kUnset;
}

// Refuses cells whose runs are different configs: averaging them would be silently wrong.
void check_cells_are_one_config(const Table& t, const std::vector<RunRecord>& runs,
                                const std::vector<std::vector<std::vector<int>>>& members) {
  std::set<std::string> differing;
  std::string example;
  for (std::size_t r = 0; r < members.size(); ++r)
    for (std::size_t c = 0; c < members[r].size(); ++c) {
      std::vector<const ConfigNode*> configs;
      for (int i : members[r][c]) configs.push_back(&runs[static_cast<std::size_t>(i)].config);
      std::vector<std::string> keys;
      for (const std::string& k : varying_leaves(configs))
        if (!ignored_in_cell(k, t.spec)) keys.push_back(k);
      if (keys.empty()) continue;
      differing.insert(keys.begin(), keys.end());
      if (!example.empty()) continue;
      // The first differing key, shown in the first two runs that disagree on it.
      const RunRecord& a = runs[static_cast<std::size_t>(members[r][c][0])];
      for (int i : members[r][c]) {
        const RunRecord& b = runs[static_cast<std::size_t>(i)];
        if (leaf_text(a.config, keys[0]) == leaf_text(b.config, keys[0])) continue;
        std::string cell = t.row_label(r);
        if (t.col_axis) cell += ", " + t.col_axis->key + "=" + t.col_axis->labels[c];
        example = "e.g. in the cell " + cell + ": " + keys[0] + " is " + leaf_text(a.config, keys[0]) + " in " +
                  a.label + " but " + leaf_text(b.config, keys[0]) + " in " + b.label;
        break;
      }
    }
  if (differing.empty()) return;
  const std::vector<std::string> keys(differing.begin(), differing.end());
  std::vector<std::string> rows = t.spec.rows;
  rows.push_back(keys[0]);
  std::vector<std::string> hints;
  if (!example.empty()) hints.push_back(example);
  hints.push_back("add the key(s) to --rows or --cols (e.g. --rows " + join(rows, ",") +
                  "), or table only the runs you mean to compare");
  throw ConfigError("runs in the same table cell differ in " + join_names(keys) +
                        "; averaging them would mix different configs",
                    Source{}, "", hints);
}

// ---- Cells --------------------------------------------------------------------------------

void add_to_cell(Cell& cell, const RunRecord& r, const std::string& metric) {
  if (r.status == "finished") {
    auto it = r.metrics.find(metric);
    if (it == r.metrics.end()) ++cell.without_metric;
    else cell.values.push_back(it->second);
  } else if (r.status == "failed") {
    ++cell.failed;
  } else if (r.status == "diverged") {
    ++cell.diverged;
  } else if (r.status == "running") {
    ++cell.running;
  } else {
    ++cell.pending;
  }
}

// Best per column, judged on the printed values, so cells that read the same are all bold.
void mark_best(Table& t) {
  t.best.assign(t.cells.size(), std::vector<bool>(t.columns(), false));
  for (std::size_t c = 0; c < t.columns(); ++c) {
    std::vector<double> shown(t.cells.size(), kNaN);
    double best = kNaN;
    for (std::size_t r = 0; r < t.cells.size(); ++r) {
      if (t.cells[r][c].n() == 0 || !std::isfinite(t.cells[r][c].mean())) continue;
      shown[r] = std::stod(fixed(t.cells[r][c].mean(), t.spec.precision));
      if (std::isnan(best) || (t.direction == Direction::Max ? shown[r] > best : shown[r] < best)) best = shown[r];
    }
    for (std::size_t r = 0; r < t.cells.size(); ++r) t.best[r][c] = !std::isnan(best) && shown[r] == best;
  }
}

// ---- Text ---------------------------------------------------------------------------------

// A cell in two parts: the number (which may be bold) and the counts after it.
struct CellText {
  std::string value, note;
};

CellText cell_text(const Cell& cell, int precision, const std::string& pm, const std::string& missing) {
  if (cell.empty()) return {missing, ""};
  const std::vector<std::pair<int, std::string>> others = {{cell.failed, "failed"},
                                                           {cell.diverged, "diverged"},
                                                           {cell.without_metric, "without the metric"},
                                                           {cell.running, "running"},
                                                           {cell.pending, "pending"}};
  std::vector<std::string> parts;
  if (cell.n() == 0) {  // nothing to average: say what the runs are
    for (const auto& [count, what] : others)
      if (count) parts.push_back(what + " (n=" + std::to_string(count) + ")");
    return {"", join(parts, ", ")};
  }
  std::string value = fixed(cell.mean(), precision);
  if (cell.n() > 1) value += " " + pm + " " + fixed(cell.stddev(), precision);
  parts.push_back("n=" + std::to_string(cell.n()));
  for (const auto& [count, what] : others)
    if (count) parts.push_back(std::to_string(count) + " " + what);
  return {value, "(" + join(parts, ", ") + ")"};
}

// Decimals for an --also column: none for counts (parameters), one for large rates, else the
// table's precision.
int also_precision(const Cell& cell, int precision) {
  bool integral = cell.n() > 0;
  for (double v : cell.values) integral = integral && v == std::floor(v);
  if (integral) return 0;
  return cell.n() > 0 && std::abs(cell.mean()) >= 100 ? 1 : precision;
}

// The --also cells of a row, as text (no counts: they repeat the metric's).
std::vector<CellText> also_texts(const Table& t, std::size_t r, const std::string& pm, const std::string& missing) {
  std::vector<CellText> out;
  for (const Cell& cell : t.also_cells[r]) {
    CellText text = cell_text(cell, also_precision(cell, t.spec.precision), pm, missing);
    if (cell.n() > 0 && cell.stddev() == 0 && also_precision(cell, t.spec.precision) == 0)
      text.value = fixed(cell.mean(), 0);  // a count that does not vary: no "± 0"
    if (cell.n() > 0) text.note.clear();
    out.push_back(text);
  }
  return out;
}

std::string also_caption(const Table& t) {
  return t.spec.also.empty() ? "" : " Also per row, over the same runs: " + join(t.spec.also, ", ") + ".";
}

std::string compose(const CellText& t, bool bold, const std::string& open, const std::string& close) {
  if (t.value.empty()) return t.note;
  const std::string value = bold ? open + t.value + close : t.value;
  return t.note.empty() ? value : value + " " + t.note;
}

std::string column_header(const Table& t, std::size_t c) {
  return t.col_axis ? t.col_axis->key + "=" + t.col_axis->labels[c] : t.spec.metric;
}

std::string direction_words(Direction d) { return d == Direction::Max ? "higher is better" : "lower is better"; }

std::string md_escape(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

std::string tex_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '_': case '%': case '&': case '#': case '$': case '{': case '}': out += '\\'; out += c; break;
      case '\\': out += "\\textbackslash{}"; break;
      case '~': out += "\\textasciitilde{}"; break;
      case '^': out += "\\textasciicircum{}"; break;
      default: out += c;
    }
  }
  return out;
}

// RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string csv_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// Words of a metric name: "best/val_acc" -> best, val, acc.
std::vector<std::string> name_words(const std::string& name) {
  std::vector<std::string> words(1);
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c))) words.back() += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else if (!words.back().empty()) words.emplace_back();
  }
  if (words.back().empty()) words.pop_back();
  return words;
}

}  // namespace

// ---- Public -------------------------------------------------------------------------------

const char* direction_name(Direction d) { return d == Direction::Max ? "max" : "min"; }

std::optional<Direction> metric_direction(const std::string& metric) {
  static const std::vector<std::string> higher = {"acc", "auc", "f1", "precision", "recall", "iou", "r2", "bleu"};
  static const std::vector<std::string> lower = {"loss", "mse",        "mae", "rmse", "error", "err",
                                                 "ppl",  "perplexity", "bpc", "bpb",  "nll",   "time"};
  auto says = [](const std::string& word, const std::vector<std::string>& list) {
    return std::any_of(list.begin(), list.end(), [&](const std::string& w) { return word.find(w) != std::string::npos; });
  };
  const std::vector<std::string> words = name_words(metric);
  for (auto it = words.rbegin(); it != words.rend(); ++it) {  // the head word comes last
    if (says(*it, lower)) return Direction::Min;
    if (says(*it, higher)) return Direction::Max;
  }
  return std::nullopt;
}

double Cell::mean() const {
  if (values.empty()) return kNaN;
  double sum = 0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

double Cell::stddev() const {
  if (values.empty()) return kNaN;
  if (values.size() == 1) return 0;
  const double m = mean();
  double ss = 0;
  for (double v : values) ss += (v - m) * (v - m);
  return std::sqrt(ss / static_cast<double>(values.size() - 1));
}

std::string Table::row_label(std::size_t row) const {
  std::vector<std::string> parts;
  for (std::size_t k = 0; k < row_axes.size(); ++k)
    parts.push_back(row_axes[k].key + "=" + row_axes[k].labels[static_cast<std::size_t>(row_groups[row][k])]);
  return join(parts, ", ");
}

Table build_table(const std::vector<RunRecord>& runs, const TableSpec& spec) {
  if (runs.empty()) throw ConfigError("no runs to tabulate", Source{}, "", {"the sweep has no jobs yet"});
  if (spec.rows.empty()) throw ConfigError("name the config key(s) of the rows with --rows");
  for (std::size_t i = 0; i < spec.rows.size(); ++i)
    if (spec.rows[i] == spec.cols || std::count(spec.rows.begin(), spec.rows.end(), spec.rows[i]) > 1)
      throw ConfigError("the key '" + spec.rows[i] + "' is named twice in --rows/--cols");
  for (const auto& key : spec.rows) check_key_exists(runs, key, "--rows");
  if (!spec.cols.empty()) check_key_exists(runs, spec.cols, "--cols");
  check_metric_exists(runs, spec.metric);
  for (const auto& m : spec.also) check_metric_exists(runs, m);
  if (!spec.also.empty() && !spec.cols.empty())
    throw ConfigError("--also adds columns per row: it cannot be combined with --cols", Source{}, "",
                      {"drop --cols, or make one table per metric"});

  Table t;
  t.spec = spec;
  t.direction = resolve_direction(spec);
  std::vector<std::vector<int>> row_position(spec.rows.size());
  for (std::size_t k = 0; k < spec.rows.size(); ++k) t.row_axes.push_back(build_axis(runs, spec.rows[k], row_position[k]));
  std::vector<int> col_position(runs.size(), 0);
  if (!spec.cols.empty()) t.col_axis = build_axis(runs, spec.cols, col_position);

  // The row tuples present, in axis order (std::map keeps vectors sorted lexicographically).
  std::map<std::vector<int>, std::vector<std::size_t>> by_row;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    std::vector<int> tuple;
    for (const auto& pos : row_position) tuple.push_back(pos[i]);
    by_row[tuple].push_back(i);
  }
  std::vector<std::vector<std::vector<int>>> members;
  for (const auto& [tuple, indices] : by_row) {
    t.row_groups.push_back(tuple);
    members.emplace_back(t.columns());
    for (std::size_t i : indices) members.back()[static_cast<std::size_t>(col_position[i])].push_back(static_cast<int>(i));
  }
  check_cells_are_one_config(t, runs, members);

  for (const auto& row : members) {
    t.cells.emplace_back(t.columns());
    for (std::size_t c = 0; c < row.size(); ++c)
      for (int i : row[c]) add_to_cell(t.cells.back()[c], runs[static_cast<std::size_t>(i)], spec.metric);
    t.also_cells.emplace_back(spec.also.size());
    for (std::size_t m = 0; m < spec.also.size(); ++m)
      for (const auto& column : row)
        for (int i : column) add_to_cell(t.also_cells.back()[m], runs[static_cast<std::size_t>(i)], spec.also[m]);
  }
  mark_best(t);
  return t;
}

std::string format_cell(const Cell& cell, int precision) {
  return compose(cell_text(cell, precision, "±", "—"), false, "", "");
}

std::string format_markdown(const Table& t) {
  std::ostringstream out;
  out << "**" << md_escape(t.spec.metric) << "**: mean ± sample std (n−1) over the finished runs of each cell "
      << "(n = runs averaged); bold = best in each column (" << direction_words(t.direction) << ")."
      << md_escape(also_caption(t)) << "\n\n";
  std::vector<std::string> header, rule;
  for (const auto& axis : t.row_axes) {
    header.push_back(md_escape(axis.key));
    rule.push_back(":--");
  }
  for (std::size_t c = 0; c < t.columns(); ++c) {
    header.push_back(md_escape(column_header(t, c)));
    rule.push_back("--:");
  }
  for (const auto& m : t.spec.also) {
    header.push_back(md_escape(m));
    rule.push_back("--:");
  }
  out << "| " << join(header, " | ") << " |\n| " << join(rule, " | ") << " |\n";
  for (std::size_t r = 0; r < t.cells.size(); ++r) {
    std::vector<std::string> row;
    for (std::size_t k = 0; k < t.row_axes.size(); ++k)
      row.push_back(md_escape(t.row_axes[k].labels[static_cast<std::size_t>(t.row_groups[r][k])]));
    for (std::size_t c = 0; c < t.columns(); ++c)
      row.push_back(md_escape(compose(cell_text(t.cells[r][c], t.spec.precision, "±", "—"), t.best[r][c], "**", "**")));
    for (const auto& text : also_texts(t, r, "±", "—")) row.push_back(md_escape(compose(text, false, "", "")));
    out << "| " << join(row, " | ") << " |\n";
  }
  return out.str();
}

std::string format_latex(const Table& t) {
  std::ostringstream out;
  out << "% " << t.spec.metric << ": written by blocklab table; needs \\usepackage{booktabs}\n"
      << "\\begin{table}[t]\n\\centering\n"
      << "\\caption{" << tex_escape(t.spec.metric) << ": mean $\\pm$ sample std ($n-1$) over the finished runs of "
      << "each cell ($n$ = runs averaged); bold: best in each column (" << direction_words(t.direction) << ")."
      << tex_escape(also_caption(t)) << "}\n"
      << "\\label{tab:" << table_file_stem(t.spec) << "}\n"
      << "\\begin{tabular}{" << std::string(t.row_axes.size(), 'l') << std::string(t.columns() + t.spec.also.size(), 'r')
      << "}\n"
      << "\\toprule\n";
  std::vector<std::string> header;
  for (const auto& axis : t.row_axes) header.push_back(tex_escape(axis.key));
  for (std::size_t c = 0; c < t.columns(); ++c) header.push_back(tex_escape(column_header(t, c)));
  for (const auto& m : t.spec.also) header.push_back(tex_escape(m));
  out << join(header, " & ") << " \\\\\n\\midrule\n";
  for (std::size_t r = 0; r < t.cells.size(); ++r) {
    std::vector<std::string> row;
    for (std::size_t k = 0; k < t.row_axes.size(); ++k)
      row.push_back(tex_escape(t.row_axes[k].labels[static_cast<std::size_t>(t.row_groups[r][k])]));
    for (std::size_t c = 0; c < t.columns(); ++c) {
      CellText text = cell_text(t.cells[r][c], t.spec.precision, "$\\pm$", "---");
      text.note = tex_escape(text.note);
      row.push_back(compose(text, t.best[r][c], "\\textbf{", "}"));
    }
    for (auto text : also_texts(t, r, "$\\pm$", "---")) row.push_back(compose(text, false, "", ""));
    out << join(row, " & ") << " \\\\\n";
  }
  out << "\\bottomrule\n\\end{tabular}\n\\end{table}\n";
  return out.str();
}

std::string format_csv(const Table& t) {
  std::ostringstream out;
  std::vector<std::string> header;
  for (const auto& axis : t.row_axes) header.push_back(csv_field(axis.key));
  if (t.col_axis) header.push_back(csv_field(t.col_axis->key));
  for (const char* h : {"mean", "std", "n", "failed", "diverged", "pending", "running"}) header.push_back(h);
  for (const auto& m : t.spec.also)
    for (const char* part : {" mean", " std"}) header.push_back(csv_field(m + part));
  out << join(header, ",") << "\n";
  for (std::size_t r = 0; r < t.cells.size(); ++r)
    for (std::size_t c = 0; c < t.columns(); ++c) {
      const Cell& cell = t.cells[r][c];
      std::vector<std::string> f;
      for (std::size_t k = 0; k < t.row_axes.size(); ++k)
        f.push_back(csv_field(t.row_axes[k].labels[static_cast<std::size_t>(t.row_groups[r][k])]));
      if (t.col_axis) f.push_back(csv_field(t.col_axis->labels[c]));
      f.push_back(cell.n() > 0 ? csv_number(cell.mean()) : "");
      f.push_back(cell.n() > 1 ? csv_number(cell.stddev()) : "");
      for (int count : {cell.n(), cell.failed, cell.diverged, cell.pending, cell.running}) f.push_back(std::to_string(count));
      for (const Cell& also : t.also_cells[r]) {
        f.push_back(also.n() > 0 ? csv_number(also.mean()) : "");
        f.push_back(also.n() > 1 ? csv_number(also.stddev()) : "");
      }
      out << join(f, ",") << "\n";
    }
  return out.str();
}

std::string table_file_stem(const TableSpec& spec) {
  std::vector<std::string> rows;
  for (const auto& k : spec.rows) rows.push_back(sanitize(k));
  return sanitize(spec.metric) + "_by_" + join(rows, "-") + (spec.cols.empty() ? "" : "_x_" + sanitize(spec.cols));
}

namespace {

// The chart's x axis from `axis`: numeric (log10 when all positive and spanning 20x or more)
// when every value is a number, else categorical. Returns the x of each axis position.
std::vector<double> set_x_axis(LineChart& chart, const Axis& axis) {
  chart.x_label = axis.key;
  if (axis.numbers.empty()) {
    chart.x_categories = axis.labels;
    std::vector<double> xs;
    for (std::size_t i = 0; i < axis.labels.size(); ++i) xs.push_back(static_cast<double>(i));
    return xs;
  }
  const auto [lo, hi] = std::minmax_element(axis.numbers.begin(), axis.numbers.end());
  chart.log_x = *lo > 0 && *hi / *lo >= 20;
  return axis.numbers;
}

// A point per cell: NaN mean and std where no run finished, so the line has a gap there.
void add_point(PlotSeries& s, double x, const Cell& cell) {
  s.x.push_back(x);
  s.y.push_back(cell.mean());
  s.lo.push_back(cell.mean() - cell.stddev());
  s.hi.push_back(cell.mean() + cell.stddev());
}

std::string chart_title(const Table& t) { return t.spec.metric + " (mean ± std over seeds)"; }

// A series' legend entry for column c: "trainer.lr=0.001"; "" without --cols.
std::string column_label(const Table& t, std::size_t c) {
  return t.col_axis ? t.spec.cols + "=" + t.col_axis->labels[c] : "";
}

// The single rows key is numeric and the columns are not: the metric against the rows key, a
// line per column.
bool lines_over_rows(const Table& t) {
  return t.col_axis && t.col_axis->numbers.empty() && t.row_axes.size() == 1 && !t.row_axes[0].numbers.empty();
}

LineChart rows_line_chart(const Table& t) {
  LineChart chart;
  chart.title = chart_title(t);
  chart.y_label = t.spec.metric;
  const std::vector<double> xs = set_x_axis(chart, t.row_axes[0]);
  for (std::size_t c = 0; c < t.columns(); ++c) {
    PlotSeries s;
    s.label = column_label(t, c);
    for (std::size_t r = 0; r < t.cells.size(); ++r)  // row groups are in ascending order
      add_point(s, xs[static_cast<std::size_t>(t.row_groups[r][0])], t.cells[r][c]);
    chart.series.push_back(s);
  }
  return chart;
}

// A row group's category in the dot chart: its value, or its values joined with ", " (the
// keys are the axis title).
std::string category_text(const Table& t, std::size_t r) {
  std::vector<std::string> values;
  for (std::size_t k = 0; k < t.row_axes.size(); ++k)
    values.push_back(t.row_axes[k].labels[static_cast<std::size_t>(t.row_groups[r][k])]);
  return join(values, ", ");
}

// The baseline's row: the first without `baseline`, else the row whose category or full row
// label ("k=v, k2=v2") is `baseline`.
int baseline_row(const Table& t, const std::string& baseline) {
  if (t.cells.empty()) return -1;
  if (baseline.empty()) return 0;
  std::vector<std::string> rows;
  for (std::size_t r = 0; r < t.cells.size(); ++r) {
    if (category_text(t, r) == baseline || t.row_label(r) == baseline) return static_cast<int>(r);
    rows.push_back(category_text(t, r));
  }
  std::vector<std::string> hints;
  const std::string dym = did_you_mean(baseline, rows);
  if (!dym.empty()) hints.push_back(dym);
  hints.push_back("rows: " + join(rows, "; "));
  throw ConfigError("no row of the table is '" + baseline + "' (--baseline)", Source{}, "", hints);
}

DotChart dot_chart(const Table& t, const std::string& baseline) {
  DotChart d;
  d.title = chart_title(t);
  d.value_label = t.spec.metric;
  d.category_label = join(t.spec.rows, ", ");
  d.lower_is_better = t.direction == Direction::Min;
  for (std::size_t r = 0; r < t.cells.size(); ++r) d.categories.push_back(category_text(t, r));
  for (std::size_t c = 0; c < t.columns(); ++c) {
    DotSeries s;
    s.label = column_label(t, c);
    for (std::size_t r = 0; r < t.cells.size(); ++r) {
      const Cell& cell = t.cells[r][c];
      s.value.push_back(cell.mean());
      s.lo.push_back(cell.mean() - cell.stddev());
      s.hi.push_back(cell.mean() + cell.stddev());
    }
    d.series.push_back(s);
  }
  d.baseline = baseline_row(t, baseline);
  return d;
}

}  // namespace

LineChart table_chart(const Table& t) {
  LineChart chart;
  chart.title = chart_title(t);
  chart.y_label = t.spec.metric;
  if (t.col_axis) {  // x = the columns, a line per row group
    const std::vector<double> xs = set_x_axis(chart, *t.col_axis);
    for (std::size_t r = 0; r < t.cells.size(); ++r) {
      PlotSeries s;
      s.label = t.row_label(r);
      for (std::size_t c = 0; c < t.columns(); ++c) add_point(s, xs[c], t.cells[r][c]);
      chart.series.push_back(s);
    }
    return chart;
  }
  // One column: a single series across the row groups (on the rows key's own axis when there
  // is one key, else one category per group; categories are drawn as unjoined points).
  PlotSeries s;
  if (t.row_axes.size() == 1) {
    const std::vector<double> xs = set_x_axis(chart, t.row_axes[0]);
    for (std::size_t r = 0; r < t.cells.size(); ++r)
      add_point(s, xs[static_cast<std::size_t>(t.row_groups[r][0])], t.cells[r][0]);
  } else {
    chart.x_label = join(t.spec.rows, ", ");
    for (std::size_t r = 0; r < t.cells.size(); ++r) {
      chart.x_categories.push_back(t.row_label(r));
      add_point(s, static_cast<double>(r), t.cells[r][0]);
    }
  }
  chart.series.push_back(s);
  return chart;
}

TablePlot table_plot(const Table& t, const std::string& baseline) {
  TablePlot plot;
  const bool numeric_cols = t.col_axis && !t.col_axis->numbers.empty();
  const bool numeric_rows = !t.col_axis && t.row_axes.size() == 1 && !t.row_axes[0].numbers.empty();
  if (numeric_cols || numeric_rows || lines_over_rows(t)) {
    if (!baseline.empty()) {
      const std::string key = numeric_cols ? t.spec.cols : t.spec.rows[0];
      throw ConfigError(
          "--baseline marks a row of a dot chart, but '" + key + "' is numeric, so the plot is a line chart over it",
          Source{}, "", {"leave out --baseline"});
    }
    plot.line = lines_over_rows(t) ? rows_line_chart(t) : table_chart(t);
    return plot;
  }
  plot.dots = true;
  plot.dot = dot_chart(t, baseline);
  return plot;
}

void render_table_plot(const TablePlot& plot, const std::string& png_path, const std::string& svg_path) {
  if (plot.dots)
    render_dot_chart(plot.dot, png_path, svg_path);
  else
    render_line_chart(plot.line, png_path, svg_path);
}

const std::vector<std::string>& repetition_keys() { return kExecutionKeys; }

std::string config_value_identity(const ConfigNode& value) { return canonical(value); }

std::string config_value_text(const ConfigNode& value) { return display(value); }

std::vector<std::string> varying_config_leaves(const std::vector<const ConfigNode*>& configs) {
  return varying_leaves(configs);
}

}  // namespace blocklab
