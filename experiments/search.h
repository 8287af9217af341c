// Architecture search over a trained supernet's space (blocks/nas/): candidates are evaluated with
// the supernet's inherited weights, under constraints on parameters, FLOPs and latency.
//
//   random       `candidates` subnets drawn uniformly among those that meet the constraints
//   evolution    regularised evolution (Real et al. 2019, "Regularized Evolution for Image
//                Classifier Architecture Search", arXiv:1802.01548, Algorithm 1): a population of
//                `population` random subnets; each cycle a tournament of `sample` random members
//                picks the most accurate as the parent, its mutation (each choice redrawn with
//                probability `mutation`, until the child meets the constraints) joins, the oldest
//                member leaves; `candidates` evaluations in all.
//
// Every measured candidate (also one a constraint rejected) is a line of the ledger
// (ledger.jsonl). A search replays from the start with the ledger as its memory: what is in the
// ledger is not measured again, so a killed search continues where it stopped and, since the
// generator's draws and the evaluations repeat, follows the same trajectory; latencies, which are
// timings, repeat through the ledger. The same seed and settings give the same trajectory (with a
// latency constraint: given the same latencies).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "blocks/nas/supernet.h"
#include "datasets/dataset.h"
#include "experiments/run_files.h"

namespace blocklab {

struct SearchConstraints {
  std::int64_t max_parameters = 0;  // 0: no limit
  double max_mflops = 0;            // millions of multiply-adds per image; 0: no limit
  double max_latency_ms = 0;        // one image, this machine; 0: no limit
};

struct SearchSettings {
  std::string algorithm = "evolution";  // evolution | random
  std::int64_t candidates = 100;        // subnets evaluated for accuracy
  std::int64_t population = 20;
  std::int64_t sample = 5;
  double mutation = 0.3;
  std::uint64_t seed = 0;
  std::string split = "val";       // where accuracy is measured
  std::int64_t eval_examples = 0;  // the split's first n examples; 0: all
  std::int64_t latency_repeats = 10;
  SearchConstraints constraints;
  // What "accuracy" holds: accuracy (default), or relation_kd: minus the mean self-attention
  // relation-distillation loss against the supernet run's teacher (AutoDistil's task-agnostic
  // search, blocks/nas/relation_kd.h; no labels used).
  std::string score = "accuracy";
};

// What the search knows of a subnet. Accuracy is NaN until evaluated (a rejected candidate is
// never evaluated).
struct Candidate {
  Subnet subnet;
  std::int64_t parameters = 0;
  double mflops = 0;
  double latency_ms = 0;
  double accuracy = 0;
  bool evaluated = false;
  bool feasible = false;  // meets the constraints
};

// Measures candidates: the supernet's path for accuracy, the extracted model for latency.
class CandidateJudge {
 public:
  virtual ~CandidateJudge() = default;
  virtual std::int64_t parameters(const Subnet& s) = 0;
  virtual double mflops(const Subnet& s) = 0;
  virtual double latency_ms(const Subnet& s) = 0;
  virtual double accuracy(const Subnet& s) = 0;
};

// The judge of a trained supernet on a dataset split.
class SupernetJudge : public CandidateJudge {
 public:
  SupernetJudge(Supernet supernet, std::shared_ptr<Dataset> dataset, const SearchSettings& settings,
                ModelArgs model_args);
  std::int64_t parameters(const Subnet& s) override { return supernet_->subnet_parameters(s); }
  double mflops(const Subnet& s) override { return supernet_->subnet_macs(s) / 1e6; }
  double latency_ms(const Subnet& s) override;
  double accuracy(const Subnet& s) override;
  // score relation_kd: the teacher whose relations a subnet is scored against.
  void set_teacher(Supernet teacher, std::int64_t relation_heads);

 private:
  double relation_score(const Subnet& s);

  Supernet supernet_, teacher_;
  std::int64_t relation_heads_ = 4;
  std::shared_ptr<Dataset> dataset_;
  SearchSettings settings_;
  ModelArgs model_args_;
  torch::Tensor inputs_, targets_;  // the evaluation examples
};

// The ledger: every measured candidate, one JSON line each, in the order they were measured.
class SearchLedger {
 public:
  // Opens (creating) `path`; reads what an earlier run of the same search wrote. A last line
  // cut short by a kill is dropped.
  SearchLedger(const std::string& path, const SearchSpace& space);
  const Candidate* find(const Subnet& s) const;
  void add(const Candidate& c);  // appends the line, written through
  std::int64_t size() const { return static_cast<std::int64_t>(order_.size()); }

 private:
  const SearchSpace& space_;
  std::map<std::string, Candidate> by_key_;
  std::vector<std::string> order_;
  AppendFile file_;
};

// Opens a ledger file (creating it) for appending: feeds each whole line an earlier run wrote to
// `read`, in order, up to the first line `read` rejects by throwing (a line a kill cut short, or
// one of a changed format), and cuts the file there. Shared by the ledgers of both searches.
AppendFile open_ledger(const std::string& path, const std::function<void(const std::string& line)>& read);

// Regularised evolution's tournament: `sample` members of `population` drawn with replacement
// (rng() % size); the one of highest `fitness` wins, the first drawn of equals.
template <class Member, class Fitness>
const Member& tournament_winner(const std::deque<Member>& population, std::int64_t sample, std::mt19937_64& rng,
                                const Fitness& fitness) {
  const Member* best = nullptr;
  for (std::int64_t i = 0; i < sample; ++i) {
    const Member& m = population[static_cast<std::size_t>(rng() % population.size())];
    if (!best || fitness(m) > fitness(*best)) best = &m;
  }
  return *best;
}

// The evaluated candidates of `history`, each subnet once (its first evaluation), in order.
std::vector<Candidate> evaluated_once(const std::vector<Candidate>& history);

// dump_json on one line (without its trailing newline), for a field of a JSON line.
std::string one_line_json(const ConfigNode& node);

// A candidate as its ledger line, and back.
std::string candidate_json(const Candidate& c);
Candidate candidate_from_json(const std::string& line, const SearchSpace& space);

// What the search knows of `s`: the ledger's entry, or the judge's measurement (latency only when
// the parameter and FLOPs constraints hold, accuracy only when all hold), recorded in the ledger
// when latency was measured (parameters and FLOPs are cheap to measure again).
Candidate measure_candidate(const Subnet& s, const SearchConstraints& constraints, CandidateJudge& judge,
                            SearchLedger& ledger);

// Called after each evaluation: how many of `settings.candidates` are done, and the best so far.
using SearchProgress = std::function<void(std::int64_t done, const Candidate& best)>;

// Runs the search; returns the evaluated candidates in evaluation order. Throws std::runtime_error
// when no subnet of the space meets the constraints (after many draws).
std::vector<Candidate> run_search(const SearchSpace& space, const SearchSettings& settings, CandidateJudge& judge,
                                  SearchLedger& ledger, const SearchProgress& progress = {});

// The evaluated feasible candidates no other one beats in accuracy at no more of `cost` (ties in
// both: the first), by increasing cost.
std::vector<Candidate> pareto_front(const std::vector<Candidate>& candidates,
                                    const std::function<double(const Candidate&)>& cost);

}  // namespace blocklab
