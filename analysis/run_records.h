// Finished (or failed) runs as records for tables and comparisons.
//
// Reads run directories (config.yaml + summary.json, see experiments/run_files.h) and sweep
// directories (manifest.jsonl + jobs/<job>/{config.yaml,state.json}, see experiments/sweep.h),
// so `blocklab table` and `blocklab diff` never need the code that produced them.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "registry/config_node.h"

namespace blocklab {

struct RunRecord {
  std::string label;    // the run directory, or "<sweep dir> job <job id>" when there is no run
  std::string run_dir;  // "" when the job never produced a run directory
  ConfigNode config;    // the resolved config (config.yaml)
  // "finished", "diverged", "failed", "running" or "pending".
  std::string status;
  std::string reason;   // why it failed or diverged ("" otherwise)
  // Numbers from summary.json: the keys of its "final" object under their own names
  // ("test/acc", "val/loss", ...) and the top-level numbers ("best/val_acc", "wall_time_s").
  std::map<std::string, double> metrics;
  // The scalars of the run's env.json ("git_commit", "git_dirty", "device", ...) as text;
  // empty when the run has no env.json.
  std::map<std::string, std::string> env;
};

// Each path may be a run directory (has config.yaml), a sweep directory (has manifest.jsonl;
// a bare sweep id names results/sweeps/<id>) or a directory whose subdirectories are run or
// sweep directories (results/runs/<experiment>, read in name order). Sweep jobs come in
// manifest order: no state.json = "pending"; "done" reads <sweep>/<run_dir>/summary.json.
// A run directory without summary.json is "running". Throws ConfigError naming a path that
// is none of these, or a file that is missing or corrupt.
std::vector<RunRecord> load_run_records(const std::vector<std::string>& paths);

// The sweep directory `path` names (a sweep directory, or a sweep id under results/sweeps),
// or "" when it names none.
std::string resolve_sweep_directory(const std::string& path);

// One run directory (config.yaml, optional summary.json and env.json). Throws ConfigError when
// `dir` is not a run directory.
RunRecord load_run_directory(const std::string& dir);

// Reads a config.yaml written with provenance comments ("lr: 0.001  # conf/trainer/a.yaml:3")
// and gives each value the source named in its comment, so the config remembers where its
// values came from before they were resolved into the run directory. Values without a
// comment (runs written before config.yaml carried provenance) get an unknown source.
ConfigNode load_config_with_provenance(const std::string& path, const std::string& display_name);

}  // namespace blocklab
