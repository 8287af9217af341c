#include "experiments/run_setup.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <filesystem>
#include <iostream>

#include "experiments/json_io.h"
#include "experiments/state_dict.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace fs = std::filesystem;

namespace blocklab {

namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }
}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) sigaction(sig, &action, nullptr);
}

int stop_signal() { return g_stop_signal.load(); }

void RunFiles::say(const std::string& line) {
  if (!writer) return;
  if (!quiet) std::cerr << line << std::endl;
  log.append_line(line);
}

void RunFiles::warn(const std::string& line) {
  if (!writer) return;
  std::cerr << line << std::endl;
  log.append_line(line);
}

void RunFiles::log_line(const std::string& line) {
  if (writer) log.append_line(line);
}

void RunFiles::metric(const JsonObject& line) {
  if (writer) metrics.append_line(line.str());
}

void RunFiles::finish(const JsonObject& summary) {
  if (writer) write_file_atomic(dir + "/summary.json", summary.str() + "\n");
}

RunSetup configure_runtime(const RunRequest& request) {
  const ConfigNode& cfg = request.config;
  RunSetup s;
  const ConfigNode* seed = cfg.find("seed");
  s.seed = seed && seed->is_int() ? static_cast<std::uint64_t>(seed->as_int()) : 0;
  const ConfigNode* out = cfg.find("output_dir");
  s.world = world_from_environment(out && out->is_scalar() ? out->text() : "results/runs");
  const ConfigNode* threads = cfg.find("threads");
  const int cores = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  s.threads = threads && threads->is_int() && threads->as_int() > 0
                  ? static_cast<int>(threads->as_int())
                  : (s.world ? std::max(1, cores / s.world->local_size) : kDefaultThreads);
  at::set_num_threads(s.threads);
  try {
    at::set_num_interop_threads(1);
  } catch (const c10::Error&) {
    // Already set in this process (tests run several tasks); the value is the same.
  }
  const ConfigNode* device = cfg.find("device");
  const std::string want = device && device->is_scalar() ? device->text() : "auto";
  if (want == "cuda" && !torch::cuda::is_available())
    throw ConfigError("device=cuda, but no CUDA device is available here", device->source(), "device",
                      {"use device=cpu or device=auto"});
  s.device = (want == "cuda" || (want == "auto" && torch::cuda::is_available())) ? torch::Device(torch::kCUDA)
                                                                                 : torch::Device(torch::kCPU);
  if (s.device.is_cpu()) at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
  torch::manual_seed(s.seed);
  s.files.quiet = request.quiet || (s.world && s.world->rank > 0);
  s.files.writer = !s.world || s.world->rank == 0;
  return s;
}

// The weights a run starts from, by path and content.
static std::string init_fingerprint(const std::string& init_from) {
  const std::string file = init_weights_file(init_from);
  const std::string bytes = read_file(file);
  return fs::absolute(file).lexically_normal().string() + " " + hex64(fnv1a64(bytes.data(), bytes.size()));
}

static std::string env_json(const RunSetup& s, const CodeVersion& code, const std::string& init_from) {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return JsonObject()
             .set("git_commit", code.commit)
             .set("git_dirty", code.dirty)
             .set("git_diff", code.diff)  // a hash of the uncommitted changes the binary was built with
             .set("libtorch", std::string(BLOCKLAB_TORCH_VERSION))
             .set("device", s.device.str())
             .set("cuda_available", torch::cuda::is_available())
             .set("threads", s.threads)
             .set("seed", static_cast<std::int64_t>(s.seed))
             .set("host", std::string(host))
             .set("world_size", s.world ? s.world->size : 1)
             .set("init_from", init_from)
             .str() +
         "\n";
}

std::string RunAlreadyDone::message() const {
  if (diverged())
    return "an identical run " + status + ": " + dir + "\n  " + summary +
           "  (the same config and seed diverge again; change the config, e.g. a lower trainer.lr, or run it "
           "again with --force)";
  return "an identical run has already finished: " + dir + "\n  " + summary + "  (run it again with --force)";
}

namespace {

constexpr const char* kLockFile = "run.lock";

// The "status" of a summary.json ("" when it has none or cannot be read).
std::string summary_status(const std::string& path) {
  try {
    const Json s = read_json_file(path);
    const auto status = s.is_object() ? s.find("status") : s.end();
    return status != s.end() && status->is_string() ? status->get<std::string>() : "";
  } catch (const std::exception&) {
    return "";
  }
}

// Removes everything in a run directory but its lock (held by this process).
void clear_run_directory(const std::string& dir) {
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename() != kLockFile) fs::remove_all(entry.path());
}

// One writer per run directory: the lock is held until this process exits.
FileLock lock_run_directory(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw FileWriteError(dir, "cannot create the run directory (" + ec.message() + ")");
  const std::string path = dir + "/" + kLockFile;
  if (auto lock = FileLock::try_acquire(path, lock_owner_text() + "\n")) return std::move(*lock);
  // The holder writes its name right after taking the lock: give it a moment.
  std::string owner;
  for (int attempt = 0; attempt < 100 && owner.empty(); ++attempt) {
    if (attempt) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    try {
      owner = read_file(path);
    } catch (const std::exception&) {
    }
  }
  while (!owner.empty() && owner.back() == '\n') owner.pop_back();
  throw ConfigError(
      "run " + dir + " is in progress (" + (owner.empty() ? "another process" : owner) + "); wait for it or stop it",
      Source{}, "", {"a SIGTERM makes it checkpoint and exit; continue it afterwards with --resume"});
}

}  // namespace

void open_run_directory(const RunRequest& request, const std::string& data_fingerprint, RunSetup& setup) {
  const ConfigNode& cfg = request.config;
  const CodeVersion code = code_version();
  // The output location does not change results, so it is not part of the identity.
  ConfigNode identity = cfg;
  identity.erase("output_dir");
  const std::string init = request.init_from.empty() ? "" : init_fingerprint(request.init_from);
  const std::string key = dump_yaml(identity) + "\ncode: " + code.text() + "\ndata: " + data_fingerprint +
                          "\nthreads: " + std::to_string(setup.threads) + "\ndevice: " + setup.device.str() + "\n" +
                          (setup.world ? "world: " + std::to_string(setup.world->size) + "\n" : "") +
                          (init.empty() ? "" : "init: " + init + "\n");
  RunFiles& f = setup.files;
  f.id = hex64(fnv1a64(key.data(), key.size())).substr(0, 12);
  const ConfigNode* out = cfg.find("output_dir");
  const std::string root = out && out->is_scalar() ? out->text() : "results/runs";
  f.dir = root + "/" + request.experiment + "/" + f.id;
  const bool existed = fs::exists(f.dir);
  f.lock = lock_run_directory(f.dir);
  if (!request.record_dir_file.empty())
    write_file_atomic(request.record_dir_file, fs::absolute(f.dir).lexically_normal().string() + "\n");

  const std::string summary_path = f.dir + "/summary.json";
  const std::string status = file_exists(summary_path) ? summary_status(summary_path) : "";
  const bool ended = status == "finished" || status.rfind("diverged", 0) == 0;
  const bool has_checkpoint = file_exists(f.checkpoint("last"));
  if (request.force) {
    clear_run_directory(f.dir);
  } else if (ended) {
    throw RunAlreadyDone{f.dir, read_file(summary_path), status};
  } else if (request.resume || (request.resume_if_any && has_checkpoint)) {
    if (!has_checkpoint)
      throw ConfigError("nothing to resume: no checkpoint in " + f.dir, Source{}, "",
                        {"start the run without --resume"});
    setup.resuming = true;
  } else if (has_checkpoint) {
    throw ConfigError("an unfinished run with this config exists in " + f.dir, Source{}, "",
                      {"continue it with --resume, or start it over with --force"});
  } else if (existed) {
    clear_run_directory(f.dir);  // started (or failed) before its first checkpoint: nothing worth keeping
  }
  fs::create_directories(f.dir + "/checkpoints");
  if (setup.resuming && file_exists(summary_path)) fs::remove(summary_path);
  if (!setup.resuming) {
    write_file_atomic(f.dir + "/config.yaml", dump_yaml(cfg, DumpOptions{true}));  // with provenance, for diff
    ConfigNode overrides = ConfigNode::sequence();
    for (const auto& o : request.overrides) overrides.push_back(ConfigNode::string(o.text));
    write_file_atomic(f.dir + "/overrides.yaml", dump_yaml(overrides));
    write_file_atomic(f.dir + "/env.json", env_json(setup, code, init));
  }
  f.metrics = AppendFile(f.dir + "/metrics.jsonl");
  f.log = AppendFile(f.dir + "/log.txt");
}

}  // namespace blocklab
