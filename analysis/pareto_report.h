// The report of an architecture search (`blocklab pareto`): the subnets the search chose for
// retraining (<search>/retrain.jsonl: the parameter front, a sample spread over inherited
// accuracy, the reference) joined with their from-scratch runs (sweeps over
// --config-dir <search>/conf model=...), as a Pareto table, the rank correlation between
// inherited and from-scratch accuracy, and plots.
//
// A run belongs to a retrained subnet when its resolved `model` section equals the subnet's model
// config (conf/model/<name>.yaml) leaf by leaf. Kendall's tau is tau-b (ties counted as scipy's
// kendalltau does): (C - D) / sqrt((P - T_x)(P - T_y)), P the pairs, T_x, T_y the pairs tied in
// one variable.
#pragma once

#include <string>
#include <vector>

#include "analysis/run_records.h"

namespace blocklab {

struct RetrainedSubnet {
  std::string model;  // the config name: front_0, tau_3, reference
  std::string role;   // front | tau | reference
  std::string key;    // the subnet's key (blocks/nas/space.h)
  std::int64_t parameters = 0;
  double mflops = 0, latency_ms = 0, inherited = 0;  // as the search measured them
  ConfigNode config;                                 // its model config
  std::vector<double> scratch;                       // the metric of each finished run
  double mean() const;                               // NaN without runs
  double stddev() const;                             // sample std; 0 for one run
};

// Reads <search_dir>/retrain.jsonl and conf/model/<name>.yaml; throws ConfigError naming a missing
// or corrupt file.
std::vector<RetrainedSubnet> load_retrained(const std::string& search_dir);

// Adds each finished run's `metric` to the subnet whose model config it ran; returns how many
// runs matched none.
std::int64_t assign_runs(std::vector<RetrainedSubnet>& subnets, const std::vector<RunRecord>& runs,
                         const std::string& metric);

// Kendall's tau-b of paired values; NaN for fewer than two pairs or a constant variable.
double kendall_tau(const std::vector<double>& x, const std::vector<double>& y);

// Whether a is at least as good as b on both axes and better on one (accuracy up, cost down).
bool dominates(double accuracy_a, double cost_a, double accuracy_b, double cost_b);

// The markdown report (the commands first, then the table, the dominance lines and tau).
std::string pareto_markdown(const std::vector<RetrainedSubnet>& subnets, const std::string& metric,
                            const std::string& commands);

// Accuracy against latency and against parameters, PNG and SVG: every retrained subnet at its
// from-scratch mean (± std) and its inherited accuracy, the reference marked.
void render_pareto_plots(const std::vector<RetrainedSubnet>& subnets, const std::string& metric,
                         const std::string& path_stem);

}  // namespace blocklab
