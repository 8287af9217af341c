// What `blocklab run` runs, with two of Hydra's habits: an experiment by name, a past run's
// directory (its recorded config again), or with -m / --multirun a sweep. README, "Hydra habits".
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "experiments/experiment.h"

namespace blocklab {

// `blocklab run -m <arguments>` (or --multirun, anywhere before "--") is `blocklab sweep
// <the other arguments>`: its exit status. nullopt when neither flag is given.
std::optional<int> run_multirun_alias(const std::vector<std::string>& args);

// Whether the first argument of `blocklab run` names a run directory rather than an experiment:
// an existing directory that is no experiment's name (by a path with a '/', or "." in a run dir).
bool names_run_directory(const std::string& config_dir, const std::string& target);

// The experiment of `blocklab run <target> [overrides...]`, validated. An experiment name is
// composed from config_dir. A run directory (<output_dir>/<experiment>/<id>, with config.yaml
// and overrides.yaml) gives its recorded config.yaml, which is the truth (the experiment's files
// may have changed since), with `overrides` as value overrides; the experiment is the
// directory's parent's name and output_dir its root, so that without new overrides (and with
// the same code) it is the same run: the usual --force / --resume rules apply. Its overrides are
// the recorded ones followed by the new ones.
Experiment load_run_target(const std::string& config_dir, const std::string& target,
                           const std::vector<std::string>& overrides);

}  // namespace blocklab
