#include "analysis/pareto_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "analysis/plot.h"
#include "experiments/json_io.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace blocklab {

namespace {

// path=value per leaf, sorted; numbers as numbers (2 and 2.0 agree).
void pareto_leaves(const ConfigNode& n, const std::string& prefix, std::vector<std::string>& out) {
  if (n.is_map()) {
    for (const auto& [k, v] : n.entries()) pareto_leaves(v, prefix + "." + k, out);
    return;
  }
  if (n.is_sequence()) {
    for (std::size_t i = 0; i < n.items().size(); ++i)
      pareto_leaves(n.items()[i], prefix + "." + std::to_string(i), out);
    return;
  }
  if (n.is_number()) {
    char text[40];
    std::snprintf(text, sizeof text, "%.17g", n.as_double());
    out.push_back(prefix + "=" + text);
  } else {
    out.push_back(prefix + "=" + (n.is_null() ? std::string("~") : n.text()));
  }
}

std::string canonical_model(const ConfigNode& model) {
  std::vector<std::string> leaves;
  pareto_leaves(model, "", leaves);
  std::sort(leaves.begin(), leaves.end());
  std::string out;
  for (const auto& l : leaves) out += l + "\n";
  return out;
}

std::string pareto_number(double v, int digits) {
  if (!std::isfinite(v)) return "—";
  char text[40];
  std::snprintf(text, sizeof text, "%.*f", digits, v);
  return text;
}

std::string scratch_text(const RetrainedSubnet& s) {
  if (s.scratch.empty()) return "—";
  return pareto_number(s.mean(), 4) + (s.scratch.size() > 1 ? " ± " + pareto_number(s.stddev(), 4) : "") +
         " (n=" + std::to_string(s.scratch.size()) + ")";
}

}  // namespace

double RetrainedSubnet::mean() const {
  if (scratch.empty()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (double v : scratch) sum += v;
  return sum / static_cast<double>(scratch.size());
}

double RetrainedSubnet::stddev() const {
  if (scratch.size() < 2) return scratch.empty() ? std::numeric_limits<double>::quiet_NaN() : 0.0;
  const double m = mean();
  double ss = 0;
  for (double v : scratch) ss += (v - m) * (v - m);
  return std::sqrt(ss / static_cast<double>(scratch.size() - 1));
}

std::vector<RetrainedSubnet> load_retrained(const std::string& search_dir) {
  const std::string listing = search_dir + "/retrain.jsonl";
  std::istringstream lines(read_text_file(listing, listing));
  std::vector<RetrainedSubnet> out;
  int number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    if (line.empty()) continue;
    const ConfigNode entry = parse_json_object(line, listing, number);
    const ConfigNode& c = entry.at("candidate");
    RetrainedSubnet s;
    s.model = entry.at("model").text();
    s.role = entry.at("role").text();
    s.key = c.at("key").text();
    s.parameters = c.at("parameters").as_int();
    s.mflops = c.at("mflops").as_double();
    s.latency_ms = c.at("latency_ms").as_double();
    s.inherited = c.find("accuracy") ? c.at("accuracy").as_double() : std::numeric_limits<double>::quiet_NaN();
    const std::string file = search_dir + "/conf/model/" + s.model + ".yaml";
    s.config = load_yaml_file(file, file);
    out.push_back(std::move(s));
  }
  if (out.empty())
    throw ConfigError(listing + " lists no subnets", Source{}, "", {"run blocklab search to the end first"});
  return out;
}

// A subnet the search chose twice (on the front and in the tau sample) gets the runs of both; a run
// retrained by two sweeps (the same config and seed: the same run id) counts once.
std::int64_t assign_runs(std::vector<RetrainedSubnet>& subnets, const std::vector<RunRecord>& runs,
                         const std::string& metric) {
  std::map<std::string, std::vector<RetrainedSubnet*>> by_config;
  for (auto& s : subnets) by_config[canonical_model(s.config)].push_back(&s);
  std::map<RetrainedSubnet*, std::set<std::string>> counted;  // run ids per subnet
  std::int64_t unmatched = 0;
  for (const RunRecord& r : runs) {
    const ConfigNode* model = r.config.find("model");
    const auto it = model ? by_config.find(canonical_model(*model)) : by_config.end();
    if (it == by_config.end()) {
      ++unmatched;
      continue;
    }
    const auto m = r.metrics.find(metric);
    if (r.status != "finished" || m == r.metrics.end()) continue;
    const std::string run_id = std::filesystem::path(r.run_dir).filename().string();
    for (RetrainedSubnet* s : it->second)
      if (run_id.empty() || counted[s].insert(run_id).second) s->scratch.push_back(m->second);
  }
  return unmatched;
}

double kendall_tau(const std::vector<double>& x, const std::vector<double>& y) {
  const std::size_t n = std::min(x.size(), y.size());
  double concordant = 0, discordant = 0, tied_x = 0, tied_y = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j) {
      const double dx = x[i] - x[j], dy = y[i] - y[j];
      if (dx == 0) tied_x += 1;
      if (dy == 0) tied_y += 1;
      if (dx * dy > 0) concordant += 1;
      if (dx * dy < 0) discordant += 1;
    }
  const double pairs = static_cast<double>(n) * static_cast<double>(n - (n > 0)) / 2;
  const double denominator = std::sqrt((pairs - tied_x) * (pairs - tied_y));
  if (n < 2 || denominator == 0) return std::numeric_limits<double>::quiet_NaN();
  return (concordant - discordant) / denominator;
}

bool dominates(double accuracy_a, double cost_a, double accuracy_b, double cost_b) {
  return accuracy_a >= accuracy_b && cost_a <= cost_b && (accuracy_a > accuracy_b || cost_a < cost_b);
}

std::string pareto_markdown(const std::vector<RetrainedSubnet>& subnets, const std::string& metric,
                            const std::string& commands) {
  std::string md = "```\n" + commands +
                   "```\n\n| model | role | subnet | parameters | MFLOPs | latency (ms) | "
                   "inherited acc | " +
                   metric + " from scratch |\n|---|---|---|---:|---:|---:|---:|---:|\n";
  for (const auto& s : subnets)
    md += "| " + s.model + " | " + s.role + " | " + s.key + " | " + std::to_string(s.parameters) + " | " +
          pareto_number(s.mflops, 2) + " | " + pareto_number(s.latency_ms, 3) + " | " + pareto_number(s.inherited, 4) +
          " | " + scratch_text(s) + " |\n";
  const auto reference =
      std::find_if(subnets.begin(), subnets.end(), [](const auto& s) { return s.role == "reference"; });
  if (reference != subnets.end() && !reference->scratch.empty()) {
    md += "\nAgainst the reference (" + reference->key + ", " + scratch_text(*reference) + "), from scratch:\n\n";
    for (const auto& s : subnets) {
      if (s.role != "front" || s.scratch.empty()) continue;
      const bool by_latency = dominates(s.mean(), s.latency_ms, reference->mean(), reference->latency_ms);
      const bool by_params = dominates(s.mean(), static_cast<double>(s.parameters), reference->mean(),
                                       static_cast<double>(reference->parameters));
      md += "- " + s.model + ": " + (by_latency ? "dominates" : "does not dominate") + " in accuracy and latency, " +
            (by_params ? "dominates" : "does not dominate") + " in accuracy and parameters\n";
    }
  }
  std::vector<double> inherited, scratch, inherited_all, scratch_all;
  std::set<std::string> distinct;  // a subnet chosen twice (front and tau) counts once over all
  for (const auto& s : subnets) {
    if (s.scratch.empty() || !std::isfinite(s.inherited)) continue;
    if (distinct.insert(s.key).second) inherited_all.push_back(s.inherited), scratch_all.push_back(s.mean());
    if (s.role == "tau") inherited.push_back(s.inherited), scratch.push_back(s.mean());
  }
  md += "\nKendall tau (inherited vs from-scratch accuracy): " + pareto_number(kendall_tau(inherited, scratch), 3) +
        " over the " + std::to_string(inherited.size()) + " subnets sampled across inherited accuracy; " +
        pareto_number(kendall_tau(inherited_all, scratch_all), 3) + " over all " +
        std::to_string(inherited_all.size()) + " retrained.\n";
  return md;
}

void render_pareto_plots(const std::vector<RetrainedSubnet>& subnets, const std::string& metric,
                         const std::string& path_stem) {
  for (const bool by_latency : {true, false}) {
    LineChart chart;
    chart.title = "Retrained subnets: " + metric + (by_latency ? " vs latency" : " vs parameters");
    chart.x_label = by_latency ? "latency, one image (ms)" : "parameters";
    chart.y_label = "accuracy";
    PlotSeries scratch{"from scratch (mean over seeds)"}, inherited{"inherited weights"},
        reference{"reference, from scratch"};
    for (const auto& s : subnets) {
      const double x = by_latency ? s.latency_ms : static_cast<double>(s.parameters);
      if (std::isfinite(s.inherited)) inherited.x.push_back(x), inherited.y.push_back(s.inherited);
      if (s.scratch.empty()) continue;
      PlotSeries& to = s.role == "reference" ? reference : scratch;
      to.x.push_back(x), to.y.push_back(s.mean());  // the table has the std (no bands on a scatter)
    }
    for (PlotSeries* p : {&scratch, &inherited, &reference}) p->line = false;
    inherited.opacity = 0.5;
    for (PlotSeries* p : {&scratch, &inherited, &reference})
      if (!p->x.empty()) chart.series.push_back(*p);
    if (chart.series.empty()) continue;
    const std::string stem = path_stem + (by_latency ? "_latency" : "_parameters");
    render_line_chart(chart, stem + ".png", stem + ".svg");
  }
}

}  // namespace blocklab
