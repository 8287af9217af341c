// einspace's search (catalog 003/004, D37): regularised evolution over the architecture trees of
// blocks/nas/einspace.h with no weight sharing; a candidate's fitness is its validation accuracy
// after a short training from scratch.
//
// Paper: "einspace: Searching for Neural Architectures from Fundamental Operations" (Ericsson et
// al., NeurIPS 2024, arXiv:2405.20838), §4: regularised evolution (Real et al. 2019,
// "Regularized Evolution for Image Classifier Architecture Search", arXiv:1802.01548,
// Algorithm 1) with the grammar's own sampling and mutation:
//   population  the `seeds` (those within the parameter limit, in order), then trees drawn by
//               random_architecture, up to `population` members (or `candidates`, if fewer);
//   cycle       a tournament of `sample` members drawn with replacement picks the fittest as the
//               parent (the first drawn of equals), its child (mutate_architecture: one module
//               re-drawn with the same input and output shape) joins, the oldest member leaves;
//   until       `candidates` evaluations in all (a tree met again counts again, measured once).
// Constraint: trees with more than `max_parameters` (ein_parameter_count, the tree without the
// network's final LayerNorm and head; it replaces limits.max_parameters, the sampler's bound, so
// that draws and mutations stay within it) are never evaluated: the draw or the mutation is
// redone (a mutation that gives back its parent 10 times in a row is replaced by a random draw,
// as the supernet search does).
// A fitness that throws (a run that fails or diverges) gives fitness 0: the candidate is recorded
// with its error and takes part in tournaments with that fitness. A fitness that throws
// EinSearchStopped (a stop signal) ends the search without recording anything.
//
// Resumable as the supernet search (experiments/search.h): every evaluated tree is a line of the
// ledger (ledger.jsonl, keyed by ein_key); the search replays from the start with the ledger as
// its memory (a tree in the ledger is not evaluated again), and since the generator's draws do
// not depend on the evaluations' cost, a killed search continues on the same trajectory and the
// same seed gives the same trajectory. Fitness values round-trip exactly through the ledger.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "blocks/nas/einspace.h"
#include "experiments/run_files.h"

namespace blocklab {

struct EinSearchSettings {
  std::int64_t candidates = 100;    // evaluations in all
  std::int64_t population = 20;     // members of the population
  std::int64_t sample = 5;          // tournament size
  std::uint64_t seed = 0;           // the search's generator
  std::int64_t max_parameters = 0;  // trees with more are never evaluated; 0: limits.max_parameters
  std::vector<EinNode> seeds;       // first members of the initial population (e.g. the experiment's tree)
  EinspaceLimits limits;            // sampling and mutation limits
};

// What the search knows of a tree.
struct EinCandidate {
  EinNode tree;
  std::string key;              // ein_key(tree)
  std::int64_t parameters = 0;  // ein_parameter_count on the images' shape
  double accuracy = 0;          // the fitness (validation accuracy); 0 when the evaluation failed
  std::string run_dir;          // where the evaluation's run lives ("" when none)
  std::string error;            // why the evaluation failed ("" when it did not)
  std::string parent;           // the parent's key; "" for a drawn tree (history only, not in the ledger)
};

// One evaluation: the fitness and where it was measured. A failed evaluation either throws or
// returns its error (then with the run directory it left; the accuracy is taken as 0).
struct EinEvaluation {
  double accuracy = 0;
  std::string run_dir;
  std::string error;
};
using EinFitness = std::function<EinEvaluation(const EinNode& tree)>;

// Thrown by a fitness to end the search at once (nothing recorded): a stop signal.
struct EinSearchStopped : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The ledger of evaluated trees, one JSON line each, written through.
class EinLedger {
 public:
  // Opens (creating) `path` and reads what an earlier run of the same search wrote; a last line
  // cut short by a kill is dropped (open_ledger).
  explicit EinLedger(const std::string& path);
  const EinCandidate* find(const std::string& key) const;
  void add(const EinCandidate& c);
  std::int64_t size() const { return static_cast<std::int64_t>(by_key_.size()); }

 private:
  std::map<std::string, EinCandidate> by_key_;
  AppendFile file_;
};

// A candidate as its ledger line (without parent), and back; throws on a malformed line.
std::string ein_candidate_json(const EinCandidate& c);
EinCandidate ein_candidate_from_json(const std::string& line);

// Called after each evaluation: how many of `candidates` are done, the latest candidate, whether
// it was evaluated now (false: from the ledger), and the best so far.
using EinSearchProgress =
    std::function<void(std::int64_t done, const EinCandidate& latest, bool fresh, const EinCandidate& best)>;

// Runs the search for images of `inputs`; returns the candidates in evaluation order. Throws
// std::runtime_error when no tree within the limits is found.
std::vector<EinCandidate> run_einspace_search(const ModelInputs& inputs, const EinSearchSettings& settings,
                                              const EinFitness& fitness, EinLedger& ledger,
                                              const EinSearchProgress& progress = {});

// The candidates of `history`, each tree once, by decreasing fitness (ties: the first evaluated).
std::vector<EinCandidate> ein_ranked(const std::vector<EinCandidate>& history);

}  // namespace blocklab
