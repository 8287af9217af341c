// Loading an experiment: compose its YAML (experiments/conf/<name>.yaml plus overrides),
// resolve interpolations, and validate the result against the registry schemas before
// anything is built.
#pragma once

#include <string>
#include <vector>

#include "registry/compose.h"
#include "registry/schema.h"

namespace blocklab {

// $BLOCKLAB_CONF if set, else the source tree's experiments/conf.
std::string default_config_dir();

struct Experiment {
  std::string name;
  std::string config_dir;
  ConfigNode config;  // composed, resolved, validated
  std::vector<Override> overrides;
  std::vector<std::pair<std::string, std::string>> choices;
};

// Parses the override strings (all errors in one report), composes and, when `validate`,
// checks the config against the common schema plus its task's schema.
Experiment load_experiment(const std::string& config_dir, const std::string& name,
                           const std::vector<std::string>& override_texts, bool validate = true);

// Keys every experiment has (name, task, seed, device, threads, output_dir).
const Schema& experiment_common_schema();

// Validates a composed experiment config; throws ConfigError with every problem found.
void validate_experiment(const ConfigNode& config);

// Parses override strings, collecting every malformed one into one report.
std::vector<Override> parse_overrides(const std::vector<std::string>& texts);

}  // namespace blocklab
