// Sweep planning (grid expansion, validation of every point) and the sweep directory.
#include "experiments/sweep.h"

#include <sched.h>

#include <filesystem>
#include <map>
#include <sstream>

#include "experiments/experiment.h"
#include "experiments/run_files.h"
#include "experiments/task.h"
#include "registry/override.h"
#include "registry/registry.h"
#include "registry/suggest.h"
#include "registry/yaml_io.h"

namespace fs = std::filesystem;

namespace blocklab {
namespace {

// One swept dimension: a key (or zip'ed keys) and its values (one tuple per point).
struct Axis {
  std::vector<std::string> keys;                // as typed, with +/++ and @package
  std::vector<std::string> names;               // the keys without prefixes, for params
  std::vector<std::vector<ConfigNode>> values;  // values[point][key]
};

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

std::string json_string_array(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + json_quote(v[i]);
  return out + "]";
}

std::string one_line(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
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

SweepPlan plan_sweep(const std::string& config_dir, const std::string& experiment,
                     const std::vector<std::string>& override_texts) {
  SweepPlan plan;
  plan.experiment = experiment;
  plan.config_dir = config_dir;
  plan.override_texts = override_texts;
  const std::vector<Override> overrides = parse_overrides(override_texts);

  std::vector<std::string> fixed;
  for (const auto& o : overrides)
    if (!o.is_sweep() && !o.is_zip()) fixed.push_back(o.text);

  // Axes in the order typed; `slot[i]` says which axis override i is (-1: fixed).
  DiagnosticSink sink;
  std::vector<Axis> axes;
  std::vector<int> slot;
  for (const auto& o : overrides) {
    if (!o.is_sweep() && !o.is_zip()) {
      slot.push_back(-1);
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
    slot.push_back(static_cast<int>(axes.size()));
    axes.push_back(std::move(axis));
  }
  sink.throw_if_any();
  for (const auto& a : axes) plan.axes.insert(plan.axes.end(), a.names.begin(), a.names.end());

  // The product, last axis fastest (as Hydra's basic sweeper orders it).
  std::size_t total = 1;
  for (const auto& a : axes) total *= a.values.size();
  struct Problem {
    Diagnostic diagnostic;
    int count = 0;
    std::string example;
  };
  std::vector<Problem> problems;
  std::map<std::string, std::size_t> problem_index;
  std::map<std::string, int> seen_ids;
  for (std::size_t point = 0; point < total; ++point) {
    std::vector<std::size_t> pick(axes.size());
    for (std::size_t rest = point, a = axes.size(); a-- > 0;) pick[a] = rest % axes[a].values.size(), rest /= axes[a].values.size();
    SweepJob job;
    job.index = static_cast<int>(point);
    std::string example;
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
    try {
      job.config = load_experiment(config_dir, experiment, job.overrides, /*validate=*/true).config;
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
    plan.jobs.push_back(std::move(job));
  }
  if (!problems.empty()) {
    std::vector<Diagnostic> report;
    for (auto& p : problems) {
      if (total > 1)
        p.diagnostic.hints.push_back("in " + std::to_string(p.count) + " of " + std::to_string(total) +
                                   " sweep points" + (p.example.empty() ? "" : ", e.g. " + p.example));
      report.push_back(p.diagnostic);
    }
    throw ConfigError(report);
  }

  std::string key = experiment + "\n";
  for (const auto& t : override_texts) key += t + "\n";
  for (const auto& j : plan.jobs) key += j.id + "\n";
  plan.id = hex64(fnv1a64(key.data(), key.size())).substr(0, 12);
  return plan;
}

std::string job_dir(const SweepDirectory& sweep, const SweepJob& job) { return sweep.dir + "/jobs/" + job.id; }

std::string write_sweep_directory(const SweepPlan& plan, const std::string& root) {
  const std::string dir = fs::absolute(fs::path(root) / plan.id).lexically_normal().string();
  std::string manifest;
  for (const auto& job : plan.jobs) {
    ConfigNode params = ConfigNode::map();
    for (const auto& [k, v] : job.params) params.set(k, v);
    manifest += JsonObject()
                    .set("index", job.index)
                    .set("job", job.id)
                    .set_raw("params", one_line(dump_json(params)))
                    .set_raw("overrides", json_string_array(job.overrides))
                    .str() +
                "\n";
  }
  if (file_exists(dir + "/manifest.jsonl")) {
    if (read_file(dir + "/manifest.jsonl") != manifest)
      throw ConfigError("the sweep directory " + dir + " holds a different manifest", Source{}, "",
                        {"it was written by another version of blocklab; move it away to start over"});
  } else {
    for (const auto& job : plan.jobs)
      write_file_atomic(dir + "/jobs/" + job.id + "/config.yaml", dump_yaml(job.config, DumpOptions{true, 2}));
    write_file_atomic(dir + "/sweep.json", JsonObject()
                                               .set("sweep_id", plan.id)
                                               .set("experiment", plan.experiment)
                                               .set("config_dir", fs::absolute(plan.config_dir).string())
                                               .set_raw("overrides", json_string_array(plan.override_texts))
                                               .set_raw("axes", json_string_array(plan.axes))
                                               .set("jobs", static_cast<std::int64_t>(plan.jobs.size()))
                                               .str() +
                                               "\n");
    write_file_atomic(dir + "/manifest.jsonl", manifest);  // last: its presence marks a complete directory
  }
  return dir;
}

SweepDirectory read_sweep_directory(const std::string& path) {
  std::string dir = path;
  if (!fs::is_directory(dir) && fs::is_directory("results/sweeps/" + path)) dir = "results/sweeps/" + path;
  if (!file_exists(dir + "/manifest.jsonl") || !file_exists(dir + "/sweep.json"))
    throw ConfigError("'" + path + "' is not a sweep directory (no manifest.jsonl and sweep.json)", Source{}, "",
                      {"sweeps live in results/sweeps/<id>; `blocklab sweep` prints the directory"});
  SweepDirectory s;
  s.dir = fs::absolute(dir).lexically_normal().string();
  const ConfigNode info = load_yaml_file(dir + "/sweep.json", dir + "/sweep.json");
  s.id = info.at("sweep_id").text();
  s.experiment = info.at("experiment").text();
  s.config_dir = info.at("config_dir").text();
  s.override_texts = string_list(info.find("overrides"));
  s.axes = string_list(info.find("axes"));
  std::istringstream lines(read_file(dir + "/manifest.jsonl"));
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    if (line.empty()) continue;
    const ConfigNode entry = parse_yaml(line, dir + "/manifest.jsonl:" + std::to_string(n));
    SweepJob job;
    job.index = static_cast<int>(entry.at("index").as_int());
    job.id = entry.at("job").text();
    job.overrides = string_list(entry.find("overrides"));
    if (const ConfigNode* params = entry.find("params"); params && params->is_map())
      for (const auto& [k, v] : params->entries()) job.params.emplace_back(k, v);
    s.jobs.push_back(std::move(job));
  }
  return s;
}

JobState read_job_state(const SweepDirectory& sweep, const SweepJob& job) {
  JobState st;
  const std::string path = job_dir(sweep, job) + "/state.json";
  if (!file_exists(path)) return st;
  const ConfigNode n = load_yaml_file(path, path);
  auto text = [&](const char* k) { const ConfigNode* v = n.find(k); return v && v->is_scalar() ? v->text() : std::string(); };
  auto number = [&](const char* k) { const ConfigNode* v = n.find(k); return v && v->is_int() ? v->as_int() : 0; };
  st.state = text("state");
  st.run_dir = text("run_dir");
  st.exit_code = static_cast<int>(number("exit_code"));
  st.reason = text("reason");
  st.log_tail = text("log_tail");
  st.host = text("host");
  st.updated = text("updated");
  st.attempts = static_cast<int>(number("attempts"));
  st.pid = number("pid");
  return st;
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
  std::ostringstream s;
  s << "#!/bin/bash\n"
    << "# Written by `blocklab sweep --launcher slurm`: one array task per sweep job. Each task runs\n"
    << "# the idempotent job runner (a done job is skipped, a claimed one is left to its owner).\n"
    << "#SBATCH --job-name=" << o.job_name << "\n"
    << "#SBATCH --array=" << array_spec(o.indices) << (o.parallel > 0 ? "%" + std::to_string(o.parallel) : "")
    << "\n"
    << "#SBATCH --cpus-per-task=" << o.cpus_per_task << "\n"
    << "#SBATCH --output=" << o.sweep_dir << "/slurm/%A_%a.out\n"
    << "#SBATCH --open-mode=append\n"
    << "#SBATCH --requeue\n"
    << "#SBATCH --signal=B:USR1@120\n";
  if (!o.time.empty()) s << "#SBATCH --time=" << o.time << "\n";
  if (!o.partition.empty()) s << "#SBATCH --partition=" << o.partition << "\n";
  for (const auto& e : o.extra) s << "#SBATCH " << e << "\n";
  s << "set -u\n"
    << "'" << o.binary << "' job '" << o.sweep_dir << "' --index \"$SLURM_ARRAY_TASK_ID\" --threads \"${SLURM_CPUS_PER_TASK:-1}\" &\n"
    << "child=$!\n"
    << "# Near the time limit (USR1) or on scancel (TERM) the run checkpoints and exits with " << kExitRequeue << ".\n"
    << "trap 'kill -USR1 \"$child\" 2>/dev/null' USR1\n"
    << "trap 'kill -TERM \"$child\" 2>/dev/null' TERM\n"
    << "while :; do\n"
    << "  wait \"$child\"; status=$?\n"
    << "  kill -0 \"$child\" 2>/dev/null || break  # wait was only interrupted by a signal\n"
    << "done\n"
    << "if [ \"$status\" -eq " << kExitRequeue << " ]; then\n"
    << "  scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n"
    << "fi\n"
    << "exit \"$status\"\n";
  return s.str();
}

}  // namespace blocklab
