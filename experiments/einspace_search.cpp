#include "experiments/einspace_search.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <optional>
#include <random>
#include <set>

#include "experiments/json_io.h"
#include "experiments/search.h"  // open_ledger, one_line_json, tournament_winner

namespace blocklab {

// ---- the ledger --------------------------------------------------------------------------------

std::string ein_candidate_json(const EinCandidate& c) {
  return JsonObject()
      .set("key", c.key)
      .set_raw("tree", one_line_json(ein_node(c.tree)))
      .set("parameters", c.parameters)
      .set("accuracy", c.accuracy)
      .set("run_dir", c.run_dir)
      .set("error", c.error)
      .str();
}

EinCandidate ein_candidate_from_json(const std::string& line) {
  const ConfigNode node = parse_json_object(line, "ledger line");
  EinCandidate c;
  c.tree = ein_from_node(node.at("tree"), "tree");
  c.key = ein_key(c.tree);
  if (c.key != node.at("key").text()) throw std::runtime_error("ledger line: its key is not its tree's");
  c.parameters = node.at("parameters").as_int();
  c.accuracy = node.at("accuracy").as_double();
  c.run_dir = node.at("run_dir").as_string();
  c.error = node.at("error").as_string();
  return c;
}

EinLedger::EinLedger(const std::string& path) {
  file_ = open_ledger(path, [this](const std::string& line) {
    EinCandidate c = ein_candidate_from_json(line);  // throws on a line a kill cut short
    by_key_[c.key] = std::move(c);
  });
}

const EinCandidate* EinLedger::find(const std::string& key) const {
  const auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : &it->second;
}

void EinLedger::add(const EinCandidate& c) {
  EinCandidate stored = c;
  stored.parent.clear();  // how a tree arose belongs to the trajectory, not to the tree
  file_.append_line(ein_candidate_json(stored));
  by_key_[stored.key] = std::move(stored);
}

// ---- the search --------------------------------------------------------------------------------

namespace {

constexpr int kEinsearchMutationTries = 10;  // mutations of one parent before a random draw
constexpr int kEinsearchDrawTries = 100;     // random draws before giving up

class EinSearcher {
 public:
  EinSearcher(const ModelInputs& inputs, const EinSearchSettings& settings, const EinFitness& fitness,
              EinLedger& ledger, const EinSearchProgress& progress)
      : inputs_(inputs),
        input_(ein_input_shape(inputs)),
        settings_(settings),
        limits_(settings.limits),
        fitness_(fitness),
        ledger_(ledger),
        progress_(progress),
        rng_(settings.seed) {
    // The constraint is the sampler's bound, so that it draws within it rather than redraws.
    if (settings.max_parameters > 0) limits_.max_parameters = settings.max_parameters;
  }

  // Regularised evolution (Real et al. 2019, Algorithm 1).
  std::vector<EinCandidate> run() {
    std::deque<EinCandidate> population;
    const std::int64_t size = std::min(settings_.population, settings_.candidates);
    for (const EinNode& seed : settings_.seeds)
      if (count() < size && fits(seed)) population.push_back(evaluate(seed, ""));
    while (count() < size) population.push_back(evaluate(draw(), ""));
    while (count() < settings_.candidates) {
      const EinCandidate& parent =
          tournament_winner(population, settings_.sample, rng_, [](const EinCandidate& c) { return c.accuracy; });
      EinCandidate child = mutate(parent);
      population.push_back(std::move(child));
      population.pop_front();  // the oldest dies, however fit (regularised evolution)
    }
    return history_;
  }

 private:
  std::int64_t count() const { return static_cast<std::int64_t>(history_.size()); }

  bool fits(const EinNode& tree) const {
    return ein_output_shape(tree, input_).ok() && ein_parameter_count(tree, input_) <= limits_.max_parameters;
  }

  EinNode draw() {
    for (int tries = 0; tries < kEinsearchDrawTries; ++tries) {
      EinNode tree;
      try {
        tree = random_architecture(inputs_, rng_, limits_);
      } catch (const std::runtime_error& e) {
        throw std::runtime_error(std::string(e.what()) + " (at most " + std::to_string(limits_.max_parameters) +
                                 " parameters); raise --max-params");
      }
      if (fits(tree)) return tree;
    }
    throw std::runtime_error("einspace search: no tree within " + std::to_string(limits_.max_parameters) +
                             " parameters in " + std::to_string(kEinsearchDrawTries) + " draws; raise --max-params");
  }

  // The parent's child: a mutation that changed the tree and fits, else a random tree.
  EinCandidate mutate(const EinCandidate& parent) {
    for (int tries = 0; tries < kEinsearchMutationTries; ++tries) {
      EinNode child = mutate_architecture(parent.tree, inputs_, rng_, limits_);
      if (child != parent.tree && fits(child)) return evaluate(child, parent.key);
    }
    return evaluate(draw(), "");
  }

  // The ledger's record of `tree`, or its evaluation (recorded).
  EinCandidate evaluate(const EinNode& tree, const std::string& parent) {
    const std::string key = ein_key(tree);
    EinCandidate c;
    const EinCandidate* known = ledger_.find(key);
    if (known) {
      c = *known;
    } else {
      c = measure(tree, key);
      ledger_.add(c);
    }
    c.parent = parent;
    history_.push_back(c);
    if (!best_ || c.accuracy > best_->accuracy) best_ = c;
    if (progress_) progress_(count(), c, known == nullptr, *best_);
    return c;
  }

  EinCandidate measure(const EinNode& tree, const std::string& key) {
    EinCandidate c;
    c.tree = tree;
    c.key = key;
    c.parameters = ein_parameter_count(tree, input_);
    try {
      const EinEvaluation e = fitness_(tree);
      c.run_dir = e.run_dir;
      c.error = e.error;
      if (c.error.empty() && !std::isfinite(e.accuracy)) c.error = "the fitness is not finite";
      if (c.error.empty()) c.accuracy = e.accuracy;
    } catch (const EinSearchStopped&) {
      throw;
    } catch (const std::exception& e) {
      c.error = e.what();
    }
    if (!c.error.empty()) c.accuracy = 0;  // a failed candidate: fitness 0, the search goes on
    return c;
  }

  const ModelInputs& inputs_;
  const EinShape input_;
  const EinSearchSettings& settings_;
  EinspaceLimits limits_;
  const EinFitness& fitness_;
  EinLedger& ledger_;
  const EinSearchProgress& progress_;
  std::mt19937_64 rng_;
  std::vector<EinCandidate> history_;
  std::optional<EinCandidate> best_;
};

}  // namespace

std::vector<EinCandidate> run_einspace_search(const ModelInputs& inputs, const EinSearchSettings& settings,
                                              const EinFitness& fitness, EinLedger& ledger,
                                              const EinSearchProgress& progress) {
  if (settings.candidates < 1 || settings.population < 1 || settings.sample < 1)
    throw std::invalid_argument("einspace search: candidates, population and sample must be at least 1");
  return EinSearcher(inputs, settings, fitness, ledger, progress).run();
}

std::vector<EinCandidate> ein_ranked(const std::vector<EinCandidate>& history) {
  std::vector<EinCandidate> unique;
  std::set<std::string> seen;
  for (const auto& c : history)
    if (seen.insert(c.key).second) unique.push_back(c);
  std::stable_sort(unique.begin(), unique.end(),
                   [](const EinCandidate& a, const EinCandidate& b) { return a.accuracy > b.accuracy; });
  return unique;
}

}  // namespace blocklab
