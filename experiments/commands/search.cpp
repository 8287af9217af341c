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
//
// When the experiment's model is model/einspace (a task that trains a classifier, e.g. classify),
// the command runs einspace's search instead (experiments/einspace_search.h): regularised
// evolution over architecture trees, each candidate an ordinary run of the experiment with
// model.architecture set to the tree (in results/runs, reused when it exists, continued when it
// was interrupted), its fitness the run's best validation accuracy; the trainer settings are the
// experiment's, shortened by overrides (trainer.epochs=1 dataset.limit_train=5000). It writes,
// under <out>/<experiment>/<id>/ (id: the config, the code version and the search settings
// except --candidates, so a larger --candidates continues a finished search):
//   search.json    the settings and the experiment's config
//   ledger.jsonl   every evaluated tree (a rerun of a killed search continues from it)
//   candidates.csv every evaluation, in order: key, parameters, val accuracy, run directory
//   best.yaml      the best tree as a model config
//   conf/          a copy of the experiment configs plus model/best_<k>.yaml, the --top best:
//                  `blocklab run einspace_fmnist --config-dir <dir>/conf model=best_0`
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "experiments/einspace_search.h"
#include "experiments/experiment.h"
#include "experiments/json_io.h"
#include "experiments/model_builder.h"
#include "experiments/progress.h"
#include "experiments/run_setup.h"
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
  // einspace's search (model/einspace experiments)
  bool seed_architecture = false;          // the experiment's tree joins the initial population
  std::int64_t top = 3;                    // best trees written as model configs
  std::vector<std::string> supernet_only;  // options given that only the supernet search reads
  std::vector<std::string> einspace_only;  // options given that only einspace's search reads
};

std::string search_settings_text(const SearchSettings& s) {
  std::ostringstream t;
  t << "algorithm: " << s.algorithm << "\ncandidates: " << s.candidates << "\npopulation: " << s.population
    << "\nsample: " << s.sample << "\nmutation: " << s.mutation << "\nseed: " << s.seed << "\nsplit: " << s.split
    << "\neval_examples: " << s.eval_examples << "\nlatency_repeats: " << s.latency_repeats
    << "\nmax_parameters: " << s.constraints.max_parameters << "\nmax_mflops: " << s.constraints.max_mflops
    << "\nmax_latency_ms: " << s.constraints.max_latency_ms << "\n";
  if (s.score != "accuracy") t << "score: " << s.score << "\n";  // (absent: the ids of earlier searches hold)
  return t.str();
}

// A run of `config` in this process: trained, or continued from its checkpoint, or found
// finished (the run directory `blocklab run` uses). Its exit status and run directory ("" when
// the run failed before opening one); what the task throws passes through.
struct InProcessRun {
  int status = 0;
  std::string dir;
};
InProcessRun run_in_process(const Experiment& e, const ConfigNode& config, bool quiet) {
  const fs::path record = fs::temp_directory_path() / ("blocklab-search-" + std::to_string(::getpid()) + ".dir");
  fs::remove(record);
  RunRequest request;
  request.experiment = e.name;
  request.config = config;
  request.overrides = e.overrides;
  request.resume_if_any = true;
  request.quiet = quiet;
  request.record_dir_file = record.string();
  InProcessRun r;
  try {
    r.status = task_registry().create(config.at("task"), request)->run();
  } catch (...) {
    fs::remove(record);
    throw;
  }
  r.dir = file_exists(record.string()) ? read_file(record.string()) : "";
  fs::remove(record);
  while (!r.dir.empty() && r.dir.back() == '\n') r.dir.pop_back();
  return r;
}

// Trains the supernet, continues it, or finds it finished; its run directory.
std::string supernet_run(const SearchCommand& c, const Experiment& e) {
  if (e.config.at("task").text() != "supernet")
    throw UsageError("blocklab search: " + e.name + " trains task '" + e.config.at("task").text() +
                     "', not a supernet\n  search a supernet experiment (task: supernet), e.g. blocklab search "
                     "fmnist_supernet, or an einspace experiment (model: einspace_small), e.g. blocklab search "
                     "einspace_fmnist");
  const InProcessRun run = run_in_process(e, e.config, c.quiet);
  if (run.status != 0 || run.dir.empty())
    throw ConfigError("the supernet's training did not finish (exit " + std::to_string(run.status) + ")", Source{}, "",
                      {"see its log.txt; rerun blocklab search to continue it"});
  return run.dir;
}

// The progress line of both searches: done of the total, the best so far, the measuring rate.
void search_progress(Progress& progress, std::chrono::steady_clock::time_point start, std::int64_t done,
                     std::int64_t measured, const std::string& best) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.update(done, best, seconds > 0 ? static_cast<double>(measured) / seconds : 0.0);
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

void write_search_results(const std::string& dir, const std::vector<Candidate>& history, const SupernetImpl& supernet,
                          const std::string& score) {
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
                        (score == "accuracy" ? " candidates (accuracy with inherited weights)"
                                             : " candidates (the accuracy column holds minus the relation-distillation "
                                               "loss against the teacher, AutoDistil's proxy)") +
                        "\n\n## Accuracy vs parameters\n\n" + search_front_table(by_params, "#") +
                        "\n## Accuracy vs MFLOPs\n\n" + search_front_table(by_flops, "#") +
                        "\n## Accuracy vs latency\n\n" + search_front_table(by_latency, "#"));
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

// ---- einspace's search (model/einspace experiments) --------------------------------------------

std::string einsearch_join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// The settings that shape the trajectory (not --candidates: a longer search of the same settings
// repeats a shorter one's trajectory, so it continues its ledger).
std::string einsearch_settings_text(const SearchCommand& c) {
  const SearchSettings& s = c.settings;
  std::ostringstream t;
  t << "einspace " << s.algorithm;
  if (s.algorithm == "evolution") t << "\npopulation: " << s.population << "\nsample: " << s.sample;
  t << "\nseed: " << s.seed << "\nmax_parameters: " << s.constraints.max_parameters
    << "\nseed_architecture: " << (c.seed_architecture ? "true" : "false") << "\n";
  return t.str();
}

// The images the trees map. The dataset is loaded once here, so that one that cannot be read
// stops the search before its first candidate instead of failing every candidate.
ModelInputs einsearch_inputs(const Experiment& e) {
  const ConfigNode* seed = e.config.find("seed");
  const auto dataset = dataset_registry().create(
      e.config.at("dataset"), DatasetArgs{seed && seed->is_int() ? static_cast<std::uint64_t>(seed->as_int()) : 0});
  const DatasetInfo info = dataset->info();
  if (info.channels < 1 || info.height < 1 || info.width < 1)
    throw ConfigError("einspace trees map images [B, C, H, W], but the dataset of " + e.name + " has no image size",
                      e.config.at("dataset").source(), "dataset", {"use an image dataset (e.g. fashion_mnist)"});
  std::int64_t val = 0;
  try {
    val = dataset->split("val").size();
  } catch (const ConfigError&) {
  }
  if (val == 0)
    throw ConfigError(
        "einspace's search ranks trees by validation accuracy, but the dataset of " + e.name + " has no val split",
        e.config.at("dataset").source(), "dataset", {"hold some training images out: dataset.val_size=5000"});
  return model_args_for(info, ConfigNode::string("linear")).inputs;
}

// A tree's fitness: the experiment run with model.architecture set to the tree (an ordinary run:
// found when it finished before, continued when it was interrupted); its best validation
// accuracy, or the error of a run that failed or diverged.
EinEvaluation einsearch_train(const Experiment& e, const EinNode& tree) {
  if (const int sig = stop_signal()) throw EinSearchStopped("signal " + std::to_string(sig));
  ConfigNode config = e.config;
  config.find("model")->set("architecture", ein_node(tree));
  const InProcessRun run = run_in_process(e, config, /*quiet=*/true);
  if (run.status == kExitRequeue || stop_signal()) throw EinSearchStopped("the run " + run.dir + " checkpointed");
  if (run.dir.empty())
    throw std::runtime_error("the run failed before opening its directory (exit " + std::to_string(run.status) + ")");
  const std::string path = run.dir + "/summary.json";
  if (!file_exists(path)) return {0, run.dir, "the run left no summary.json (exit " + std::to_string(run.status) + ")"};
  const ConfigNode summary = parse_json_object(read_file(path), path);
  const ConfigNode* status = summary.find("status");
  const std::string state = status && status->is_scalar() ? status->text() : "";
  if (run.status != 0 || state != "finished") {
    const ConfigNode* error = summary.find("error");
    return {0, run.dir, error && error->is_scalar() ? error->text() : "the run " + (state.empty() ? "failed" : state)};
  }
  const ConfigNode* final_line = summary.find("final");
  for (const ConfigNode* acc : {summary.find("best/val_acc"), final_line ? final_line->find("val/acc") : nullptr})
    if (acc && acc->is_number()) return {acc->as_double(), run.dir, ""};
  return {0, run.dir, "the run measured no val accuracy"};
}

// A CSV field: quoted when it holds a comma or a quote (tree keys do); newlines as spaces.
std::string einsearch_csv(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  if (text.find_first_of(",\"") == std::string::npos) return text;
  std::string quoted = "\"";
  for (const char ch : text) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return quoted + "\"";
}

// The experiment's model config with `k`'s tree, commented with what the search measured.
std::string einsearch_model_yaml(const Experiment& e, const EinCandidate& k) {
  ConfigNode model = e.config.at("model");
  model.set("architecture", ein_node(k.tree));
  return "# " + k.key + "\n# val acc " + search_fixed(k.accuracy, 4) + " in the search (" + e.name + "), " +
         std::to_string(k.parameters) + " parameters in the tree; run " + k.run_dir + "\n" + dump_yaml(model);
}

// candidates.csv, best.yaml and conf/ (the experiment configs plus model/best_<k>.yaml).
void einsearch_write_results(const SearchCommand& c, const Experiment& e, const std::string& dir,
                             const std::vector<EinCandidate>& history, const std::vector<EinCandidate>& ranked) {
  std::string csv = "index,key,parameters,val_acc,run_dir,parent,error\n";
  for (std::size_t i = 0; i < history.size(); ++i) {
    const auto& k = history[i];
    csv += std::to_string(i) + "," + einsearch_csv(k.key) + "," + std::to_string(k.parameters) + "," +
           search_fixed(k.accuracy, 6) + "," + einsearch_csv(k.run_dir) + "," + einsearch_csv(k.parent) + "," +
           einsearch_csv(k.error) + "\n";
  }
  write_file_atomic(dir + "/candidates.csv", csv);
  if (ranked.empty()) return;
  write_file_atomic(dir + "/best.yaml", einsearch_model_yaml(e, ranked[0]));
  const fs::path conf = fs::path(dir) / "conf";
  fs::remove_all(conf);
  fs::copy(c.config_dir, conf, fs::copy_options::recursive);
  for (std::size_t i = 0; i < ranked.size() && static_cast<std::int64_t>(i) < c.top; ++i)
    write_file_atomic((conf / "model" / ("best_" + std::to_string(i) + ".yaml")).string(),
                      einsearch_model_yaml(e, ranked[i]));
}

// The short summary on stdout; its last line is the search directory.
std::string einsearch_summary(const SearchCommand& c, const Experiment& e, const std::string& dir,
                              const std::vector<EinCandidate>& history, const std::vector<EinCandidate>& ranked) {
  std::int64_t failed = 0;
  for (const auto& k : ranked) failed += k.error.empty() ? 0 : 1;
  std::ostringstream t;
  t << "einspace search of " << e.name << ": " << history.size() << " evaluations of " << ranked.size() << " trees ("
    << failed << " failed)\n";
  for (std::size_t i = 0; i < ranked.size() && static_cast<std::int64_t>(i) < c.top; ++i) {
    const auto& k = ranked[i];
    const std::string key = k.key.size() > 100 ? k.key.substr(0, 97) + "..." : k.key;
    t << "  best_" << i << ": val acc " << search_fixed(k.accuracy, 4) << ", " << k.parameters << " parameters, " << key
      << "\n    " << k.run_dir << "\n";
  }
  t << "retrain: blocklab run " << e.name << " --config-dir " << dir << "/conf model=best_0\n" << dir << "\n";
  return t.str();
}

// <out>/<experiment>/<id>, the id a hash of what identifies the search; created.
std::string search_directory(const SearchCommand& c, const Experiment& e, const std::string& key) {
  const std::string dir = c.out + "/" + e.name + "/" + hex64(fnv1a64(key.data(), key.size())).substr(0, 12);
  fs::create_directories(dir);
  return dir;
}

// One search in a directory at a time: another process searching there is an error.
FileLock lock_search_directory(const std::string& dir) {
  auto lock = FileLock::try_acquire(dir + "/search.lock", lock_owner_text() + "\n");
  if (!lock)
    throw ConfigError("search " + dir + " is in progress in another process (" + read_file(dir + "/search.lock") + ")",
                      Source{}, "", {"wait for it, or stop it and run blocklab search again to continue"});
  return std::move(*lock);
}

int run_einspace_search_command(const SearchCommand& c, const Experiment& e) {
  if (!c.supernet_only.empty())
    throw UsageError("blocklab search: " + einsearch_join(c.supernet_only) + " only apply to a supernet search; " +
                     e.name + " searches einspace (model/einspace)");
  const ModelInputs inputs = einsearch_inputs(e);
  EinSearchSettings s;
  s.candidates = c.settings.candidates;
  s.population = c.settings.algorithm == "random" ? c.settings.candidates : c.settings.population;  // no cycles
  s.sample = c.settings.sample;
  s.seed = c.settings.seed;
  s.max_parameters = c.settings.constraints.max_parameters;
  if (c.seed_architecture) {
    const ConfigNode* arch = e.config.at("model").find("architecture");
    s.seeds.push_back(arch ? ein_from_node(*arch, "model.architecture") : ein_default_architecture());
    const EinShapeResult shape = ein_output_shape(s.seeds[0], ein_input_shape(inputs));
    const std::int64_t limit = s.max_parameters > 0 ? s.max_parameters : s.limits.max_parameters;
    if (!shape.ok() || ein_parameter_count(s.seeds[0], ein_input_shape(inputs)) > limit)
      std::cerr << "search: the experiment's tree "
                << (shape.ok() ? "has more than " + std::to_string(limit) + " parameters"
                               : "does not apply to the images")
                << ": it does not join the population\n";
  }
  ConfigNode identity = e.config;
  identity.erase("output_dir");  // as a run's identity: where runs land does not change them
  const std::string key =
      "einspace search\n" + dump_yaml(identity) + "code: " + code_version().text() + "\n" + einsearch_settings_text(c);
  const std::string dir = search_directory(c, e, key);
  const FileLock lock = lock_search_directory(dir);
  write_file_atomic(dir + "/search.json", JsonObject()
                                                  .set("experiment", e.name)
                                                  .set("settings", einsearch_settings_text(c))
                                                  .set("code", code_version().text())
                                                  .set_raw("config", one_line_json(e.config))
                                                  .str() +
                                              "\n");
  EinLedger ledger(dir + "/ledger.jsonl");
  install_stop_handlers();  // a stop between runs ends the search cleanly; the next run sees it too
  if (!c.quiet)
    std::cerr << "search: einspace " << c.settings.algorithm << ", " << s.candidates << " candidates (" << ledger.size()
              << " trees in the ledger), each a run of " << e.name << " -> " << dir << "\n";
  Progress progress("search", s.candidates, c.quiet);
  const auto start = std::chrono::steady_clock::now();
  std::int64_t trained = 0;
  std::vector<EinCandidate> history;
  try {
    history = run_einspace_search(
        inputs, s, [&](const EinNode& tree) { return einsearch_train(e, tree); }, ledger,
        [&](std::int64_t done, const EinCandidate& latest, bool fresh, const EinCandidate& best) {
          trained += fresh ? 1 : 0;
          search_progress(progress, start, done, trained,
                          "best val acc " + search_fixed(best.accuracy, 4) + " (" + std::to_string(best.parameters) +
                              " params)" + (latest.error.empty() ? "" : ", last failed"));
        });
  } catch (const EinSearchStopped& stop) {
    progress.finish();
    std::cerr << "search: stopped (" << stop.what() << "); run the same command again to continue\n";
    return kExitRequeue;
  }
  progress.finish();
  const auto ranked = ein_ranked(history);
  einsearch_write_results(c, e, dir, history, ranked);
  std::cout << einsearch_summary(c, e, dir, history, ranked);
  return 0;
}

// --score relation_kd: the teacher of the supernet's relation_kd training scores the candidates.
void set_relation_teacher(SupernetJudge& judge, const TrainedRun& run) {
  const ConfigNode* trainer = run.config.find("trainer");
  const ConfigNode* teacher = trainer && trainer->is_map() ? trainer->find("teacher") : nullptr;
  const ConfigNode* heads = trainer && trainer->is_map() ? trainer->find("relation_heads") : nullptr;
  if (!teacher || teacher->text().empty())
    throw UsageError(
        "blocklab search: --score relation_kd needs a supernet trained with trainer.objective=relation_kd "
        "and a trainer.teacher");
  const Supernet t = std::dynamic_pointer_cast<SupernetImpl>(load_trained_network(teacher->text(), "best").network);
  if (!t) throw ConfigError("the teacher " + teacher->text() + " is not a model/supernet run", Source{}, "", {});
  judge.set_teacher(t, heads ? heads->as_int() : 4);
}

int run_search_command(const SearchCommand& c) {
  const Experiment e = load_experiment(c.config_dir, c.experiment, c.overrides, true);
  if (const ConfigNode& model = e.config.at("model");
      model.is_map() && model.find("type") && model.find("type")->text() == "model/einspace")
    return run_einspace_search_command(c, e);
  if (!c.einspace_only.empty())
    throw UsageError("blocklab search: " + einsearch_join(c.einspace_only) +
                     " only apply to an einspace search (model/einspace); " + e.name + " searches a supernet");
  const std::string run_dir = supernet_run(c, e);
  TrainedRun run = load_trained_network(run_dir, "best");
  const Supernet supernet = std::dynamic_pointer_cast<SupernetImpl>(run.network);
  if (!supernet) throw ConfigError("the run in " + run_dir + " is not a model/supernet", Source{}, "", {});
  const std::string key = fs::path(run_dir).filename().string() + "\n" + search_settings_text(c.settings);
  const std::string dir = search_directory(c, e, key);
  const FileLock lock = lock_search_directory(dir);
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
  if (c.settings.score == "relation_kd") set_relation_teacher(judge, run);
  Progress progress("search", c.settings.candidates, c.quiet);
  const auto start = std::chrono::steady_clock::now();
  const auto history =
      run_search(supernet->space(), c.settings, judge, ledger, [&](std::int64_t done, const Candidate& best) {
        search_progress(progress, start, done, done,
                        (c.settings.score == "accuracy" ? "best acc " : "best score ") +
                            search_fixed(best.accuracy, 4) + " (" + std::to_string(best.parameters) + " params)");
      });
  progress.finish();
  write_search_results(dir, history, *supernet, c.settings.score);
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
      "score", po::value<std::string>(),
      "accuracy (default) or relation_kd: minus the relation-distillation loss against the supernet's teacher "
      "(AutoDistil; for supernets trained with trainer.objective=relation_kd)")(
      "eval-examples", po::value<std::string>(), "the split's first n examples (default 0: all)")(
      "tau-sample", po::value<std::string>(), "subnets for the rank correlation, spread over accuracy (default 8)")(
      "retrain-front", po::value<std::string>(),
      "subnets of the parameter front to retrain, spread along it (default 5)")(
      "reference", po::value<std::string>(),
      "a subnet measured besides the search, e.g. the default ViT's point: \"{width: 64, layers: [...]}\"")(
      "seed-architecture", "einspace: the experiment's own tree joins the initial population")(
      "top", po::value<std::string>(), "einspace: best trees written as conf/model/best_<k>.yaml (default 3)")(
      "out", po::value<std::string>(), "output root (default results/searches)")("quiet,q", "no progress line")(
      "config-dir", po::value<std::string>(), "experiment configs (default: experiments/conf or $BLOCKLAB_CONF)");
  const auto cl = parse_command_line("search", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "search", "<experiment> [overrides...]",
        "Searches a supernet's space: trains (or continues, or reuses) the experiment's supernet, then evaluates "
        "subnets with its weights under the constraints. For a model/einspace experiment: regularised evolution "
        "over einspace's trees, each candidate a short run of the experiment from scratch (shorten it with "
        "overrides); --max-params bounds the tree's parameters. A rerun continues a killed search.",
        opts,
        "Examples:\n  blocklab search fmnist_supernet --candidates 200 --max-params 60000\n"
        "  blocklab search fmnist_supernet --algorithm random --max-latency-ms 1.5 trainer.epochs=10\n"
        "  blocklab search einspace_fmnist --candidates 24 --population 8 --sample 3 trainer.epochs=1 "
        "dataset.limit_train=4000 dataset.limit_test=1000\n");
    return 0;
  }
  if (cl.positional.empty())
    throw UsageError(
        "blocklab search: name a supernet experiment, e.g. fmnist_supernet, or an einspace one, e.g. einspace_fmnist");
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
  s.score = choice_option(cl, "search", "score", {"accuracy", "relation_kd"}, "accuracy");
  s.eval_examples = integer_option(cl, "search", "eval-examples", 0, INT64_MAX, 0);
  c.tau_sample = integer_option(cl, "search", "tau-sample", 2, 1000, 8);
  c.front_count = integer_option(cl, "search", "retrain-front", 2, 1000, 5);
  c.reference = string_option(cl, "reference");
  c.seed_architecture = cl.vars.count("seed-architecture") > 0;
  c.top = integer_option(cl, "search", "top", 1, 1000, 3);
  for (const char* name : {"mutation", "max-mflops", "max-latency-ms", "split", "score", "eval-examples", "tau-sample",
                           "retrain-front", "reference"})
    if (cl.vars.count(name)) c.supernet_only.push_back(std::string("--") + name);
  for (const char* name : {"seed-architecture", "top"})
    if (cl.vars.count(name)) c.einspace_only.push_back(std::string("--") + name);
  return run_search_command(c);
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"search", "architecture search: a trained supernet's space, or einspace (random, regularised evolution)",
     search_command, 45});

}  // namespace
}  // namespace blocklab
