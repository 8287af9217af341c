// blocklab run <experiment> [overrides...]: validates the config and runs its task.
#include <iostream>

#include "experiments/experiment.h"
#include "experiments/run_target.h"
#include "experiments/task.h"
#include "registry/cli_options.h"
#include "registry/command.h"

namespace blocklab {
namespace {

int run_command(const std::vector<std::string>& args) {
  if (const auto status = run_multirun_alias(args)) return *status;  // run -m ... is sweep ...
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("force", "run again even if an identical run exists")(
      "resume", "continue the run from its last checkpoint")(
      "continue", "resume if an unfinished run with this config has a checkpoint, else start it (sweeps)")(
      "record-dir", po::value<std::string>(), "write the run directory's path to this file (sweeps)")(
      "quiet,q", "no progress line")("config-dir", po::value<std::string>(),
                                     "experiment configs (default: experiments/conf or $BLOCKLAB_CONF)");
  const auto cl = parse_command_line("run", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "run", "<experiment | run directory> [overrides...]   (-m/--multirun <arguments>: blocklab sweep)",
        "Runs an experiment by config name: composes and validates the config, then runs the "
        "task it names.",
        opts, "Examples:\n  blocklab run vit_fmnist\n  blocklab run vit_fmnist trainer.epochs=3 seed=1\n");
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
  if (request.force && (request.resume || request.resume_if_any))
    throw UsageError("blocklab run: --force starts over, --resume/--continue go on: give one of them");
  auto task = task_registry().create(e.config.at("task"), request);
  return task->run();
}

const bool BLOCKLAB_UNIQUE(registered_) =
    CommandRegistry::instance().add({"run", "run an experiment by config name (with overrides)", run_command, 40});

}  // namespace
}  // namespace blocklab
