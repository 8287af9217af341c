// blocklab run <experiment> [overrides...]: validates the config and runs its task.
#include <iostream>

#include "experiments/checkpoint.h"
#include "experiments/distributed.h"
#include "experiments/experiment.h"
#include "experiments/launch.h"
#include "experiments/state_dict.h"
#include "experiments/run_target.h"
#include "experiments/task.h"
#include "registry/cli_options.h"
#include "registry/command.h"

namespace blocklab {
namespace {

// `args` without `option` and its value (both "--nproc 2" and "--nproc=2").
std::vector<std::string> without_option(const std::vector<std::string>& args, const std::string& option) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == option) {
      ++i;
      continue;
    }
    if (args[i].rfind(option + "=", 0) != 0) out.push_back(args[i]);
  }
  return out;
}

// --init-from: a readable dict of tensors before anything starts (a bad file is bad input).
std::string checked_init_from(const std::string& run_or_file) {
  try {
    read_state_dict(init_weights_file(run_or_file));
  } catch (const CheckpointError& e) {
    throw UsageError(std::string("blocklab run: ") + e.what());
  }
  return run_or_file;
}

// --nproc N: checked once here, before any rank starts (each rank checks again).
void check_nproc(int nproc, const ConfigNode& config) {
  if (nproc < 1 || nproc > 256)
    throw UsageError("blocklab run: --nproc " + std::to_string(nproc) + " is not in [1, 256]");
  check_batch_splits(config, nproc, "another --nproc");
}

int run_command(const std::vector<std::string>& args) {
  if (const auto status = run_multirun_alias(args)) return *status;  // run -m ... is sweep ...
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("force", "run again even if an identical run exists")(
      "resume", "continue the run from its last checkpoint")(
      "continue", "resume if an unfinished run with this config has a checkpoint, else start it (sweeps)")(
      "record-dir", po::value<std::string>(), "write the run directory's path to this file (sweeps)")(
      "quiet,q", "no progress line")("nproc", po::value<int>(),
                                     "data-parallel ranks on this machine (Gloo on CPU, NCCL on CUDA; default 1)")(
      "init-from", po::value<std::string>(), "start from these weights: a run directory or a .pt state dict")(
      "config-dir", po::value<std::string>(), "experiment configs (default: experiments/conf or $BLOCKLAB_CONF)");
  const auto cl = parse_command_line("run", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "run", "<experiment | run directory> [overrides...]   (-m/--multirun <arguments>: blocklab sweep)",
        "Runs an experiment by config name: composes and validates the config, then runs the "
        "task it names.",
        opts,
        "Examples:\n  blocklab run vit_fmnist\n  blocklab run vit_fmnist trainer.epochs=3 seed=1\n"
        "  blocklab run vit_fmnist --nproc 2\n  blocklab run vit_fmnist --init-from results/runs/vit_fmnist/<id>\n");
    return 0;
  }
  if (cl.positional.empty()) throw UsageError("blocklab run: name an experiment\n  see: blocklab list experiment");
  const std::string dir = directory_option(cl, "run", "config-dir", default_config_dir());
  const std::vector<std::string> overrides(cl.positional.begin() + 1, cl.positional.end());
  Experiment e = load_run_target(dir, cl.positional[0], overrides);  // an experiment, or a past run's directory
  RunRequest request;
  request.experiment = e.name;
  request.config = e.config;
  request.overrides = e.overrides;
  request.force = cl.vars.count("force") > 0;
  request.resume = cl.vars.count("resume") > 0;
  request.quiet = cl.vars.count("quiet") > 0;
  request.resume_if_any = cl.vars.count("continue") > 0;
  if (cl.vars.count("record-dir")) request.record_dir_file = cl.vars["record-dir"].as<std::string>();
  if (cl.vars.count("init-from")) request.init_from = checked_init_from(cl.vars["init-from"].as<std::string>());
  if (request.force && (request.resume || request.resume_if_any))
    throw UsageError("blocklab run: --force starts over, --resume/--continue go on: give one of them");
  if (const int nproc = cl.vars.count("nproc") ? cl.vars["nproc"].as<int>() : 1; nproc != 1) {
    check_nproc(nproc, e.config);
    return launch_ranks(nproc, without_option(args, "--nproc"));
  }
  auto task = task_registry().create(e.config.at("task"), request);
  return task->run();
}

const bool BLOCKLAB_UNIQUE(registered_) =
    CommandRegistry::instance().add({"run", "run an experiment by config name (with overrides)", run_command, 40});

}  // namespace
}  // namespace blocklab
