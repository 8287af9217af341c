// blocklab export --tensorboard <run-dir | sweep-dir | dir of runs>...: runs as TensorBoard event
// files (analysis/tensorboard.h), one directory per run, for `tensorboard --logdir <out>`.
// Runs are found and read as `blocklab plot` reads them (load_run_records, load_curves), so the
// same runs are left out with the same notes and the directories carry plot's labels.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <system_error>

#include "analysis/curves.h"
#include "analysis/run_records.h"
#include "analysis/tensorboard.h"
#include "analysis/text_util.h"
#include "experiments/run_files.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/config_error.h"
#include "registry/registry.h"

namespace fs = std::filesystem;

namespace blocklab {
namespace {

const char* kExportDetails =
    "Event files:\n"
    "  One directory per run under --out (default: <input>/tensorboard), named as `blocklab plot` labels runs:\n"
    "  the config values that differ between them (\"trainer.lr=0.001, seed=1\"; '/' becomes '_'), or the run id.\n"
    "  Each holds one events.out.tfevents.<seconds>.<host> file; an earlier export's file there is replaced.\n"
    "  Runs without metrics yet, and sweep jobs without a run, are left out with a note.\n"
    "What is written:\n"
    "  Scalars: every number of every metrics.jsonl line at its step, training lines as train/<name>\n"
    "  (train/loss, train/lr, train/images_per_s), evaluation lines under their own names (test/acc,\n"
    "  val/loss, eval_time_s); and against the epoch as epoch/<tag>: the last value each metric logged\n"
    "  in that epoch. Values that are not finite (a diverged run's last line) are left out, as in plot.\n"
    "  Wall times: metrics lines carry no clock time, so steps are spread between the run's start\n"
    "  (config.yaml written) and its last metrics line (metrics.jsonl modified), in proportion to the step.\n"
    "  Text: config.yaml as a YAML code block, tag config (TensorBoard's Text tab).\n"
    "  Images: the pictures `blocklab attn <run>` wrote into <run>/attn/, tags attn/<file name>, at the\n"
    "  run's last step (run `blocklab attn` before exporting to include them).\n"
    "Examples:\n"
    "  blocklab export --tensorboard results/runs/vit_fmnist/3f2a9c01b7d4\n"
    "  blocklab export --tensorboard results/sweeps/5d1e0a2b9c47 --out tb/lr_sweep\n"
    "  tensorboard --logdir tb/lr_sweep\n";

const char* kWritableHint = "choose a directory you can write with --out DIR";

// A file's modification time in seconds since the epoch; NaN when it cannot be read.
double modified_at(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return kNaN;
  return static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) * 1e-9;
}

// metrics.jsonl lines carry no clock time, so a step's wall time is placed between the run's start
// (config.yaml's modification time: written when the run starts, kept by a resume) and its last
// metrics line (metrics.jsonl's), in proportion to the step. Order and spacing are right, the
// times approximate; a copy that did not keep modification times puts every step at its own time.
class StepClock {
 public:
  StepClock(const std::string& run_dir, double last_step) : last_step_(last_step) {
    start_ = modified_at(run_dir + "/config.yaml");
    end_ = modified_at(run_dir + "/metrics.jsonl");
    if (!std::isfinite(start_)) start_ = std::isfinite(end_) ? end_ : unix_now();
    if (!std::isfinite(end_) || end_ < start_) end_ = start_;
  }
  double start() const { return start_; }
  double end() const { return end_; }
  double at(double step) const { return last_step_ > 0 ? start_ + (end_ - start_) * step / last_step_ : start_; }

 private:
  double last_step_, start_ = 0, end_ = 0;
};

bool exact_integer(double x) { return std::isfinite(x) && x == std::floor(x) && std::abs(x) < 9e15; }

// Training metrics get the train/ prefix; evaluation metrics already read "split/name".
std::string scalar_tag(const MetricSeries& s) { return s.per_eval ? s.name : "train/" + s.name; }

// A run's scalars as events: by step, and by epoch (the last value of each tag in the epoch).
struct ScalarEvents {
  std::map<std::int64_t, std::vector<ScalarValue>> by_step;
  std::map<std::int64_t, std::map<std::string, std::pair<double, double>>> by_epoch;  // tag -> (value, step)
  double last_step = 0;
  std::size_t without_step = 0;  // points whose line had no whole step
};

ScalarEvents collect_scalars(const RunCurves& curves) {
  ScalarEvents e;
  for (const MetricSeries& s : curves.metrics) {
    const std::string tag = scalar_tag(s);
    for (std::size_t i = 0; i < s.value.size(); ++i) {
      if (!exact_integer(s.step[i])) {
        ++e.without_step;
        continue;
      }
      e.by_step[static_cast<std::int64_t>(s.step[i])].push_back({tag, s.value[i]});
      e.last_step = std::max(e.last_step, s.step[i]);
      if (exact_integer(s.epoch[i])) e.by_epoch[static_cast<std::int64_t>(s.epoch[i])][tag] = {s.value[i], s.step[i]};
    }
  }
  return e;
}

struct RunExport {
  std::string file;
  std::size_t scalars = 0, steps = 0, epochs = 0, images = 0, replaced = 0;
  std::vector<std::string> notes;
};

void write_scalars(EventWriter& w, const ScalarEvents& e, const StepClock& clock, RunExport& r) {
  for (const auto& [step, values] : e.by_step) {
    w.add_scalars(step, values, clock.at(static_cast<double>(step)));
    r.scalars += values.size();
  }
  for (const auto& [epoch, tags] : e.by_epoch) {
    std::vector<ScalarValue> values;
    double last = 0;
    for (const auto& [tag, point] : tags) {
      values.push_back({"epoch/" + tag, point.first});
      last = std::max(last, point.second);
    }
    w.add_scalars(epoch, values, clock.at(last));
    r.scalars += values.size();
  }
  r.steps = e.by_step.size();
  r.epochs = e.by_epoch.size();
}

// `text` as a fenced markdown code block; the fence is longer than any run of backticks in it.
std::string markdown_code(const std::string& text, const std::string& language) {
  std::size_t longest = 0, run = 0;
  for (char c : text) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  const std::string fence(std::max<std::size_t>(3, longest + 1), '`');
  return fence + language + "\n" + text + (text.empty() || text.back() != '\n' ? "\n" : "") + fence + "\n";
}

// The pictures `blocklab attn` wrote into <run>/attn/ (name order), as images at `step`, each at
// its file's time.
void write_attention_maps(EventWriter& w, const std::string& run_dir, std::int64_t step, double fallback_time,
                          RunExport& r) {
  const fs::path dir = fs::path(run_dir) / "attn";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  std::vector<fs::path> pngs;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().extension() == ".png" && entry.is_regular_file(ec)) pngs.push_back(entry.path());
  std::sort(pngs.begin(), pngs.end());
  for (const fs::path& png : pngs) {
    std::string bytes;
    try {
      bytes = read_file(png.string());
    } catch (const std::exception&) {
    }
    PngInfo info;
    if (!read_png_info(bytes, info)) {
      r.notes.push_back("left out " + png.string() + ": not a readable PNG file");
      continue;
    }
    const double time = modified_at(png.string());
    w.add_image("attn/" + png.stem().string(), step, bytes, info.height, info.width, info.colorspace,
                std::isfinite(time) ? time : fallback_time);
    ++r.images;
  }
}

// Event files of an earlier export in `dir`: removed, so that TensorBoard does not read a run twice.
std::size_t remove_event_files(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> old;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) old.push_back(entry.path());
  for (const fs::path& p : old)
    if (!fs::remove(p, ec) && ec) throw FileWriteError(p.string(), ec.message());
  return old.size();
}

RunExport export_run(const CurveRun& run, const std::string& dir) {
  const std::string& run_dir = run.record.run_dir;
  const std::string config = read_file(run_dir + "/config.yaml");
  const ScalarEvents scalars = collect_scalars(run.curves);
  const StepClock clock(run_dir, scalars.last_step);
  RunExport r;
  if (scalars.without_step)
    r.notes.push_back(std::to_string(scalars.without_step) + " value(s) of " + run.curves.path +
                      " were left out: their lines have no whole \"step\"");
  std::error_code ec;
  r.replaced = fs::is_directory(dir, ec) ? remove_event_files(dir) : 0;
  EventWriter w(dir);
  w.add_text("config", 0, markdown_code(config, "yaml"), clock.start());
  write_scalars(w, scalars, clock, r);
  write_attention_maps(w, run_dir, static_cast<std::int64_t>(scalars.last_step), clock.end(), r);
  w.close();
  r.file = w.path();
  return r;
}

// The run's directory under --out: its plot label ("trainer.lr=0.001, seed=1", or the run id)
// with '/' and control characters as '_' (TensorBoard names a run by its path under the logdir).
// A name taken already, or too long for a file name, becomes the run's <experiment>_<id>.
std::string run_folder(const CurveRun& run, std::set<std::string>& taken) {
  auto clean = [](const std::string& s) {
    std::string out;
    for (char c : s) {
      const auto u = static_cast<unsigned char>(c);
      out += (c == '/' || c == '\\' || u < 0x20 || u == 0x7F) ? '_' : c;
    }
    return out.empty() || out[0] == '.' ? "_" + out : out;
  };
  std::string name = clean(run.label);
  if (name.size() > 120 || taken.count(name)) name = clean(run.name);
  const std::string base = name;
  for (int n = 2; taken.count(name); ++n) name = base + "_" + std::to_string(n);
  taken.insert(name);
  return name;
}

void prepare_output_directory(const std::string& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (!ec && ::access(out.c_str(), W_OK | X_OK) != 0) ec = std::error_code(errno, std::generic_category());
  if (ec) throw ConfigError("cannot write into " + out + ": " + ec.message(), Source{}, "", {kWritableHint});
}

std::string default_output_directory(const std::vector<std::string>& inputs) {
  if (inputs.size() != 1)
    throw UsageError(
        "blocklab export: " + std::to_string(inputs.size()) +
        " inputs are exported into one directory: say which with --out DIR\n  see: blocklab export --help");
  const std::string sweep = resolve_sweep_directory(inputs[0]);
  std::string dir = sweep.empty() ? inputs[0] : sweep;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + "/tensorboard";
}

void print_export(const RunExport& r) {
  for (const std::string& note : r.notes) std::cerr << "note: " << note << "\n";
  std::cerr << "wrote " << r.file << ": " << r.scalars << " scalars (" << r.steps << " steps, " << r.epochs
            << " epochs), config";
  if (r.images) std::cerr << ", " << r.images << " attention maps";
  if (r.replaced) std::cerr << " (replacing " << r.replaced << " earlier event file(s))";
  std::cerr << "\n";
}

int export_tensorboard(const std::vector<std::string>& inputs, std::string out) {
  // Everything is read first: a missing or corrupt file stops the export before anything is written.
  const CurveSet set = load_curves(load_run_records(inputs));
  for (const std::string& note : set.notes) std::cerr << "note: " << note << "\n";
  for (const std::string& warning : set.warnings) std::cerr << "warning: " << warning << "\n";
  if (set.runs.empty())
    throw ConfigError("nothing to export from " + join(inputs, ", ") + ": no run has logged metrics yet", Source{}, "",
                      {"export once the runs have logged their first steps (metrics.jsonl)"});
  if (out.empty()) out = default_output_directory(inputs);
  prepare_output_directory(out);
  std::set<std::string> taken;
  try {
    for (const CurveRun& run : set.runs)
      print_export(export_run(run, output_path_inside("export", out, run_folder(run, taken))));
  } catch (const FileWriteError& e) {
    throw ConfigError(e.what(), Source{}, "", {kWritableHint});
  }
  std::cerr << "exported " << set.runs.size() << " run(s); view them with: tensorboard --logdir " << out << "\n";
  return 0;
}

int export_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("tensorboard", po::bool_switch(),
                                                 "write TensorBoard event files (the one format so far)")(
      "out", po::value<std::string>(),
      "directory for the runs' event files (default: <input>/tensorboard; required for several inputs)");
  const auto cl = parse_command_line("export", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help("export", "--tensorboard <run-dir | sweep-dir | dir of runs>... [--out DIR]",
                              "Writes runs as TensorBoard event files: their metrics as scalars, config.yaml as "
                              "text, the attention maps of `blocklab attn` as images.",
                              opts, kExportDetails);
    return 0;
  }
  if (!cl.vars["tensorboard"].as<bool>())
    throw UsageError(
        "blocklab export: say which format to write: --tensorboard (TensorBoard event files, the one format so far)\n"
        "  see: blocklab export --help");
  if (cl.positional.empty())
    throw UsageError(
        "blocklab export: name a run directory, a sweep directory or a directory of runs\n"
        "  see: blocklab export --help");
  return export_tensorboard(cl.positional, string_option(cl, "out"));
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"export", "write runs as TensorBoard event files (metrics, config, attention maps)", export_command, 66});

}  // namespace
}  // namespace blocklab
