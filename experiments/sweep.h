// Sweeps: a grid of experiment configs run as independent, resumable jobs.
//
// A sweep directory results/sweeps/<sweep-id>/ (the id hashes the experiment, the overrides
// as typed and every job id) holds:
//   sweep.json              {"sweep_id","experiment","config_dir","overrides":[as typed],
//                            "axes":["model.mixer.type","trainer.lr","seed"],"jobs":N}
//   manifest.jsonl          one line per job, in index order:
//                            {"index":0,"job":"<12 hex>","params":{"trainer.lr":0.001,...},
//                             "overrides":["trainer.lr=0.001", ...every override of the job]}
//   jobs/<job>/config.yaml  the job's resolved, validated config
//   jobs/<job>/state.json   the ledger entry (absent = pending):
//                            {"job","index","state":"pending|running|done|failed|diverged",
//                             "run_dir":"runs/<experiment>/<run id>" (relative to the sweep
//                             dir; "" when none),"exit_code":N,"reason":"...",
//                             "log_tail":"...","attempts":K,"host":"...","updated":"<UTC>"}
//   jobs/<job>/claim        held (flock) by the worker that runs the job; says who it is
//   jobs/<job>/log.txt      the job process's stdout and stderr
//   runs/<experiment>/<id>/ the run directories (the jobs' output_dir is <sweep dir>/runs)
//   tables/, plots/         written by `blocklab table`
//   slurm/                  the array script, submissions, task output; steps/<step>: what
//                            rank 0 of a multi-task step told its other ranks (follow_job)
// The job id hashes the resolved config without output_dir and threads (how a job is run,
// not what it computes), so it is stable across launchers and machines.
// While a sweep is planned, its files are written into <root>/.planning-<pid>-<n>/ (manifest
// as manifest.jsonl.part) and moved into place at the end; a killed planner leaves that
// directory behind, to be deleted.
// A corrupt ledger file is a ConfigError naming it and the fix: a state.json is deleted (the
// job is pending again); sweep.json or manifest.jsonl are deleted and the same `blocklab
// sweep` command run again, which writes them anew and keeps the states and runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "experiments/task.h"  // kExitRequeue
#include "registry/config_node.h"

namespace blocklab {

// One point of the grid.
struct SweepJob {
  int index = 0;
  std::string id;                      // 12 hex digits
  std::vector<std::string> overrides;  // every override of the job, as `blocklab run` takes them
  std::vector<std::pair<std::string, ConfigNode>> params;  // the swept keys and their values here
  ConfigNode config;                   // resolved, validated
};

struct SweepPlan {
  std::string id;  // 12 hex digits
  std::string experiment, config_dir;
  std::vector<std::string> override_texts;  // as typed
  std::vector<std::string> axes;            // swept keys, outermost first
  std::vector<SweepJob> jobs;               // the product, last axis fastest
};

// Sweeps over more points than kLargeSweepPoints need allow_large (`blocklab sweep
// --allow-large`); none may have more than kMaxSweepPoints.
constexpr std::size_t kLargeSweepPoints = 10000;
constexpr std::size_t kMaxSweepPoints = 1000000;

struct SweepRequest {
  std::string config_dir, experiment;
  std::vector<std::string> override_texts;  // as typed, with sweep syntax
  bool allow_large = false;
  // More rules for every point's resolved config (how the jobs will run: --tasks-per-job);
  // a ConfigError it throws is reported like any invalid point.
  std::function<void(const ConfigNode& config)> check{};
};

// A sweep's points, one at a time. The constructor parses the overrides and expands the axes
// (products of `a=1,2`, `choice()`, `range()`, `glob()` over registry names or config-group
// options, and `zip(a,b)=[..],[..]`); it counts the points first (ranges without making their
// values) and refuses a grid over the limit, saying how many points each axis gives.
class SweepPlanner {
 public:
  explicit SweepPlanner(SweepRequest request);
  ~SweepPlanner();
  std::size_t size() const;                     // points in the grid
  const std::vector<std::string>& axes() const;  // swept keys, outermost first
  // Composes and validates each point in index order and calls `each` with every job (its
  // config set) while no point has failed; memory stays bounded by one config plus the job
  // ids. Throws one ConfigError listing every problem (each once, with how many points have
  // it and an example) after the last point. Returns the sweep id.
  std::string for_each_job(const std::function<void(const SweepJob&)>& each) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Every job of the sweep in memory (for small sweeps and tests): SweepPlanner, collected.
SweepPlan plan_sweep(const std::string& config_dir, const std::string& experiment,
                     const std::vector<std::string>& override_texts, bool allow_large = false);

// The override text that sets `key` to `value` ("trainer.lr=0.001", "model.mixer.type=a/b").
std::string override_text(const std::string& key, const ConfigNode& value);
// A job's swept values as overrides ("trainer.lr=0.001 seed=2").
std::string params_text(const SweepJob& job);

// Plans the sweep point by point into a staging directory under `root`, then installs it as
// <root>/<sweep id>/ (sweep.json, manifest.jsonl, jobs/<job>/config.yaml; the manifest last,
// so its presence marks a complete directory), or checks that an existing one holds the same
// jobs (and restores a deleted sweep.json). Returns the directory; `jobs` gets the job count.
std::string plan_sweep_directory(const SweepRequest& request, const std::string& root, std::size_t* jobs = nullptr);

// A sweep directory read back (by `blocklab job`, `blocklab status`, Slurm tasks).
struct SweepDirectory {
  std::string dir;  // absolute
  std::string id, experiment, config_dir;
  std::vector<std::string> override_texts, axes;
  std::vector<SweepJob> jobs;  // config left empty; read jobs/<id>/config.yaml if needed
};
// Reads sweep.json and manifest.jsonl; a path that is not a sweep directory, or a corrupt
// file, gives a ConfigError naming it. `path` may also be a sweep id under results/sweeps.
SweepDirectory read_sweep_directory(const std::string& path);

// ---- The ledger: one state file per job ---------------------------------------------------
struct JobState {
  std::string state = "pending";  // pending, running, done, failed, diverged
  std::string run_dir;            // relative to the sweep directory
  int exit_code = 0;
  std::string reason, log_tail, host, updated;
  int attempts = 0;
  std::int64_t pid = 0;
};
JobState read_job_state(const SweepDirectory& sweep, const SweepJob& job);
void write_job_state(const SweepDirectory& sweep, const SweepJob& job, const JobState& state);
std::string job_dir(const SweepDirectory& sweep, const SweepJob& job);

// ---- Running jobs ------------------------------------------------------------------------
struct JobRunOptions {
  std::string binary;                // the blocklab executable (default: this process's)
  int threads = 0;                   // 0: leave the config's threads
  bool retry_failed = false;         // run failed jobs again
  std::function<void()> on_start{};  // called after the claim, right before the run starts
};

struct JobOutcome {
  enum class Kind { Ran, Skipped, Busy } kind = Kind::Ran;
  JobState state;
  double seconds = 0;
};

// Claims the job (an exclusive flock on jobs/<job>/claim, which the kernel drops when the worker
// dies, on any host: a dead worker's claim is taken over at once), runs it as a child
// `blocklab run ... --continue` (killed if this thread's process dies), and records the
// outcome in the ledger. Done and diverged jobs, and failed ones without retry_failed, are
// skipped; a job another live worker holds is Busy.
JobOutcome run_job(const SweepDirectory& sweep, const SweepJob& job, const JobRunOptions& options);

// ---- A job on several ranks of one Slurm step (srun --ntasks N blocklab job ...) ----------
// Every task of the step is a rank of one data-parallel run of the job. Rank 0 runs the job
// with run_job (claim, ledger, the run's files) and tells the other ranks, through `word_file`
// on the shared file system, "run" from JobRunOptions::on_start, or "exit <status>" when it
// runs nothing (done, busy, failed to start). The others claim nothing and write no ledger:
// follow_job waits for the word (up to kStepWordTimeoutSeconds) and on "run" starts the same `blocklab
// run`, which joins rank 0's through the rendezvous, with its output on this process's stdout
// and stderr. Returns the task's exit status (the run's, or the one rank 0 said).
constexpr int kStepWordTimeoutSeconds = 300;
void tell_step_ranks(const std::string& word_file, const std::string& word);
int follow_job(const SweepDirectory& sweep, const SweepJob& job, const JobRunOptions& options,
               const std::string& word_file);

// Whether a worker holds the job: "live" (its lock is held), "stale" (a claim file whose
// worker died: the job runs again on the next call) or "none".
std::string claim_state(const SweepDirectory& sweep, const SweepJob& job);

// Sends `signal` to every job child started by run_job in this process (SIGTERM on Ctrl-C:
// the runs checkpoint and exit with kExitRequeue).
void signal_running_jobs(int signal);

// CPU cores this process may use (its affinity mask).
int available_cores();

// The Slurm job-array script for a sweep (golden-tested): each array task runs
// `blocklab job <sweep dir> --index $SLURM_ARRAY_TASK_ID` (under `srun` as tasks_per_job ranks
// when that is above 1), forwards SIGUSR1/SIGTERM to it and requeues itself when the job
// checkpointed (exit kExitRequeue).
struct SlurmOptions {
  std::string binary, sweep_dir, job_name;
  std::vector<int> indices;  // array indices to run
  int parallel = 0;          // %P (0: no limit)
  int cpus_per_task = 1;     // per task: each rank's CPUs when tasks_per_job > 1
  int tasks_per_job = 1;     // > 1: --ntasks, and `srun` starts the job runner as that many ranks
  std::string time, partition;
  std::vector<std::string> extra;  // more #SBATCH lines ("--mem=4G")
};
std::string slurm_script(const SlurmOptions& options);
// "0-5", "0,2,4-7"
std::string array_spec(const std::vector<int>& indices);

}  // namespace blocklab
