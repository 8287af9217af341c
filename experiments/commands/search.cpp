// blocklab search <experiment> [overrides...]: architecture search over a supernet's space.
//
// The experiment trains a model/supernet (task supernet): the command first runs it, or continues
// it, or finds it finished (the same run directory `blocklab run` uses), then searches the space
// with the trained weights (experiments/search.h) and writes, under
// <out>/<experiment>/<id>/ (id: the supernet's run and the search settings):
//   search.json    the settings, the supernet's run directory and the space
//   ledger.jsonl   every measured candidate (a rerun of a killed search continues from it)
//   candidates.csv every evaluation, in order
//   pareto.md      the accuracy / parameters, MFLOPs and latency fronts
//   conf/          a copy of the experiment configs plus, as ordinary model configs, subnets
//                  spread along the parameter front (model/front_<k>.yaml), a sample spread
//                  over inherited accuracy (model/tau_<k>.yaml) and the --reference subnet:
//                  `blocklab sweep vit_fmnist --config-dir <dir>/conf model=front_0,...`
//                  retrains them from scratch; retrain.jsonl lists them with their measures
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "experiments/experiment.h"
#include "experiments/model_builder.h"
#include "experiments/progress.h"
#include "experiments/search.h"
#include "experiments/task.h"
#include "experiments/trained_run.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

namespace fs = std::filesystem;

struct SearchCommand {
  std::string config_dir, experiment, out = "results/searches";
  std::vector<std::string> overrides;
  bool quiet = false;
  std::int64_t tau_sample = 8, front_count = 5;
  std::string reference;  // a subnet as YAML ({width: 64, layers: [...]}), or ""
  SearchSettings settings;
};

std::string search_settings_text(const SearchSettings& s) {
  std::ostringstream t;
  t << "algorithm: " << s.algorithm << "\ncandidates: " << s.candidates << "\npopulation: " << s.population
    << "\nsample: " << s.sample << "\nmutation: " << s.mutation << "\nseed: " << s.seed << "\nsplit: " << s.split
    << "\neval_examples: " << s.eval_examples << "\nlatency_repeats: " << s.latency_repeats
    << "\nmax_parameters: " << s.constraints.max_parameters << "\nmax_mflops: " << s.constraints.max_mflops
    << "\nmax_latency_ms: " << s.constraints.max_latency_ms << "\n";
  return t.str();
}

// Trains the supernet, continues it, or finds it finished; its run directory.
std::string supernet_run(const SearchCommand& c, const Experiment& e) {
  if (e.config.at("task").text() != "supernet")
    throw UsageError("blocklab search: " + e.name + " trains task '" + e.config.at("task").text() +
                     "', not a supernet\n  search a supernet experiment (task: supernet), e.g. blocklab search "
                     "fmnist_supernet");
  const fs::path record = fs::temp_directory_path() / ("blocklab-search-" + std::to_string(::getpid()) + ".dir");
  RunRequest request;
  request.experiment = e.name;
  request.config = e.config;
  request.overrides = e.overrides;
  request.resume_if_any = true;
  request.quiet = c.quiet;
  request.record_dir_file = record.string();
  const int status = task_registry().create(e.config.at("task"), request)->run();
  std::string dir = file_exists(record.string()) ? read_file(record.string()) : "";
  fs::remove(record);
  while (!dir.empty() && dir.back() == '\n') dir.pop_back();
  if (status != 0 || dir.empty())
    throw ConfigError("the supernet's training did not finish (exit " + std::to_string(status) + ")", Source{}, "",
                      {"see its log.txt; rerun blocklab search to continue it"});
  return dir;
}

std::string search_fixed(double v, int digits) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(digits);
  s << v;
  return s.str();
}

std::string search_front_table(const std::vector<Candidate>& front, const std::string& cost_name) {
  std::string t =
      "| " + cost_name + " | accuracy | parameters | MFLOPs | latency (ms) | subnet |\n|---|---|---|---|---|---|\n";
  for (const auto& c : front)
    t += "| " + std::to_string(&c - &front[0] + 1) + " | " + search_fixed(c.accuracy, 4) + " | " +
         std::to_string(c.parameters) + " | " + search_fixed(c.mflops, 2) + " | " + search_fixed(c.latency_ms, 3) +
         " | " + subnet_key(c.subnet) + " |\n";
  return t;
}

void write_search_results(const std::string& dir, const std::vector<Candidate>& history, const SupernetImpl& supernet) {
  std::string csv = "index,accuracy,parameters,mflops,latency_ms,subnet\n";
  for (std::size_t i = 0; i < history.size(); ++i) {
    const auto& c = history[i];
    csv += std::to_string(i) + "," + search_fixed(c.accuracy, 6) + "," + std::to_string(c.parameters) + "," +
           search_fixed(c.mflops, 4) + "," + search_fixed(c.latency_ms, 4) + "," + subnet_key(c.subnet) + "\n";
  }
  write_file_atomic(dir + "/candidates.csv", csv);
  const auto by_params = pareto_front(history, [](const Candidate& c) { return static_cast<double>(c.parameters); });
  const auto by_flops = pareto_front(history, [](const Candidate& c) { return c.mflops; });
  const auto by_latency = pareto_front(history, [](const Candidate& c) { return c.latency_ms; });
  write_file_atomic(dir + "/pareto.md",
                    "# Pareto fronts of " + std::to_string(history.size()) +
                        " candidates (accuracy with inherited weights)\n\n## Accuracy vs parameters\n\n" +
                        search_front_table(by_params, "#") + "\n## Accuracy vs MFLOPs\n\n" +
                        search_front_table(by_flops, "#") + "\n## Accuracy vs latency\n\n" +
                        search_front_table(by_latency, "#"));
}

// Up to `count` of `sorted`, spread evenly from the first to the last.
std::vector<Candidate> spread(const std::vector<Candidate>& sorted, std::int64_t count) {
  if (static_cast<std::int64_t>(sorted.size()) <= count) return sorted;
  std::vector<Candidate> out;
  for (std::int64_t i = 0; i < count; ++i)
    out.push_back(sorted[static_cast<std::size_t>(std::llround(
        static_cast<double>(i) * static_cast<double>(sorted.size() - 1) / static_cast<double>(count - 1)))]);
  return out;
}

// The evaluated candidates, each once, by increasing inherited accuracy.
std::vector<Candidate> by_accuracy(const std::vector<Candidate>& history) {
  std::vector<Candidate> unique = evaluated_once(history);
  std::stable_sort(unique.begin(), unique.end(),
                   [](const Candidate& a, const Candidate& b) { return a.accuracy < b.accuracy; });
  return unique;
}

// <dir>/conf: a copy of the experiment configs plus, as ordinary model configs, up to
// --retrain-front subnets spread along the parameter front (model/front_<k>.yaml), --tau-sample
// subnets spread over inherited accuracy (model/tau_<k>.yaml) and the --reference subnet
// (model/reference.yaml), listed in <dir>/retrain.jsonl with what the search measured; the sweep
// machinery retrains them from scratch: blocklab sweep <experiment> --config-dir <dir>/conf ...
std::string write_retrain_configs(const SearchCommand& c, const std::string& dir, const std::vector<Candidate>& history,
                                  const std::optional<Candidate>& reference, const SupernetImpl& supernet) {
  const fs::path conf = fs::path(dir) / "conf";
  fs::remove_all(conf);
  fs::copy(c.config_dir, conf, fs::copy_options::recursive);
  std::string listing;
  const auto write = [&](const std::string& name, const std::string& role, const Candidate& k) {
    write_file_atomic((conf / "model" / (name + ".yaml")).string(),
                      "# " + subnet_key(k.subnet) + ": accuracy " + search_fixed(k.accuracy, 4) +
                          " with inherited weights, " + std::to_string(k.parameters) + " parameters, " +
                          search_fixed(k.mflops, 2) + " MFLOPs, " + search_fixed(k.latency_ms, 3) + " ms\n" +
                          dump_yaml(supernet.subnet_config(k.subnet)));
    listing += JsonObject().set("model", name).set("role", role).set_raw("candidate", candidate_json(k)).str() + "\n";
    return name;
  };
  std::string front_names, tau_names;
  const auto front = spread(pareto_front(history, [](const Candidate& k) { return static_cast<double>(k.parameters); }),
                            c.front_count);
  for (std::size_t i = 0; i < front.size(); ++i)
    front_names += (i ? "," : "") + write("front_" + std::to_string(i), "front", front[i]);
  if (reference) front_names += "," + write("reference", "reference", *reference);
  const auto sample = spread(by_accuracy(history), c.tau_sample);
  for (std::size_t i = 0; i < sample.size(); ++i)
    tau_names += (i ? "," : "") + write("tau_" + std::to_string(i), "tau", sample[i]);
  write_file_atomic(dir + "/retrain.jsonl", listing);
  return "retrain from scratch (a classify experiment, e.g. vit_fmnist):\n  blocklab sweep vit_fmnist --config-dir " +
         conf.string() + " model=" + front_names + " seed=range(0,3)\n  blocklab sweep vit_fmnist --config-dir " +
         conf.string() + " model=" + tau_names + "\n";
}

// The reference subnet (e.g. the default ViT's point of the space), measured without constraints.
std::optional<Candidate> measure_reference(const SearchCommand& c, const SearchSpace& space, CandidateJudge& judge,
                                           SearchLedger& ledger) {
  if (c.reference.empty()) return std::nullopt;
  const Subnet s = subnet_from_node(parse_yaml(c.reference, "--reference"), space);
  Candidate k = measure_candidate(s, SearchConstraints{}, judge, ledger);
  if (!k.evaluated) {  // rejected by the search's constraints earlier: its accuracy now
    k.accuracy = judge.accuracy(s);
    k.evaluated = true;
    ledger.add(k);
  }
  return k;
}

int run_search_command(const SearchCommand& c) {
  const Experiment e = load_experiment(c.config_dir, c.experiment, c.overrides, true);
  const std::string run_dir = supernet_run(c, e);
  TrainedRun run = load_trained_network(run_dir, "best");
  const Supernet supernet = std::dynamic_pointer_cast<SupernetImpl>(run.network);
  if (!supernet) throw ConfigError("the run in " + run_dir + " is not a model/supernet", Source{}, "", {});
  const std::string key = fs::path(run_dir).filename().string() + "\n" + search_settings_text(c.settings);
  const std::string dir = c.out + "/" + e.name + "/" + hex64(fnv1a64(key.data(), key.size())).substr(0, 12);
  fs::create_directories(dir);
  auto lock = FileLock::try_acquire(dir + "/search.lock", lock_owner_text() + "\n");
  if (!lock)
    throw ConfigError("search " + dir + " is in progress in another process (" + read_file(dir + "/search.lock") + ")",
                      Source{}, "", {"wait for it, or stop it and run blocklab search again to continue"});
  write_file_atomic(dir + "/search.json", JsonObject()
                                                  .set("supernet_run", run_dir)
                                                  .set("settings", search_settings_text(c.settings))
                                                  .set_raw("space", one_line_json(run.config.at("model")))
                                                  .str() +
                                              "\n");
  SearchLedger ledger(dir + "/ledger.jsonl", supernet->space());
  if (!c.quiet)
    std::cerr << "search: " << c.settings.algorithm << ", " << c.settings.candidates << " candidates on "
              << c.settings.split << " (" << ledger.size() << " in the ledger) -> " << dir << "\n";
  SupernetJudge judge(
      supernet, run.dataset, c.settings,
      model_args_for(run.info, ParamReader(run.config, task_registry().info(run.task).schema, "").get_node("head")));
  Progress progress("search", c.settings.candidates, c.quiet);
  const auto start = std::chrono::steady_clock::now();
  const auto history =
      run_search(supernet->space(), c.settings, judge, ledger, [&](std::int64_t done, const Candidate& best) {
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        progress.update(
            done, "best acc " + search_fixed(best.accuracy, 4) + " (" + std::to_string(best.parameters) + " params)",
            seconds > 0 ? static_cast<double>(done) / seconds : 0.0);
      });
  progress.finish();
  write_search_results(dir, history, *supernet);
  const auto reference = measure_reference(c, supernet->space(), judge, ledger);
  const std::string retrain = write_retrain_configs(c, dir, history, reference, *supernet);
  if (!c.quiet) std::cerr << "search: done; the fronts in " << dir << "/pareto.md\n" << retrain;
  std::cout << dir << "\n";
  return 0;
}

int search_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("algorithm", po::value<std::string>(),
                                                 "evolution (regularised evolution, default) or random")(
      "candidates", po::value<std::string>(), "subnets evaluated (default 100)")(
      "population", po::value<std::string>(), "evolution: population size (default 20)")(
      "sample", po::value<std::string>(), "evolution: tournament size (default 5)")(
      "mutation", po::value<std::string>(), "evolution: probability each choice is redrawn (default 0.3)")(
      "seed", po::value<std::string>(), "seed of the search (default 0)")(
      "max-params", po::value<std::string>(), "constraint: at most this many parameters (default none)")(
      "max-mflops", po::value<std::string>(), "constraint: at most this many million multiply-adds an image")(
      "max-latency-ms", po::value<std::string>(), "constraint: at most this latency, one image on this machine")(
      "split", po::value<std::string>(), "where accuracy is measured: val (default) or test")(
      "eval-examples", po::value<std::string>(), "the split's first n examples (default 0: all)")(
      "tau-sample", po::value<std::string>(), "subnets for the rank correlation, spread over accuracy (default 8)")(
      "retrain-front", po::value<std::string>(),
      "subnets of the parameter front to retrain, spread along it (default 5)")(
      "reference", po::value<std::string>(),
      "a subnet measured besides the search, e.g. the default ViT's point: \"{width: 64, layers: [...]}\"")(
      "out", po::value<std::string>(), "output root (default results/searches)")("quiet,q", "no progress line")(
      "config-dir", po::value<std::string>(), "experiment configs (default: experiments/conf or $BLOCKLAB_CONF)");
  const auto cl = parse_command_line("search", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "search", "<experiment> [overrides...]",
        "Searches a supernet's space: trains (or continues, or reuses) the experiment's supernet, then evaluates "
        "subnets with its weights under the constraints. A rerun continues a killed search.",
        opts,
        "Examples:\n  blocklab search fmnist_supernet --candidates 200 --max-params 60000\n"
        "  blocklab search fmnist_supernet --algorithm random --max-latency-ms 1.5 trainer.epochs=10\n");
    return 0;
  }
  if (cl.positional.empty()) throw UsageError("blocklab search: name a supernet experiment, e.g. fmnist_supernet");
  SearchCommand c;
  c.config_dir = directory_option(cl, "search", "config-dir", default_config_dir());
  c.experiment = checked_file_name("search", "the experiment name", cl.positional[0]);
  c.overrides.assign(cl.positional.begin() + 1, cl.positional.end());
  c.quiet = cl.vars.count("quiet") > 0;
  if (cl.vars.count("out")) c.out = cl.vars["out"].as<std::string>();
  SearchSettings& s = c.settings;
  s.algorithm = choice_option(cl, "search", "algorithm", {"evolution", "random"}, "evolution");
  s.candidates = integer_option(cl, "search", "candidates", 1, 1000000, 100);
  s.population = integer_option(cl, "search", "population", 1, 100000, 20);
  s.sample = integer_option(cl, "search", "sample", 1, 100000, 5);
  s.mutation = real_option(cl, "search", "mutation", 0.0, 1.0, 0.3);
  s.seed = static_cast<std::uint64_t>(integer_option(cl, "search", "seed", 0, INT64_MAX, 0));
  s.constraints.max_parameters = integer_option(cl, "search", "max-params", 0, INT64_MAX, 0);
  s.constraints.max_mflops = real_option(cl, "search", "max-mflops", 0.0, 1e12, 0.0);
  s.constraints.max_latency_ms = real_option(cl, "search", "max-latency-ms", 0.0, 1e9, 0.0);
  s.split = choice_option(cl, "search", "split", {"val", "test"}, "val");
  s.eval_examples = integer_option(cl, "search", "eval-examples", 0, INT64_MAX, 0);
  c.tau_sample = integer_option(cl, "search", "tau-sample", 2, 1000, 8);
  c.front_count = integer_option(cl, "search", "retrain-front", 2, 1000, 5);
  c.reference = string_option(cl, "reference");
  return run_search_command(c);
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"search", "architecture search over a trained supernet's space (random, regularised evolution)", search_command,
     45});

}  // namespace
}  // namespace blocklab
