// Sweep planning (grid expansion, validation of every point) and the sweep directory.
#include "experiments/sweep.h"

#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "experiments/experiment.h"
#include "experiments/json_io.h"
#include "experiments/run_files.h"
#include "experiments/task.h"
#include "registry/override.h"
#include "registry/registry.h"
#include "registry/suggest.h"
#include "registry/yaml_io.h"

namespace fs = std::filesystem;

namespace blocklab {

// One swept dimension: a key (or zip'ed keys) and its values (one tuple per point). Not in the
// anonymous namespace: SweepPlanner::Impl, which has external linkage, holds them.
struct SweepAxis {
  std::vector<std::string> keys;                // as typed, with +/++ and @package
  std::vector<std::string> names;               // the keys without prefixes, for params
  std::vector<std::vector<ConfigNode>> values;  // values[point][key]
};

namespace {

using Axis = SweepAxis;

std::string op_prefix(Override::Op op) {
  switch (op) {
    case Override::Op::Add: return "+";
    case Override::Op::ForceAdd: return "++";
    case Override::Op::Delete: return "~";
    default: return "";
  }
}

std::string flow_text(const ConfigNode& v) { return override_value_text(v); }  // reads back as the same value

// glob(...) over the options of a config group ("model=glob(vit_*)").
std::vector<ConfigNode> glob_group_options(const std::string& config_dir, const std::string& group,
                                           const std::vector<std::string>& patterns, const Source& src) {
  std::vector<ConfigNode> out;
  for (const auto& option : list_group_options(config_dir, group))
    for (const auto& p : patterns)
      if (glob_match(p, option)) {
        out.push_back(ConfigNode::string(option, src));
        break;
      }
  return out;
}

// The registry kind of the component a dotted config key names: walks the experiment schema
// through sections and components ("model.mixer.type" -> mixer). Empty when it names none.
std::string component_kind_at(const ConfigNode& config, const std::string& key) {
  const ConfigNode* task = config.find("task");
  if (!task || !task->is_scalar() || !task_registry().contains(task->text())) return "";
  Schema root = experiment_common_schema();
  for (const auto& p : task_registry().info(task->text()).schema.params()) root.add(p);
  const auto lookup = RegistryIndex::instance().lookup();
  const Schema* schema = &root;
  const ConfigNode* node = &config;
  Schema component_schema;
  const auto parts = split_path(key);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const ParamSpec* spec = schema ? schema->find(parts[i]) : nullptr;
    if (!spec) return "";
    const ConfigNode* child = node ? node->find(parts[i]) : nullptr;
    const bool last = i + 1 == parts.size();
    if (spec->type == ParamType::Component) {
      if (last || (i + 2 == parts.size() && parts[i + 1] == "type")) return spec->component_kind;
      std::vector<std::string> hints;
      std::string message;
      const Schema* s = child ? lookup(spec->component_kind, component_key(*child), hints, message) : nullptr;
      if (!s) return "";
      schema = s;
    } else if (spec->type == ParamType::Section) {
      schema = spec->section.get();
    } else {
      return "";
    }
    node = child;
  }
  return "";
}

std::vector<ConfigNode> expand_glob(const Override& o, const std::string& config_dir, const std::string& experiment,
                                    const std::vector<std::string>& fixed_texts) {
  const Sweep& sw = *o.sweep;
  if (is_config_group(config_dir, o.key)) {
    auto v = glob_group_options(config_dir, o.key, sw.patterns, o.source());
    if (v.empty())
      throw ConfigError("glob(" + join_names(sw.patterns) + ") matches no option of config group '" + o.key + "'",
                        o.source(), "", {"options: " + join_names(list_group_options(config_dir, o.key))});
    return v;
  }
  // A registry name: find the component's kind from the experiment's schema.
  const Experiment base = load_experiment(config_dir, experiment, fixed_texts, /*validate=*/false);
  const std::string kind = component_kind_at(base.config, o.key);
  if (kind.empty())
    throw ConfigError("glob() needs a key that names a registry entry or a config group; '" + o.key +
                          "' is neither",
                      o.source(), o.key,
                      {"e.g. model.mixer.type=glob('attention/*'), or a config group such as model=glob('vit_*')"});
  const RegistryBase* registry = RegistryIndex::instance().find(kind);
  std::vector<ConfigNode> out;
  for (const auto& name : registry->keys())
    for (const auto& p : sw.patterns)
      if (glob_match(p, name)) {
        out.push_back(ConfigNode::string(name, o.source()));
        break;
      }
  if (out.empty())
    throw ConfigError("glob(" + join_names(sw.patterns) + ") matches no " + kind + " name", o.source(), o.key,
                      {"see: blocklab list " + kind});
  return out;
}

std::string key_with_package(const Override& o) { return o.package.empty() ? o.key : o.key + "@" + o.package; }

// Numbers in one spelling (1e-3 and 0.001 are the same learning rate).
ConfigNode canonical(const ConfigNode& n) {
  ConfigNode out = n;
  if (n.is_float()) return ConfigNode::floating(n.as_double(), n.source());
  for (auto& item : out.items()) item = canonical(item);
  for (auto& entry : out.entries()) entry.second = canonical(entry.second);
  return out;
}

std::string job_id_of(const ConfigNode& config) {
  ConfigNode identity = canonical(config);
  identity.erase("output_dir");  // where results go and how many threads compute them are
  identity.erase("threads");     // decided by the launcher, not part of what a job computes
  const std::string text = dump_yaml(identity);
  return hex64(fnv1a64(text.data(), text.size())).substr(0, 12);
}

std::vector<std::string> string_list(const ConfigNode* n) {
  std::vector<std::string> out;
  if (n && n->is_sequence())
    for (const auto& x : n->items()) out.push_back(x.text());
  return out;
}

}  // namespace

std::string override_text(const std::string& key, const ConfigNode& value) { return key + "=" + flow_text(value); }

std::string params_text(const SweepJob& job) {
  std::string out;
  for (const auto& [k, v] : job.params) out += (out.empty() ? "" : " ") + override_text(k, v);
  return out;
}

namespace {

// The number of values range() gives, without making them (a typo such as range(0,1e9) must
// not allocate a billion values before the size check). Mirrors Sweep::values().
std::size_t range_count(const Sweep& sw) {
  if (!(sw.step != 0) || !std::isfinite(sw.start) || !std::isfinite(sw.stop) || !std::isfinite(sw.step)) return 0;
  const double estimate = std::ceil((sw.stop - sw.start) / sw.step);
  if (!(estimate > 0)) return 0;
  if (estimate > 1e15) return std::numeric_limits<std::size_t>::max();
  auto stops = [&](std::size_t i) {
    const double v = sw.start + static_cast<double>(i) * sw.step;
    return sw.step > 0 ? v >= sw.stop - 1e-12 * std::abs(sw.step) : v <= sw.stop + 1e-12 * std::abs(sw.step);
  };
  std::size_t n = static_cast<std::size_t>(estimate);
  for (int k = 0; k < 3 && n > 0 && stops(n - 1); ++k) --n;
  for (int k = 0; k < 3 && !stops(n); ++k) ++n;
  return n;
}

std::size_t saturating_product(std::size_t a, std::size_t b) {
  if (a == 0 || b == 0) return 0;
  return a > std::numeric_limits<std::size_t>::max() / b ? std::numeric_limits<std::size_t>::max() : a * b;
}

std::string thousands(std::size_t n) {
  if (n == std::numeric_limits<std::size_t>::max()) return "more than 10^18";
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// A problem found at some points, reported once with how many points have it.
struct Problem {
  Diagnostic diagnostic;
  std::size_t count = 0;
  std::string example;
};

}  // namespace

struct SweepPlanner::Impl {
  SweepRequest request;
  std::vector<Override> overrides;
  std::vector<Axis> axes;
  std::vector<int> slot;  // which axis override i is (-1: fixed)
  std::vector<std::string> axis_names;
  std::size_t total = 1;

  // The job at `point` (overrides and params; no config yet) and its overrides as one text.
  SweepJob job_at(std::size_t point, std::string& example) const {
    std::vector<std::size_t> pick(axes.size());
    for (std::size_t rest = point, a = axes.size(); a-- > 0;) pick[a] = rest % axes[a].values.size(), rest /= axes[a].values.size();
    SweepJob job;
    job.index = static_cast<int>(point);
    for (std::size_t i = 0; i < overrides.size(); ++i) {
      if (slot[i] < 0) {
        job.overrides.push_back(overrides[i].text);
        continue;
      }
      const Axis& a = axes[static_cast<std::size_t>(slot[i])];
      const auto& tuple = a.values[pick[static_cast<std::size_t>(slot[i])]];
      for (std::size_t k = 0; k < a.keys.size(); ++k) {
        job.overrides.push_back(override_text(a.keys[k], tuple[k]));
        job.params.emplace_back(a.names[k], tuple[k]);
        example += (example.empty() ? "" : " ") + job.overrides.back();
      }
    }
    return job;
  }
};

SweepPlanner::SweepPlanner(SweepRequest request) : impl_(std::make_unique<Impl>()) {
  Impl& p = *impl_;
  p.request = std::move(request);
  const std::string& config_dir = p.request.config_dir;
  const std::string& experiment = p.request.experiment;
  p.overrides = parse_overrides(p.request.override_texts);

  std::vector<std::string> fixed;
  for (const auto& o : p.overrides)
    if (!o.is_sweep() && !o.is_zip()) fixed.push_back(o.text);

  // The size first, from the number of values of each axis (ranges are counted, not made).
  std::vector<std::string> sizes;
  std::size_t total = 1;
  for (const auto& o : p.overrides) {
    if (!o.is_sweep()) continue;
    const std::size_t n = o.sweep->kind == Sweep::Kind::Range ? range_count(*o.sweep)
                          : o.sweep->kind == Sweep::Kind::Choice ? o.sweep->choices.size()
                                                                 : 1;  // glob: registry names, few
    total = saturating_product(total, n);
    if (n > 1) sizes.push_back(o.text + ": " + thousands(n) + " values");
  }
  const std::size_t limit = p.request.allow_large ? kMaxSweepPoints : kLargeSweepPoints;
  if (total > limit) {
    std::vector<std::string> hints = sizes;
    hints.push_back(p.request.allow_large || total > kMaxSweepPoints
                        ? "blocklab plans at most " + thousands(kMaxSweepPoints) + " points: split the sweep"
                        : "sweeps over " + thousands(kLargeSweepPoints) +
                              " points need --allow-large (each point is a job directory and a run)");
    throw ConfigError("the sweep has " + thousands(total) + " points, more than " + thousands(limit), Source{}, "",
                      hints);
  }

  // Axes in the order typed.
  DiagnosticSink sink;
  for (const auto& o : p.overrides) {
    if (!o.is_sweep() && !o.is_zip()) {
      p.slot.push_back(-1);
      continue;
    }
    Axis axis;
    try {
      if (o.is_zip()) {
        axis.keys = axis.names = o.zip_keys;
        const auto tuples = o.is_sweep() ? o.sweep->values(o.source()) : std::vector<ConfigNode>{o.value};
        for (const auto& t : tuples) axis.values.push_back(t.items());
      } else {
        axis.keys = {op_prefix(o.op) + key_with_package(o)};
        axis.names = {key_with_package(o)};
        const auto values = o.sweep->kind == Sweep::Kind::Glob ? expand_glob(o, config_dir, experiment, fixed)
                                                                : o.sweep->values(o.source());
        if (values.empty())
          throw ConfigError("'" + o.text + "' gives no values", o.source(), "", {"range(start, stop[, step]) stops before stop"});
        for (const auto& v : values) axis.values.push_back({v});
      }
    } catch (const ConfigError& e) {
      sink.add(e);
    }
    p.slot.push_back(static_cast<int>(p.axes.size()));
    p.axes.push_back(std::move(axis));
  }
  sink.throw_if_any();
  for (const auto& a : p.axes) p.axis_names.insert(p.axis_names.end(), a.names.begin(), a.names.end());
  // The product, last axis fastest (as Hydra's basic sweeper orders it).
  for (const auto& a : p.axes) p.total = saturating_product(p.total, a.values.size());
  if (p.total > limit)  // globs expanded to more names than counted
    throw ConfigError("the sweep has " + thousands(p.total) + " points, more than " + thousands(limit), Source{}, "",
                      {"sweeps over " + thousands(kLargeSweepPoints) + " points need --allow-large"});
}

SweepPlanner::~SweepPlanner() = default;

std::size_t SweepPlanner::size() const { return impl_->total; }
const std::vector<std::string>& SweepPlanner::axes() const { return impl_->axis_names; }

std::string SweepPlanner::for_each_job(const std::function<void(const SweepJob&)>& each) const {
  const Impl& p = *impl_;
  std::vector<Problem> problems;
  std::map<std::string, std::size_t> problem_index;
  std::unordered_map<std::string, int> seen_ids;  // job id -> first point (ids only: 12 bytes a point)
  std::string key = p.request.experiment + "\n";
  for (const auto& t : p.request.override_texts) key += t + "\n";
  std::uint64_t id_hash = fnv1a64(key.data(), key.size());
  for (std::size_t point = 0; point < p.total; ++point) {
    std::string example;
    SweepJob job = p.job_at(point, example);
    try {
      job.config = load_experiment(p.request.config_dir, p.request.experiment, job.overrides, /*validate=*/true).config;
      if (p.request.check) p.request.check(job.config);
      job.id = job_id_of(job.config);
      const auto [it, fresh] = seen_ids.emplace(job.id, job.index);
      if (!fresh)
        throw ConfigError("points " + std::to_string(it->second) + " and " + std::to_string(job.index) +
                              " give the same config: a swept value changes nothing",
                          Source{}, "", {"check the sweep's values for duplicates (1e-3 and 0.001 are equal)"});
    } catch (const ConfigError& e) {
      for (const Diagnostic& d : e.diagnostics()) {
        const std::string text = d.format();
        auto [it, fresh] = problem_index.emplace(text, problems.size());
        if (fresh) problems.push_back(Problem{d, 0, example});
        ++problems[it->second].count;
      }
      continue;
    }
    const std::string line = job.id + "\n";
    id_hash = fnv1a64(line.data(), line.size(), id_hash);  // the same hash as of the whole key at once
    if (problems.empty()) each(job);  // after a problem, only checking goes on
  }
  if (!problems.empty()) {
    std::vector<Diagnostic> report;
    for (auto& pr : problems) {
      if (p.total > 1)
        pr.diagnostic.hints.push_back("in " + std::to_string(pr.count) + " of " + std::to_string(p.total) +
                                      " sweep points" + (pr.example.empty() ? "" : ", e.g. " + pr.example));
      report.push_back(pr.diagnostic);
    }
    throw ConfigError(report);
  }
  return hex64(id_hash).substr(0, 12);
}

SweepPlan plan_sweep(const std::string& config_dir, const std::string& experiment,
                     const std::vector<std::string>& override_texts, bool allow_large) {
  SweepPlan plan;
  plan.experiment = experiment;
  plan.config_dir = config_dir;
  plan.override_texts = override_texts;
  const SweepPlanner planner({config_dir, experiment, override_texts, allow_large});
  plan.axes = planner.axes();
  plan.id = planner.for_each_job([&](const SweepJob& job) { plan.jobs.push_back(job); });
  return plan;
}

std::string job_dir(const SweepDirectory& sweep, const SweepJob& job) { return sweep.dir + "/jobs/" + job.id; }

namespace {

std::string manifest_line(const SweepJob& job) {
  ConfigNode params = ConfigNode::map();
  for (const auto& [k, v] : job.params) params.set(k, v);
  return JsonObject()
             .set("index", job.index)
             .set("job", job.id)
             .set_raw("params", dump_json(params))
             .set("overrides", job.overrides)
             .str() +
         "\n";
}

std::string sweep_json(const std::string& id, const std::string& experiment, const std::string& config_dir,
                       const std::vector<std::string>& override_texts, const std::vector<std::string>& axes,
                       std::size_t jobs) {
  return JsonObject()
             .set("sweep_id", id)
             .set("experiment", experiment)
             .set("config_dir", fs::absolute(config_dir).string())
             .set("overrides", override_texts)
             .set("axes", axes)
             .set("jobs", static_cast<std::int64_t>(jobs))
             .str() +
         "\n";
}

std::string config_text(const SweepJob& job) { return dump_yaml(job.config, DumpOptions{true, 2}); }

// A directory beside the sweeps that the planner fills point by point; removed unless it was
// installed. Its manifest is "manifest.jsonl.part" until then, so that nothing reading the
// sweeps' directory (`blocklab table results/sweeps`) takes it for a sweep.
struct StagingDirectory {
  fs::path path;
  bool made_root = false;  // the root did not exist: removed again when nothing was installed
  bool installed = false;
  explicit StagingDirectory(const std::string& root)
      : path(fs::absolute(fs::path(root) / (".planning-" + std::to_string(::getpid()) + "-" +
                                            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count())))) {
    std::error_code ec;
    made_root = !fs::exists(root, ec);
    fs::create_directories(path / "jobs");
  }
  ~StagingDirectory() {
    std::error_code ec;
    if (installed) return;
    fs::remove_all(path, ec);
    if (made_root) fs::remove(path.parent_path(), ec);  // only when empty
  }
  fs::path manifest() const { return path / "manifest.jsonl.part"; }

  // Moves the staged files into `dir`: job configs first, sweep.json, then manifest.jsonl,
  // whose presence marks a complete directory. Existing files (ledger entries, runs) stay.
  void install(const fs::path& dir) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) {
      fs::rename(path, dir);  // the whole directory in one step
      installed = true;
    } else {
      for (const auto& e : fs::directory_iterator(path / "jobs")) {
        fs::create_directories(dir / "jobs" / e.path().filename());
        fs::rename(e.path() / "config.yaml", dir / "jobs" / e.path().filename() / "config.yaml");
      }
      fs::rename(path / "sweep.json", dir / "sweep.json");
      fs::rename(manifest(), dir / "manifest.jsonl.part");
    }
    fs::rename(dir / "manifest.jsonl.part", dir / "manifest.jsonl");
  }
};

void write_plain(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace

std::string plan_sweep_directory(const SweepRequest& request, const std::string& root, std::size_t* jobs) {
  const SweepPlanner planner(request);
  std::optional<StagingDirectory> staging;  // made with the first valid job: a failed plan leaves nothing
  std::ofstream manifest;
  std::size_t count = 0;
  auto stage = [&] {
    if (staging) return;
    staging.emplace(root);
    manifest.open(staging->manifest(), std::ios::binary);
  };
  const std::string id = planner.for_each_job([&](const SweepJob& job) {
    stage();
    manifest << manifest_line(job);
    fs::create_directory(staging->path / "jobs" / job.id);
    write_plain(staging->path / "jobs" / job.id / "config.yaml", config_text(job));
    ++count;
  });
  stage();
  manifest.close();
  if (!manifest) throw std::runtime_error("cannot write " + staging->manifest().string());
  if (jobs) *jobs = count;
  write_plain(staging->path / "sweep.json",
              sweep_json(id, request.experiment, request.config_dir, request.override_texts, planner.axes(), count));
  const fs::path dir = fs::absolute(fs::path(root) / id).lexically_normal();
  if (file_exists((dir / "manifest.jsonl").string())) {
    if (read_file((dir / "manifest.jsonl").string()) != read_file(staging->manifest().string()))
      throw ConfigError("the sweep directory " + dir.string() + " holds a different manifest", Source{}, "",
                        {"it was written by another version of blocklab; move it away to start over"});
    if (!file_exists((dir / "sweep.json").string())) fs::rename(staging->path / "sweep.json", dir / "sweep.json");
  } else {
    staging->install(dir);
  }
  return dir.string();
}

namespace {

const char* kRebuildSweep =
    "delete it and run the same `blocklab sweep <experiment> <overrides>` command again (with --dry-run to run "
    "nothing): it writes sweep.json and manifest.jsonl anew and keeps the jobs' states and runs";

ConfigError corrupt_ledger(const std::string& path, const std::string& what, const std::string& fix) {
  return ConfigError("corrupt file " + path + " (truncated, or not what blocklab wrote): " + what, Source{}, "", {fix});
}

// Runs `read` on a ledger file; any problem (not JSON, truncated, a field missing or of the
// wrong type) becomes one ConfigError naming the file, what is wrong and `fix`.
template <class F>
auto read_ledger(const std::string& path, const std::string& fix, F&& read) -> decltype(read()) {
  try {
    return read();
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (what.rfind("error: ", 0) == 0) what = what.substr(7);
    what = what.substr(0, what.find('\n'));
    if (what.rfind(path + ":", 0) == 0) what = what.substr(what.find(' ', path.size()) + 1);  // the path once
    throw corrupt_ledger(path, what, fix);
  }
}

std::string required_text(const ConfigNode& n, const char* key) {
  const ConfigNode* v = n.find(key);
  if (!v || !v->is_scalar() || v->is_null()) throw ConfigError(std::string("no \"") + key + "\" string");
  return v->text();
}

}  // namespace

SweepDirectory read_sweep_directory(const std::string& path) {
  std::string dir = path;
  std::error_code ec;  // a name too long for the file system is just not a sweep directory
  if (!fs::is_directory(dir, ec) && fs::is_directory("results/sweeps/" + path, ec)) dir = "results/sweeps/" + path;
  if (!file_exists(dir + "/manifest.jsonl") || !file_exists(dir + "/sweep.json"))
    throw ConfigError("'" + path + "' is not a sweep directory (no manifest.jsonl and sweep.json)", Source{}, "",
                      {"sweeps live in results/sweeps/<id>; `blocklab sweep` prints the directory"});
  SweepDirectory s;
  s.dir = fs::absolute(dir).lexically_normal().string();
  const std::string info_path = dir + "/sweep.json";
  const std::int64_t expected = read_ledger(info_path, kRebuildSweep, [&] {
    const ConfigNode info = parse_json_object(read_file(info_path), info_path);
    s.id = required_text(info, "sweep_id");
    s.experiment = required_text(info, "experiment");
    s.config_dir = required_text(info, "config_dir");
    s.override_texts = string_list(info.find("overrides"));
    s.axes = string_list(info.find("axes"));
    const ConfigNode* jobs = info.find("jobs");
    if (!jobs || !jobs->is_int() || jobs->as_int() < 1) throw ConfigError("no \"jobs\" count");
    s.jobs.reserve(static_cast<std::size_t>(std::min<std::int64_t>(jobs->as_int(), kMaxSweepPoints)));
    return jobs->as_int();
  });
  const std::string manifest = dir + "/manifest.jsonl";
  std::istringstream lines(read_file(manifest));
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    if (line.empty()) continue;
    const std::string where = manifest + ":" + std::to_string(n);
    s.jobs.push_back(read_ledger(where, kRebuildSweep, [&] {
      const ConfigNode entry = parse_json_object(line, manifest, n);
      SweepJob job;
      const ConfigNode* index = entry.find("index");
      if (!index || !index->is_int() || index->as_int() != static_cast<std::int64_t>(s.jobs.size()))
        throw ConfigError("\"index\" is not " + std::to_string(s.jobs.size()) + " (jobs are listed in index order)");
      job.index = static_cast<int>(index->as_int());
      job.id = required_text(entry, "job");
      if (job.id.size() != 12 || job.id.find_first_not_of("0123456789abcdef") != std::string::npos)
        throw ConfigError("\"job\" is not a job id (12 hex digits)");
      job.overrides = string_list(entry.find("overrides"));
      if (const ConfigNode* params = entry.find("params"); params && params->is_map())
        for (const auto& [k, v] : params->entries()) job.params.emplace_back(k, v);
      return job;
    }));
  }
  if (static_cast<std::int64_t>(s.jobs.size()) != expected)
    throw corrupt_ledger(manifest, "it lists " + std::to_string(s.jobs.size()) + " jobs, sweep.json says " +
                                       std::to_string(expected), kRebuildSweep);
  return s;
}

JobState read_job_state(const SweepDirectory& sweep, const SweepJob& job) {
  JobState st;
  const std::string path = job_dir(sweep, job) + "/state.json";
  if (!file_exists(path)) return st;
  const std::string fix = "delete it to mark the job pending: rm " + path +
                          " (the next `blocklab sweep` or `blocklab job` runs the job, from its checkpoint if any)";
  return read_ledger(path, fix, [&] {
    const ConfigNode n = parse_json_object(read_file(path), path);
    auto text = [&](const char* k) { const ConfigNode* v = n.find(k); return v && v->is_scalar() ? v->text() : std::string(); };
    auto number = [&](const char* k) { const ConfigNode* v = n.find(k); return v && v->is_int() ? v->as_int() : 0; };
    st.state = required_text(n, "state");
    static const std::set<std::string> states{"pending", "running", "done", "failed", "diverged"};
    if (!states.count(st.state))
      throw ConfigError("\"state\" is '" + st.state + "', not pending, running, done, failed or diverged");
    st.run_dir = text("run_dir");
    st.exit_code = static_cast<int>(number("exit_code"));
    st.reason = text("reason");
    st.log_tail = text("log_tail");
    st.host = text("host");
    st.updated = text("updated");
    st.attempts = static_cast<int>(number("attempts"));
    st.pid = number("pid");
    return st;
  });
}

void write_job_state(const SweepDirectory& sweep, const SweepJob& job, const JobState& st) {
  write_file_atomic(job_dir(sweep, job) + "/state.json", JsonObject()
                                                             .set("job", job.id)
                                                             .set("index", job.index)
                                                             .set("state", st.state)
                                                             .set("run_dir", st.run_dir)
                                                             .set("exit_code", st.exit_code)
                                                             .set("reason", st.reason)
                                                             .set("log_tail", st.log_tail)
                                                             .set("attempts", st.attempts)
                                                             .set("host", st.host)
                                                             .set("pid", st.pid)
                                                             .set("updated", st.updated)
                                                             .str() +
                                                             "\n");
}

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return 1;
}

std::string array_spec(const std::vector<int>& indices) {
  std::string out;
  for (std::size_t i = 0; i < indices.size();) {
    std::size_t j = i;
    while (j + 1 < indices.size() && indices[j + 1] == indices[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(indices[i]) + (j > i ? "-" + std::to_string(indices[j]) : "");
    i = j + 1;
  }
  return out;
}

std::string slurm_script(const SlurmOptions& o) {
  const bool ranks = o.tasks_per_job > 1;
  const std::string tasks = std::to_string(o.tasks_per_job);
  std::ostringstream s;
  s << "#!/bin/bash\n"
    << "# Written by `blocklab sweep --launcher slurm`: one array task per sweep job. Each task runs\n"
    << "# the idempotent job runner (a done job is skipped, a claimed one is left to its owner).\n"
    << "#SBATCH --job-name=" << o.job_name << "\n"
    << "#SBATCH --array=" << array_spec(o.indices) << (o.parallel > 0 ? "%" + std::to_string(o.parallel) : "") << "\n";
  if (ranks) s << "#SBATCH --ntasks=" << tasks << "\n";
  s << "#SBATCH --cpus-per-task=" << o.cpus_per_task << "\n"
    << "#SBATCH --output=" << o.sweep_dir << "/slurm/%A_%a.out\n"
    << "#SBATCH --open-mode=append\n"
    << "#SBATCH --requeue\n"
    << "#SBATCH --signal=B:USR1@120\n";
  if (!o.time.empty()) s << "#SBATCH --time=" << o.time << "\n";
  if (!o.partition.empty()) s << "#SBATCH --partition=" << o.partition << "\n";
  for (const auto& e : o.extra) s << "#SBATCH " << e << "\n";
  s << "set -u\n";
  // srun gets the CPUs per task explicitly: from Slurm 22.05 on, it does not always inherit sbatch's.
  if (ranks)
    s << "# " << tasks << " tasks per job: srun starts the job runner on each, as the ranks of one data-parallel\n"
      << "# run; rank 0 claims the job and keeps the ledger, the others join its run.\n"
      << "srun --ntasks=" << tasks << " --cpus-per-task=\"${SLURM_CPUS_PER_TASK:-1}\" ";
  s << "'" << o.binary << "' job '" << o.sweep_dir
    << "' --index \"$SLURM_ARRAY_TASK_ID\" --threads \"${SLURM_CPUS_PER_TASK:-1}\" &\n"
    << "child=$!\n"
    << "# Near the time limit (USR1) or on scancel (TERM) the run checkpoints and exits with " << kExitRequeue << ".\n"
    << "trap 'kill -USR1 \"$child\" 2>/dev/null' USR1\n"
    << "trap 'kill -TERM \"$child\" 2>/dev/null' TERM\n"
    << "while :; do\n"
    << "  wait \"$child\"; status=$?\n"
    << "  kill -0 \"$child\" 2>/dev/null || break  # wait was only interrupted by a signal\n"
    << "done\n";
  if (ranks)  // what the ranks met through; a killed step leaves them behind
    s << "rm -f '" << o.sweep_dir << "/slurm/steps/'\"$SLURM_JOB_ID\".* '" << o.sweep_dir
      << "/runs/.rendezvous/slurm-'\"$SLURM_JOB_ID\".*\n";
  s << "if [ \"$status\" -eq " << kExitRequeue << " ]; then\n"
    << "  scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n"
    << "fi\n"
    << "exit \"$status\"\n";
  return s.str();
}

}  // namespace blocklab
