#include "analysis/run_records.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "experiments/json_io.h"
#include "registry/config_error.h"
#include "registry/suggest.h"
#include "registry/yaml_io.h"

namespace fs = std::filesystem;

namespace blocklab {
namespace {

bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

bool is_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

bool is_run_dir(const std::string& dir) { return is_file(dir + "/config.yaml"); }
bool is_sweep_dir(const std::string& dir) { return is_file(dir + "/manifest.jsonl"); }

// "runs/a/" and "runs/a" name the same directory; labels and messages use the second.
std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// ---- Provenance comments in config.yaml ---------------------------------------------------

// The text of a line's "# comment", or "". A '#' inside a quoted scalar is not a comment; a
// quote only opens a scalar where one can start (so the apostrophe in "don't" opens nothing).
std::string trailing_comment(const std::string& line) {
  char quote = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    const char prev = i ? line[i - 1] : ' ';
    if (quote) {
      if (c == '\\' && quote == '"') ++i;
      else if (c == quote) quote = 0;
    } else if ((c == '"' || c == '\'') && std::string(" \t[{,").find(prev) != std::string::npos) {
      quote = c;
    } else if (c == '#' && (prev == ' ' || prev == '\t' || i == 0)) {
      return trim(line.substr(i + 1));
    }
  }
  return "";
}

// Reads back Source::text(): "command line 'k=v'", "file:line" or "file".
Source source_from_comment(const std::string& text) {
  const std::string cli = "command line '";
  if (text.size() > cli.size() && text.compare(0, cli.size(), cli) == 0 && text.back() == '\'')
    return Source::command_line(text.substr(cli.size(), text.size() - cli.size() - 1));
  const auto colon = text.rfind(':');
  if (colon != std::string::npos && colon + 1 < text.size() &&
      std::all_of(text.begin() + static_cast<std::ptrdiff_t>(colon) + 1, text.end(),
                  [](char c) { return c >= '0' && c <= '9'; }))
    return Source::in_file(text.substr(0, colon), std::stoi(text.substr(colon + 1)));
  return Source::in_file(text, 0);
}

// A block sequence starts its first item on its own line ("- x"); a flow list ("[1, 2]")
// sits on its key's line and carries the key's comment.
bool is_block_sequence(const ConfigNode& node, const std::vector<std::string>& lines) {
  const int line = node.source().line;
  if (!node.is_sequence() || node.items().empty() || line < 1 || line > static_cast<int>(lines.size())) return false;
  return trim(lines[static_cast<std::size_t>(line - 1)]).rfind('-', 0) == 0;
}

void restore_sources(ConfigNode& node, const std::vector<std::string>& lines) {
  if (node.is_map() && !node.entries().empty()) {
    for (auto& entry : node.entries()) restore_sources(entry.second, lines);
    return;
  }
  if (is_block_sequence(node, lines)) {
    for (auto& item : node.items()) restore_sources(item, lines);
    return;
  }
  // A leaf written on one line: a scalar, null, {} or a flow list.
  const int line = node.source().line;
  const std::string comment =
      line >= 1 && line <= static_cast<int>(lines.size()) ? trailing_comment(lines[static_cast<std::size_t>(line - 1)]) : "";
  node.set_source_recursive(comment.empty() ? Source{} : source_from_comment(comment));
}

// ---- JSON files -----------------------------------------------------------------------------

ConfigError corrupt_file(const std::string& path, const std::string& what, const std::string& hint) {
  return ConfigError("corrupt file " + path + ": " + what, Source{}, "", {hint});
}

// A JSON object as a ConfigNode; a file that is not one is corrupt.
ConfigNode load_json_object(const std::string& path, const std::string& hint) {
  Json value;
  try {
    value = read_json_file(path);
  } catch (const ConfigError& e) {
    // "not valid JSON at line 1, column 18: ..." (a missing file keeps its own message)
    const std::string what = e.diagnostics().empty() ? e.what() : e.diagnostics().front().message;
    if (what.rfind("not valid JSON", 0) != 0) throw;
    throw corrupt_file(path, what, hint);
  }
  if (!value.is_object()) throw corrupt_file(path, "expected a JSON object {...}", hint);
  return json_to_config(value, Source::in_file(path, 0));
}

// JSON numbers; a non-finite one (null + flag in the file, see experiments/json_io.h) is read
// as ".nan" / ".inf", which is a number too.
bool json_number(const ConfigNode& n, double& out) {
  if (!n.is_scalar() || n.quoted() || !n.is_number()) return false;
  out = n.as_double();
  return true;
}

std::string json_string(const ConfigNode& object, const std::string& key) {
  const ConfigNode* n = object.find(key);
  return n && n->is_scalar() ? n->text() : "";
}

const char* kSummaryHint = "summary.json is written once, atomically, when a run ends: restore it or rerun the run";

// Status, reason and metrics from summary.json.
void read_summary(const std::string& path, RunRecord& r) {
  const ConfigNode s = load_json_object(path, kSummaryHint);
  const ConfigNode* status = s.find("status");
  if (!status || !status->is_scalar()) throw corrupt_file(path, "no \"status\" field", kSummaryHint);
  const std::string& text = status->text();
  if (text == "finished") {
    r.status = "finished";
  } else if (text.rfind("diverged", 0) == 0) {
    r.status = "diverged";
    r.reason = text;  // "diverged at step K"
  } else {
    r.status = "failed";
    const std::string error = json_string(s, "error");  // the run's one-line failure
    r.reason = error.empty() ? text : error;
  }
  double v = 0;
  for (const auto& [key, value] : s.entries())
    if (json_number(value, v)) r.metrics[key] = v;
  // The final evaluation under its own names; it wins over a top-level number of the same name.
  if (const ConfigNode* final_eval = s.find("final"); final_eval && final_eval->is_map())
    for (const auto& [key, value] : final_eval->entries())
      if (json_number(value, v)) r.metrics[key] = v;
  // The best epoch's evaluation as "best/<name>" ("best/test/mse": the test at the best val).
  if (const ConfigNode* best_eval = s.find("best"); best_eval && best_eval->is_map())
    for (const auto& [key, value] : best_eval->entries())
      if (json_number(value, v)) r.metrics["best/" + key] = v;
}

void read_env(const std::string& path, RunRecord& r) {
  const ConfigNode env = load_json_object(path, "env.json is written when a run starts: restore it or rerun the run");
  for (const auto& [key, value] : env.entries())
    if (value.is_scalar()) r.env[key] = value.text();
}

// ---- Sweeps ---------------------------------------------------------------------------------

const char* kStateHint = "the sweep's workers write state.json; delete it to run the job again";

// One job of a sweep directory, from jobs/<job>/{config.yaml,state.json} and its run.
RunRecord load_sweep_job(const std::string& sweep, const std::string& job) {
  const std::string jdir = sweep + "/jobs/" + job;
  RunRecord r;
  r.label = sweep + " job " + job;
  r.config = load_config_with_provenance(jdir + "/config.yaml", jdir + "/config.yaml");
  const std::string state_path = jdir + "/state.json";
  if (!is_file(state_path)) {
    r.status = "pending";
    return r;
  }
  const ConfigNode state = load_json_object(state_path, kStateHint);
  const std::string s = json_string(state, "state");
  const std::string run_dir = json_string(state, "run_dir");
  if (!run_dir.empty()) r.run_dir = sweep + "/" + strip_trailing_slashes(run_dir);
  const std::string summary = r.run_dir.empty() ? "" : r.run_dir + "/summary.json";
  if (s == "pending" || s == "running") {
    r.status = s;
  } else if (s == "done") {
    if (summary.empty() || !is_file(summary))
      throw corrupt_file(state_path, "the job is done but " + (summary.empty() ? "names no run_dir" : summary + " is missing"),
                         kStateHint);
    r.label = r.run_dir;
    read_summary(summary, r);
  } else if (s == "failed" || s == "diverged") {
    r.status = s;
    r.reason = json_string(state, "reason");
    if (r.reason.empty()) r.reason = "exit code " + json_string(state, "exit_code");
    if (s == "diverged" && is_file(summary)) read_summary(summary, r);  // "diverged at step K"
  } else {
    throw corrupt_file(state_path, s.empty() ? "no \"state\" field" : "unknown state '" + s + "'",
                       "states: pending, running, done, failed, diverged");
  }
  if (!r.run_dir.empty() && is_file(r.run_dir + "/env.json")) read_env(r.run_dir + "/env.json", r);
  return r;
}

std::vector<RunRecord> load_sweep(const std::string& dir) {
  const std::string manifest = dir + "/manifest.jsonl";
  const std::vector<std::string> lines = split_lines(read_text_file(manifest, manifest));
  std::vector<RunRecord> records;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (trim(lines[i]).empty()) continue;
    const std::string where = manifest + ":" + std::to_string(i + 1);
    const char* hint = "manifest.jsonl is written by `blocklab sweep`: recreate the sweep";
    Json entry;
    if (!try_parse_json(lines[i], entry)) throw corrupt_file(where, "not valid JSON", hint);
    const auto job_value = entry.is_object() ? entry.find("job") : entry.end();
    const std::string job = job_value != entry.end() && job_value->is_string() ? job_value->get<std::string>() : "";
    if (job.empty() || job.find('/') != std::string::npos) throw corrupt_file(where, "no \"job\" id", hint);
    records.push_back(load_sweep_job(dir, job));
  }
  return records;
}

// ---- Paths ----------------------------------------------------------------------------------

ConfigError not_a_run_directory(const std::string& path) {
  return ConfigError("'" + path + "' is not a run directory, a sweep directory or a directory of runs", Source{}, "",
                     {"a run directory holds config.yaml (results/runs/<experiment>/<id>)",
                      "a sweep directory holds manifest.jsonl (results/sweeps/<id>)"});
}

ConfigError no_such_path(const std::string& path) {
  std::vector<std::string> hints;
  const fs::path p(path);
  const fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  std::vector<std::string> siblings;
  if (fs::is_directory(parent, ec))
    for (const auto& e : fs::directory_iterator(parent, ec)) siblings.push_back(e.path().filename().string());
  const std::string dym = did_you_mean(p.filename().string(), siblings);
  if (!dym.empty()) hints.push_back(dym);
  return ConfigError("no such directory: '" + path + "'", Source{}, "", hints);
}

// The run and sweep directories directly under `dir`, in name order.
std::vector<RunRecord> load_parent(const std::string& dir) {
  std::vector<std::string> children;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory()) children.push_back(e.path().filename().string());
  std::sort(children.begin(), children.end());
  std::vector<RunRecord> records;
  bool any = false;
  for (const std::string& child : children) {
    const std::string path = dir + "/" + child;
    if (is_run_dir(path)) {
      records.push_back(load_run_directory(path));
      any = true;
    } else if (is_sweep_dir(path)) {
      for (auto& r : load_sweep(path)) records.push_back(std::move(r));
      any = true;
    }
  }
  if (!any) throw not_a_run_directory(dir);
  return records;
}

// A sweep id alone ("3f2a9c...") names results/sweeps/<id>, as in `blocklab status`.
std::string resolve_path(const std::string& given) {
  const std::string path = strip_trailing_slashes(given);
  std::error_code ec;
  if (!fs::exists(path, ec) && path.find('/') == std::string::npos && is_sweep_dir("results/sweeps/" + path))
    return "results/sweeps/" + path;
  return path;
}

}  // namespace

ConfigNode load_config_with_provenance(const std::string& path, const std::string& display_name) {
  const std::string text = read_text_file(path, display_name);
  ConfigNode config = parse_yaml(text, display_name);
  if (!config.is_map())
    throw corrupt_file(display_name, "expected a mapping of config values (key: value lines)",
                       "config.yaml holds the run's resolved config: restore it or rerun the run");
  restore_sources(config, split_lines(text));
  return config;
}

std::string resolve_sweep_directory(const std::string& given) {
  const std::string path = resolve_path(given);
  return is_sweep_dir(path) ? path : "";
}

RunRecord load_run_directory(const std::string& given) {
  const std::string dir = strip_trailing_slashes(given);
  if (!is_run_dir(dir)) throw not_a_run_directory(dir);
  RunRecord r;
  r.label = r.run_dir = dir;
  r.config = load_config_with_provenance(dir + "/config.yaml", dir + "/config.yaml");
  r.status = "running";  // no summary.json yet (or the run was killed before writing it)
  if (is_file(dir + "/summary.json")) read_summary(dir + "/summary.json", r);
  if (is_file(dir + "/env.json")) read_env(dir + "/env.json", r);
  return r;
}

std::vector<RunRecord> load_run_records(const std::vector<std::string>& paths) {
  if (paths.empty())
    throw ConfigError("no runs given", Source{}, "", {"name a sweep directory, run directories or a directory of runs"});
  std::vector<RunRecord> records;
  for (const std::string& given : paths) {
    const std::string path = resolve_path(given);
    std::error_code ec;
    if (!fs::exists(path, ec)) throw no_such_path(path);
    if (is_run_dir(path)) {
      records.push_back(load_run_directory(path));
    } else if (is_sweep_dir(path)) {
      for (auto& r : load_sweep(path)) records.push_back(std::move(r));
    } else if (is_dir(path)) {
      for (auto& r : load_parent(path)) records.push_back(std::move(r));
    } else {
      const std::string parent = fs::path(path).parent_path().string();
      throw ConfigError("'" + path + "' is a file, not a run directory", Source{}, "",
                        {"pass the directory that holds it: " + (parent.empty() ? "." : parent)});
    }
  }
  return records;
}

}  // namespace blocklab
