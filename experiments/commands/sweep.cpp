// blocklab sweep <experiment> [overrides with sweep syntax]: every point validated first, then
// run as independent, resumable jobs by a local pool or a Slurm job array.
// blocklab job <sweep dir> --index I: runs one job (what each Slurm array task calls; under srun
// with several tasks, each task is a rank of the job's data-parallel run).
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include "experiments/distributed.h"
#include "experiments/experiment.h"
#include "experiments/json_io.h"
#include "experiments/progress.h"
#include "experiments/run_files.h"
#include "experiments/sweep.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/suggest.h"

namespace fs = std::filesystem;

namespace blocklab {
namespace {

std::atomic<int> g_interrupted{0};
extern "C" void on_interrupt(int sig) {
  g_interrupted.store(sig);
  // Runs checkpoint and exit with kExitRequeue; their jobs stay pending for the next call.
  signal_running_jobs(SIGTERM);
}

void install_forwarding(std::initializer_list<int> signals, void (*handler)(int)) {
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  for (int sig : signals) sigaction(sig, &action, nullptr);
}

// The final metrics of a finished job's run, compactly ("val/acc 0.8123 test/acc 0.8050").
std::string final_metrics(const SweepDirectory& sweep, const JobState& st) {
  if (st.run_dir.empty()) return "";
  const std::string path = sweep.dir + "/" + st.run_dir + "/summary.json";
  if (!file_exists(path)) return "";
  try {
    const ConfigNode summary = parse_json_object(read_file(path), path);
    const ConfigNode* final = summary.find("final");
    std::string out;
    if (final && final->is_map())
      for (const auto& [k, v] : final->entries())
        if (k.find('/') != std::string::npos && v.is_number()) {
          char buf[64];
          std::snprintf(buf, sizeof buf, "%s %.4f", k.c_str(), v.as_double());
          out += (out.empty() ? "" : "  ") + std::string(buf);
        }
    return out;
  } catch (const std::exception&) {
    return "";
  }
}

struct Tally {
  int done = 0, failed = 0, diverged = 0, pending = 0, running = 0;
  std::string text() const {
    std::string out = std::to_string(done) + " done";
    if (failed) out += ", " + std::to_string(failed) + " failed";
    if (diverged) out += ", " + std::to_string(diverged) + " diverged";
    if (running) out += ", " + std::to_string(running) + " running elsewhere";
    if (pending) out += ", " + std::to_string(pending) + " pending";
    return out;
  }
  void add(const std::string& state) {
    if (state == "done")
      ++done;
    else if (state == "failed")
      ++failed;
    else if (state == "diverged")
      ++diverged;
    else if (state == "running")
      ++running;
    else
      ++pending;
  }
};

int run_local(const SweepDirectory& sweep, int jobs, bool retry_failed, bool quiet, bool user_threads) {
  const int cores = available_cores();
  if (jobs > cores) {
    std::cerr << "--jobs " << jobs << " is more than the " << cores << " cores here: using " << cores << "\n";
    jobs = cores;
  }
  JobRunOptions options;
  options.retry_failed = retry_failed;
  options.threads = user_threads ? 0 : std::max(1, cores / jobs);

  // What is left to do (done and diverged jobs are results; failed ones need --retry-failed).
  std::vector<const SweepJob*> todo;
  Tally before;
  for (const auto& job : sweep.jobs) {
    const JobState st = read_job_state(sweep, job);
    const bool settled = st.state == "done" || st.state == "diverged" || (st.state == "failed" && !retry_failed);
    if (settled)
      before.add(st.state);
    else
      todo.push_back(&job);
  }
  std::cerr << "sweep " << sweep.dir << ": " << sweep.jobs.size() << " jobs";
  if (todo.size() != sweep.jobs.size()) std::cerr << " (" << before.text() << " already)";
  std::cerr << "; running " << todo.size() << " with " << jobs << " worker" << (jobs > 1 ? "s" : "") << " x "
            << (options.threads ? std::to_string(options.threads) : std::string("the config's")) << " threads\n";
  if (before.failed && !retry_failed)
    std::cerr << "  " << before.failed << " failed job(s) are not run again: add --retry-failed\n";

  install_forwarding({SIGINT, SIGTERM}, on_interrupt);
  std::mutex print;
  std::atomic<std::size_t> next{0};
  std::atomic<int> completed{0};
  Tally after = before;
  Progress progress("jobs", static_cast<std::int64_t>(todo.size()), quiet);
  const auto start = std::chrono::steady_clock::now();
  progress.update(0, before.text(), 0);  // the clock of the rate and the ETA starts now
  auto worker = [&] {
    for (std::size_t i; !g_interrupted.load() && (i = next.fetch_add(1)) < todo.size();) {
      const SweepJob& job = *todo[i];
      JobOutcome out;
      try {
        out = run_job(sweep, job, options);
      } catch (const std::exception& e) {
        out.state.state = "failed";
        out.state.reason = e.what();
      }
      std::lock_guard<std::mutex> lock(print);
      const int n = ++completed;
      const std::string state = out.kind == JobOutcome::Kind::Busy ? "running" : out.state.state;
      after.add(state);
      progress.finish();
      char head[96];
      const bool ran = out.kind == JobOutcome::Kind::Ran;
      std::snprintf(head, sizeof head, "[%d/%zu] %-8s %s ", n, todo.size(),
                    ran                                  ? state.c_str()
                    : out.kind == JobOutcome::Kind::Busy ? "busy"
                                                         : "skipped",
                    job.id.c_str());
      std::cerr << head << params_text(job);
      if (out.kind == JobOutcome::Kind::Skipped) std::cerr << "  (" << state << ": settled by another worker)";
      if (ran && state == "done")
        std::cerr << "  " << final_metrics(sweep, out.state) << "  (" << Progress::format_duration(out.seconds) << ")";
      if (out.kind == JobOutcome::Kind::Busy) std::cerr << "  (another worker holds it)";
      if (ran && (state == "failed" || state == "diverged")) std::cerr << "\n    " << out.state.reason;
      std::cerr << std::endl;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      progress.update(n, after.text(), seconds > 0 ? n / seconds : 0);
    }
  };
  std::vector<std::thread> pool;
  for (int w = 0; w < jobs; ++w) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  progress.finish();

  Tally final;
  for (const auto& job : sweep.jobs) final.add(read_job_state(sweep, job).state);
  std::cerr << "sweep " << sweep.id << ": " << sweep.jobs.size() << " jobs: " << final.text() << "\n";
  if (g_interrupted.load()) {
    std::cerr << "interrupted: run the same command again to continue (finished jobs are kept)\n";
    return 130;
  }
  std::cerr << "  table: blocklab table " << sweep.dir << " --rows ... --cols ... --metric ...\n";
  if (final.failed) {
    std::cerr << "  failed jobs: blocklab status " << sweep.dir << " (their reasons and log tails)\n";
    return 1;
  }
  return 0;
}

// One #SBATCH value from the command line: a single line (a newline would add script lines).
std::string sbatch_value(const std::string& option, const std::string& value, const char* allowed,
                         const char* example) {
  const bool ok = !value.empty() && value.size() <= 200 && std::all_of(value.begin(), value.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr(allowed, c);
  });
  if (!ok)
    throw UsageError("blocklab sweep: " + option + " '" + printable(value) +
                     "' is not a valid value: use letters, digits and " + allowed + " only, e.g. " + example);
  return value;
}

// The Slurm settings of the command line, checked (the script is written from them).
SlurmOptions slurm_options(const CommandLine& cl) {
  SlurmOptions o;
  o.parallel = static_cast<int>(integer_option(cl, "sweep", "parallel", 0, 1000000, 0));
  o.cpus_per_task = static_cast<int>(integer_option(cl, "sweep", "cpus-per-task", 1, 1024, 1));
  o.tasks_per_job = static_cast<int>(integer_option(cl, "sweep", "tasks-per-job", 1, 4096, 1));
  if (cl.vars.count("time")) o.time = sbatch_value("--time", string_option(cl, "time"), ":-", "1:00:00 or 2-12:00:00");
  if (cl.vars.count("partition"))
    o.partition = sbatch_value("--partition", string_option(cl, "partition"), "_.,-", "gpu or cpu,long");
  if (cl.vars.count("sbatch"))
    for (const auto& line : cl.vars["sbatch"].as<std::vector<std::string>>()) {
      if (line.rfind("-", 0) != 0)
        throw UsageError("blocklab sweep: --sbatch takes an sbatch option such as --mem=4G, not '" + printable(line) +
                         "'");
      o.extra.push_back(sbatch_value("--sbatch", line, "-=_.,:%@/+", "--mem=4G or --gres=gpu:1"));
    }
  return o;
}

int run_slurm(const SweepDirectory& sweep, SlurmOptions o, bool retry_failed, bool dry_run) {
  o.binary = fs::read_symlink("/proc/self/exe").string();
  o.sweep_dir = sweep.dir;
  o.job_name = "blocklab-" + sweep.experiment + "-" + sweep.id;
  for (const auto& job : sweep.jobs) {
    const JobState st = read_job_state(sweep, job);
    if (st.state == "done" || st.state == "diverged" || (st.state == "failed" && !retry_failed)) continue;
    o.indices.push_back(job.index);
  }
  if (o.indices.empty()) {
    std::cerr << "sweep " << sweep.dir << ": every job is settled; nothing to submit\n";
    return 0;
  }
  const std::string script_path = sweep.dir + "/slurm/sweep.sbatch";
  const std::string script = slurm_script(o);
  fs::create_directories(sweep.dir + "/slurm");
  write_file_atomic(script_path, script);
  if (dry_run) {
    std::cout << script;
    std::cerr << "not submitted (--dry-run); the script is " << script_path << "\n";
    return 0;
  }
  std::string sbatch;
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"})
    if (fs::exists(std::string(dir) + "/sbatch")) sbatch = std::string(dir) + "/sbatch";
  if (sbatch.empty())
    throw ConfigError("sbatch is not installed here, so the Slurm array cannot be submitted", Source{}, "",
                      {"the script is written: " + script_path, "submit it where Slurm runs: sbatch " + script_path,
                       "or run the sweep here: --launcher local"});
  const std::string command = sbatch + " --parsable '" + script_path + "' 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string output;
  char buf[256];
  while (pipe && std::fgets(buf, sizeof buf, pipe)) output += buf;
  const int status = pipe ? ::pclose(pipe) : -1;
  while (!output.empty() && output.back() == '\n') output.pop_back();
  if (status != 0) throw std::runtime_error("sbatch failed: " + output);
  AppendFile(sweep.dir + "/slurm/submissions.txt").append_line(output + " " + array_spec(o.indices));
  std::cout << output << "\n";
  std::cerr << "submitted Slurm array job " << output << ": " << o.indices.size() << " task(s)"
            << (o.parallel > 0 ? ", at most " + std::to_string(o.parallel) + " at a time" : "") << "\n"
            << "  progress: blocklab status " << sweep.dir << "\n";
  return 0;
}

int sweep_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("launcher", po::value<std::string>(),
                                                 "local (default: a pool of processes) or slurm (a job array)")(
      "jobs,j", po::value<std::string>(),
      "local: parallel jobs, 1 to 1024 (default 1; threads per job = cores / jobs)")(
      "retry-failed", "run failed jobs again")("dry-run", "plan, validate and write the sweep directory; run nothing")(
      "allow-large", "allow more than 10,000 points (up to 1,000,000)")(
      "parallel", po::value<std::string>(), "slurm: at most this many array tasks at once (%P; default 0: no limit)")(
      "cpus-per-task", po::value<std::string>(), "slurm: CPUs (and LibTorch threads) per task, 1 to 1024 (default 1)")(
      "tasks-per-job", po::value<std::string>(),
      "slurm: tasks per job, 1 to 4096 (default 1); above 1 each job trains data-parallel, one rank per task "
      "(srun)")("time", po::value<std::string>(), "slurm: time limit per task (e.g. 1:00:00)")(
      "partition", po::value<std::string>(), "slurm: partition")(
      "sbatch", po::value<std::vector<std::string>>(),
      "slurm: another #SBATCH line (repeatable), e.g. --sbatch=--mem=4G")(
      "root", po::value<std::string>()->default_value("results/sweeps"), "where sweep directories go")(
      "quiet,q", "no progress line")("config-dir", po::value<std::string>(),
                                     "experiment configs (default: experiments/conf or $BLOCKLAB_CONF)");
  const auto cl = parse_command_line("sweep", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "sweep", "<experiment> [overrides...]",
        "Runs a grid of configs as independent, resumable jobs. Every point is composed and validated before "
        "anything runs. Running the same command again skips finished jobs and continues interrupted ones.",
        opts,
        "Sweep syntax:\n"
        "  key=a,b,c  key=choice(a,b)  key=range(0,3)  key=range(1e-4,1e-3,2e-4)\n"
        "  key=glob('attention/*')     registry names (or config-group options) matching the pattern\n"
        "  zip(a,b)=[1,x],[2,y]        pairs values instead of a product\n"
        "Examples:\n"
        "  blocklab sweep vit_fmnist model.mixer.heads=2,4 trainer.lr=1e-3,2e-3 seed=0,1,2 --jobs 2\n"
        "  blocklab sweep vit_fmnist seed=range(0,5) --launcher slurm --parallel 4 --time 2:00:00\n"
        "  blocklab sweep vit_fmnist seed=0,1 --launcher slurm --tasks-per-job 4 --sbatch=--nodes=2\n"
        "Then: blocklab status <sweep dir>, blocklab table <sweep dir> --rows ... --cols ... --metric test/acc\n");
    return 0;
  }
  if (cl.positional.empty()) throw UsageError("blocklab sweep: name an experiment\n  see: blocklab list experiment");
  const std::string launcher = choice_option(cl, "sweep", "launcher", {"local", "slurm"}, "local");
  const int jobs = static_cast<int>(integer_option(cl, "sweep", "jobs", 1, 1024, 1));
  const SlurmOptions slurm = slurm_options(cl);  // checked before planning, used for --launcher slurm
  if (slurm.tasks_per_job > 1 && launcher != "slurm")
    throw UsageError(
        "blocklab sweep: --tasks-per-job is for --launcher slurm (each job as the srun tasks of one "
        "data-parallel run); on one machine, run a job data-parallel with blocklab run --nproc");
  const std::string dir = directory_option(cl, "sweep", "config-dir", default_config_dir());
  const std::vector<std::string> overrides(cl.positional.begin() + 1, cl.positional.end());

  // Every point composed and validated, streamed into the sweep directory.
  SweepRequest request{dir, checked_file_name("sweep", "the experiment name", cl.positional[0]), overrides,
                       cl.vars.count("allow-large") > 0};
  if (const int tasks = slurm.tasks_per_job; tasks > 1)  // each point's global batch splits into the ranks
    request.check = [tasks](const ConfigNode& config) { check_batch_splits(config, tasks, "another --tasks-per-job"); };
  std::size_t planned = 0;
  const std::string sweep_dir = plan_sweep_directory(request, cl.vars["root"].as<std::string>(), &planned);
  const SweepDirectory sweep = read_sweep_directory(sweep_dir);
  const bool retry = cl.vars.count("retry-failed") > 0;
  if (launcher == "slurm") return run_slurm(sweep, slurm, retry, cl.vars.count("dry-run") > 0);
  if (cl.vars.count("dry-run")) {
    std::cout << sweep_dir << "\n";
    for (const auto& job : sweep.jobs)
      std::cout << "  " << job.index << " " << job.id << " " << params_text(job) << "\n";
    std::cerr << planned << " jobs planned and validated (--dry-run: nothing run)\n";
    return 0;
  }
  bool user_threads = false;
  for (const auto& o : overrides) user_threads = user_threads || o.rfind("threads=", 0) == 0;
  return run_local(sweep, jobs, retry, cl.vars.count("quiet") > 0, user_threads);
}

extern "C" void forward_to_run(int sig) { signal_running_jobs(sig); }

// Says how the job went; returns `blocklab job`'s exit status for it (kExitRequeue: run it again).
int job_exit_status(const SweepJob& job, const JobOutcome& out) {
  if (out.kind == JobOutcome::Kind::Busy) {
    std::cerr << "job " << job.index << " (" << job.id << ") is held by another live worker\n";
    return 0;
  }
  std::cerr << "job " << job.index << " (" << job.id << "): " << out.state.state
            << (out.kind == JobOutcome::Kind::Skipped ? " already" : "")
            << (out.state.reason.empty() ? "" : ": " + out.state.reason) << "\n";
  const std::string& s = out.state.state;
  return s == "done" ? 0 : s == "pending" ? kExitRequeue : s == "diverged" ? 3 : 1;
}

// A job under `srun --ntasks N`: every task is a rank of one data-parallel run of the job. Rank 0
// runs it as one task does and tells the others whether it starts the run (sweep.h, follow_job).
int run_job_on_ranks(const SweepDirectory& sweep, const SweepJob& job, JobRunOptions options, const WorldSpec& world) {
  const std::string word_file = sweep.dir + "/slurm/steps/" + slurm_step_name();
  if (world.rank > 0) {
    const int status = follow_job(sweep, job, options, word_file);
    std::cerr << "job " << job.index << " (" << job.id << "), rank " << world.rank << " of " << world.size
              << ": exit status " << status << "\n";
    return status;
  }
  bool told = false;
  options.on_start = [&] {
    tell_step_ranks(word_file, "run");
    told = true;
  };
  int status = 2;  // what the other ranks hear when this fails before the run starts
  try {
    status = job_exit_status(job, run_job(sweep, job, options));
  } catch (...) {
    if (!told) tell_step_ranks(word_file, "exit " + std::to_string(status));
    throw;
  }
  if (!told) tell_step_ranks(word_file, "exit " + std::to_string(status));
  return status;
}

int job_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("index", po::value<std::string>(),
                                                 "job index (default: $SLURM_ARRAY_TASK_ID)")(
      "threads", po::value<std::string>(), "LibTorch threads for the run, 0 to 256 (default 0: the config's)")(
      "retry-failed", "run the job again if it failed");
  const auto cl = parse_command_line("job", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help("job", "<sweep dir> [--index I]",
                              "Runs one job of a sweep (what a Slurm array task calls). Idempotent: a finished job is "
                              "skipped, a job another live worker holds is left alone. Under srun with several tasks, "
                              "each task is a rank of the job's data-parallel run: rank 0 claims the job and keeps "
                              "the ledger, the others join its run.",
                              opts);
    return 0;
  }
  if (cl.positional.size() != 1) throw UsageError("blocklab job: give one sweep directory");
  const char* env = std::getenv("SLURM_ARRAY_TASK_ID");
  if (!cl.vars.count("index") && !env)
    throw UsageError("blocklab job: give --index (or run inside a Slurm array task)");
  const int threads = static_cast<int>(integer_option(cl, "job", "threads", 0, 256, 0));
  const SweepDirectory sweep = read_sweep_directory(cl.positional[0]);
  const std::int64_t last = static_cast<std::int64_t>(sweep.jobs.size()) - 1;
  if (last < 0) throw UsageError("blocklab job: the sweep " + sweep.dir + " has no jobs");
  const int index =
      static_cast<int>(cl.vars.count("index") ? integer_option(cl, "job", "index", 0, last, 0)
                                              : parse_integer("job", "$SLURM_ARRAY_TASK_ID", env, 0, last));
  install_forwarding({SIGINT, SIGTERM, SIGUSR1}, forward_to_run);
  JobRunOptions options;
  options.threads = threads;
  options.retry_failed = cl.vars.count("retry-failed") > 0;
  const SweepJob& job = sweep.jobs[static_cast<std::size_t>(index)];
  const std::optional<WorldSpec> world = world_from_environment(sweep.dir + "/runs");
  return world ? run_job_on_ranks(sweep, job, options, *world) : job_exit_status(job, run_job(sweep, job, options));
}

const bool BLOCKLAB_UNIQUE(registered_) =
    CommandRegistry::instance().add({"sweep", "run a grid of configs as resumable jobs (local pool or Slurm array)",
                                     sweep_command, 45}) &&
    CommandRegistry::instance().add({"job", "run one job of a sweep (Slurm array tasks call this)", job_command, 47});

}  // namespace
}  // namespace blocklab
