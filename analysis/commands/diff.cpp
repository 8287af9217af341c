// blocklab diff <runA> <runB>: how two runs differ, in config (with where each value came
// from) and in results.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

#include "analysis/run_records.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/registry.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

using Rows = std::vector<std::vector<std::string>>;

// Display width of UTF-8 text (continuation bytes take no column).
std::size_t width(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// Columns padded to their widest cell; the last column is not padded.
std::string aligned(const Rows& rows, const std::string& indent) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (widths.size() <= i) widths.push_back(0);
      widths[i] = std::max(widths[i], width(row[i]));
    }
  std::string out;
  for (const auto& row : rows) {
    std::string line = indent;
    for (std::size_t i = 0; i < row.size(); ++i)
      line += row[i] + (i + 1 < row.size() ? std::string(widths[i] - width(row[i]) + 2, ' ') : "");
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

// The config's leaves (scalars, lists, empty mappings) by dotted path, in file order.
void flatten(const ConfigNode& n, const std::string& prefix, std::vector<std::pair<std::string, const ConfigNode*>>& out) {
  if (n.is_map() && !n.entries().empty()) {
    for (const auto& [k, v] : n.entries()) flatten(v, prefix.empty() ? k : prefix + "." + k, out);
    return;
  }
  out.emplace_back(prefix, &n);
}

std::string value_text(const ConfigNode* n) {
  if (!n) return "(absent)";
  if (n->is_sequence()) {
    const std::string json = dump_json(*n);
    return json.substr(0, json.size() - 1);
  }
  return yaml_scalar_text(*n);
}

// Where the value(s) came from: "conf/trainer/default.yaml:3" when both runs agree (or only
// one has the key), else "A: ...; B: ..."; "" for runs written without provenance.
std::string provenance(const ConfigNode* a, const ConfigNode* b) {
  const std::string sa = a && a->source().known() ? a->source().text() : "";
  const std::string sb = b && b->source().known() ? b->source().text() : "";
  if (!a) return sb;
  if (!b || sa == sb) return sa;
  std::string out = sa.empty() ? "" : "A: " + sa;
  if (!sb.empty()) out += (out.empty() ? "" : "; ") + ("B: " + sb);
  return out;
}

std::string config_section(const RunRecord& a, const RunRecord& b) {
  std::vector<std::pair<std::string, const ConfigNode*>> la, lb;
  flatten(a.config, "", la);
  flatten(b.config, "", lb);
  std::map<std::string, const ConfigNode*> in_b(lb.begin(), lb.end());
  std::map<std::string, const ConfigNode*> in_a(la.begin(), la.end());
  Rows rows = {{"", "key", "A", "B", "from"}};
  for (const auto& [path, node] : la) {  // changed and removed, in A's order
    auto it = in_b.find(path);
    if (it == in_b.end()) rows.push_back({"-", path, value_text(node), value_text(nullptr), provenance(node, nullptr)});
    else if (!node->same_value(*it->second))
      rows.push_back({"~", path, value_text(node), value_text(it->second), provenance(node, it->second)});
  }
  for (const auto& [path, node] : lb)  // added, in B's order
    if (!in_a.count(path)) rows.push_back({"+", path, value_text(nullptr), value_text(node), provenance(nullptr, node)});
  if (rows.size() == 1) return "config: identical (" + std::to_string(la.size()) + " values)\n";
  return "config: " + std::to_string(rows.size() - 1) + " of " + std::to_string(std::max(la.size(), lb.size())) +
         " values differ (~ changed, - only in A, + only in B)\n" + aligned(rows, "  ");
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string status_text(const RunRecord& r) {
  if (r.reason.empty()) return r.status;
  return r.reason.rfind(r.status, 0) == 0 ? r.reason : r.status + ": " + r.reason;
}

std::string commit_text(const RunRecord& r) {
  auto commit = r.env.find("git_commit");
  if (commit == r.env.end()) return "(no env.json)";
  auto dirty = r.env.find("git_dirty");
  return commit->second.substr(0, 12) + (dirty != r.env.end() && dirty->second == "true" ? "-dirty" : "");
}

std::string metric_text(const RunRecord& r, const std::string& name) {
  auto it = r.metrics.find(name);
  return it == r.metrics.end() ? "-" : number(it->second);
}

// Evaluation metrics ("test/acc", "val/loss") first, then the run's counters and timings.
std::vector<std::string> metric_names(const RunRecord& a, const RunRecord& b) {
  std::vector<std::string> names;
  for (const RunRecord* r : {&a, &b})
    for (const auto& kv : r->metrics)
      if (std::find(names.begin(), names.end(), kv.first) == names.end()) names.push_back(kv.first);
  std::stable_sort(names.begin(), names.end(), [](const std::string& x, const std::string& y) {
    const bool ex = x.find('/') != std::string::npos, ey = y.find('/') != std::string::npos;
    return ex != ey ? ex : x < y;
  });
  return names;
}

std::string results_section(const RunRecord& a, const RunRecord& b) {
  Rows rows = {{"", "A", "B", "B - A"}, {"status", status_text(a), status_text(b), ""},
               {"git commit", commit_text(a), commit_text(b), ""}};
  for (const std::string& name : metric_names(a, b)) {
    auto ia = a.metrics.find(name), ib = b.metrics.find(name);
    // The change where both runs have the metric and it differs; blank reads "the same".
    std::string delta;
    if (ia != a.metrics.end() && ib != b.metrics.end() && ib->second != ia->second)
      delta = (ib->second > ia->second ? "+" : "") + number(ib->second - ia->second);
    rows.push_back({name, metric_text(a, name), metric_text(b, name), delta});
  }
  return "results:\n" + aligned(rows, "  ");
}

int diff_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help");
  const auto cl = parse_command_line("diff", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help("diff", "<run-dir-A> <run-dir-B>",
                              "Shows how two runs differ: the config values that were changed, removed (-) or added (+),\n"
                              "with the file:line or command-line override each came from, then status, git commit and\n"
                              "the final metrics side by side.",
                              opts,
                              "Runs written before config.yaml carried provenance comments show no origin.\n"
                              "Example:\n  blocklab diff results/runs/vit_fmnist/fae098b377cc results/runs/vit_fmnist/3c1d0e9a7b21\n");
    return 0;
  }
  if (cl.positional.size() != 2)
    throw UsageError("blocklab diff: name two run directories (got " + std::to_string(cl.positional.size()) +
                     ")\n  see: blocklab diff --help");
  const RunRecord a = load_run_directory(cl.positional[0]);
  const RunRecord b = load_run_directory(cl.positional[1]);
  std::cout << "A: " << a.run_dir << "\nB: " << b.run_dir << "\n\n"
            << config_section(a, b) << "\n"
            << results_section(a, b);
  return 0;
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"diff", "compare two runs: config (with provenance) and results", diff_command, 62});

}  // namespace
}  // namespace blocklab
