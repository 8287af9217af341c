// einspace's search (experiments/einspace_search.h, catalog D37), tag [nas]: with a fake fitness
// that is an exact function of the tree (no training), the same seed gives the same trajectory
// and another seed another; a search stopped after k candidates (a shorter --candidates, or a
// stop in the middle, plus half a ledger line) and run again on its ledger follows the
// uninterrupted trajectory without evaluating anything twice; no evaluated tree exceeds the
// parameter limit (one at the median of an unconstrained search's counts, so that it binds);
// every mutated child keeps its parent's output shape on the images; a failing evaluation is
// recorded with fitness 0 and its error and the search goes on; the experiment's seed tree is
// the first evaluated; the ledger round-trips; the ranking keeps each tree once, best first.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>

#include "experiments/einspace_search.h"
#include "registry/yaml_io.h"
#include "tests/process_support.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

ModelInputs einsearch_images() {
  ModelInputs in;
  in.channels = 2;
  in.height = 12;
  in.width = 12;
  return in;
}

EinShape einsearch_input() { return EinShape{{2, 12, 12}}; }

// An exact function of the tree: larger trees score higher, plus a little noise per tree.
double einsearch_score(const EinNode& tree) {
  const double noise = static_cast<double>(std::hash<std::string>{}(ein_key(tree)) % 1000) / 1000.0;
  return static_cast<double>(ein_parameter_count(tree, einsearch_input())) / 1e4 + 0.1 * noise;
}

// A fitness that counts its calls and remembers every tree it was given.
struct EinsearchFake {
  int calls = 0;
  int stop_at = -1;  // throw EinSearchStopped at this call (a stop signal)
  std::vector<EinNode> seen;
  EinFitness fitness() {
    return [this](const EinNode& tree) {
      if (calls == stop_at) throw EinSearchStopped("stopped");
      ++calls;
      seen.push_back(tree);
      return EinEvaluation{einsearch_score(tree), "runs/" + ein_key(tree).substr(0, 8), ""};
    };
  }
};

EinSearchSettings einsearch_settings(std::uint64_t seed, std::int64_t candidates = 30) {
  EinSearchSettings s;
  s.candidates = candidates;
  s.population = 8;
  s.sample = 3;
  s.seed = seed;
  return s;
}

std::vector<EinCandidate> einsearch_in(const fs::path& dir, const EinSearchSettings& s, const EinFitness& fitness) {
  EinLedger ledger((dir / "ledger.jsonl").string());
  return run_einspace_search(einsearch_images(), s, fitness, ledger);
}

std::vector<std::string> einsearch_keys(const std::vector<EinCandidate>& history) {
  std::vector<std::string> keys;
  for (const auto& c : history) keys.push_back(c.key);
  return keys;
}

std::size_t einsearch_unique(const std::vector<EinCandidate>& history) {
  std::set<std::string> keys;
  for (const auto& c : history) keys.insert(c.key);
  return keys.size();
}

}  // namespace

TEST_CASE("einspace search: the same seed gives the same trajectory, another seed another", "[nas]") {
  testing::TempDir a, b, c;
  EinsearchFake fa, fb, fc;
  const auto first = einsearch_in(a.path, einsearch_settings(1), fa.fitness());
  const auto again = einsearch_in(b.path, einsearch_settings(1), fb.fitness());
  const auto other = einsearch_in(c.path, einsearch_settings(2), fc.fitness());
  REQUIRE(first.size() == 30);
  CHECK(einsearch_keys(first) == einsearch_keys(again));
  CHECK(einsearch_keys(first) != einsearch_keys(other));
  CHECK(testing::slurp(a.path / "ledger.jsonl") == testing::slurp(b.path / "ledger.jsonl"));
  // Each tree was evaluated once, and the history carries its fitness.
  CHECK(fa.calls == static_cast<int>(einsearch_unique(first)));
  for (const auto& k : first) {
    INFO(k.key);
    CHECK(k.key == ein_key(k.tree));
    CHECK(k.accuracy == einsearch_score(k.tree));
    CHECK(k.parameters == ein_parameter_count(k.tree, einsearch_input()));
    CHECK(k.error.empty());
  }
  // The initial population is drawn (no parent), the later ones mostly mutated.
  for (int i = 0; i < 8; ++i) CHECK(first[static_cast<std::size_t>(i)].parent.empty());
  CHECK(std::count_if(first.begin() + 8, first.end(), [](const EinCandidate& k) { return !k.parent.empty(); }) >= 11);
}

TEST_CASE("einspace search: a search stopped after k candidates continues on its ledger along the same trajectory",
          "[nas]") {
  testing::TempDir whole;
  EinsearchFake uninterrupted;
  const auto expected = einsearch_in(whole.path, einsearch_settings(7), uninterrupted.fitness());
  REQUIRE(expected.size() == 30);
  const std::string ledger = testing::slurp(whole.path / "ledger.jsonl");

  // A shorter --candidates (inside the initial population, and past it), then the full count.
  for (const std::int64_t k : {5, 13}) {
    INFO("stopped after " << k);
    testing::TempDir dir;
    EinsearchFake first, rest;
    const auto part = einsearch_in(dir.path, einsearch_settings(7, k), first.fitness());
    REQUIRE(part.size() == static_cast<std::size_t>(k));
    const std::vector<std::string> all = einsearch_keys(expected);
    CHECK(einsearch_keys(part) == std::vector<std::string>(all.begin(), all.begin() + k));
    { std::ofstream(dir.path / "ledger.jsonl", std::ios::app) << "{\"key\": \"seq(lin"; }  // a kill mid-write
    const auto history = einsearch_in(dir.path, einsearch_settings(7), rest.fitness());
    CHECK(einsearch_keys(history) == einsearch_keys(expected));
    CHECK(first.calls + rest.calls == uninterrupted.calls);  // nothing evaluated twice
    CHECK(testing::slurp(dir.path / "ledger.jsonl") == ledger);
  }

  // A stop signal in the middle of an evaluation: nothing recorded for it, the rerun continues.
  testing::TempDir dir;
  EinsearchFake dying, resumed;
  dying.stop_at = 10;
  CHECK_THROWS_AS(einsearch_in(dir.path, einsearch_settings(7), dying.fitness()), EinSearchStopped);
  CHECK(EinLedger((dir.path / "ledger.jsonl").string()).size() == 10);
  const auto history = einsearch_in(dir.path, einsearch_settings(7), resumed.fitness());
  CHECK(einsearch_keys(history) == einsearch_keys(expected));
  CHECK(resumed.calls == uninterrupted.calls - 10);
  CHECK(testing::slurp(dir.path / "ledger.jsonl") == ledger);
}

TEST_CASE("einspace search: no evaluated tree exceeds the parameter limit", "[nas]") {
  testing::TempDir free_dir, bound_dir;
  EinsearchFake free_fake, bound_fake;
  const auto unconstrained = einsearch_in(free_dir.path, einsearch_settings(3), free_fake.fitness());
  std::vector<std::int64_t> counts;
  for (const auto& k : unconstrained) counts.push_back(k.parameters);
  std::sort(counts.begin(), counts.end());
  const std::int64_t limit = std::max<std::int64_t>(1, counts[counts.size() / 2]);  // the median: it binds
  CHECK(std::any_of(counts.begin(), counts.end(), [&](std::int64_t n) { return n > limit; }));

  EinSearchSettings s = einsearch_settings(3);
  s.max_parameters = limit;
  // A seed over the limit does not join the population.
  const EinNode big = ein_default_architecture();  // 4 x 4 patches of the 12 x 12 images: 9 tokens
  REQUIRE(ein_output_shape(big, einsearch_input()).ok());
  const std::int64_t big_count = ein_parameter_count(big, einsearch_input());
  if (big_count > limit) s.seeds.push_back(big);
  const auto history = einsearch_in(bound_dir.path, s, bound_fake.fitness());
  REQUIRE(history.size() == 30);
  for (const auto& k : history) {
    INFO(k.key);
    CHECK(k.parameters == ein_parameter_count(k.tree, einsearch_input()));
    CHECK(k.parameters <= limit);
  }
  for (const auto& t : bound_fake.seen) CHECK(ein_parameter_count(t, einsearch_input()) <= limit);  // never trained
}

TEST_CASE("einspace search: every mutated child keeps its parent's output shape on the images", "[nas]") {
  testing::TempDir dir;
  EinsearchFake fake;
  EinSearchSettings s = einsearch_settings(11, 40);
  const auto history = einsearch_in(dir.path, s, fake.fitness());
  std::map<std::string, EinNode> trees;
  int children = 0;
  for (const auto& k : history) {
    INFO(k.key << " from " << k.parent);
    const EinShapeResult shape = ein_output_shape(k.tree, einsearch_input());
    REQUIRE(shape.ok());  // every tree maps the images
    if (!k.parent.empty()) {
      REQUIRE(trees.count(k.parent) == 1);  // the parent was evaluated before
      const EinNode& parent = trees.at(k.parent);
      CHECK(shape.shape == ein_output_shape(parent, einsearch_input()).shape);
      CHECK(k.tree != parent);
      ++children;
    }
    trees.emplace(k.key, k.tree);
  }
  CHECK(children >= 16);  // of the 32 after the initial population, most are mutations

  // Random search (population = candidates): no cycles, every tree drawn.
  testing::TempDir random_dir;
  EinsearchFake random_fake;
  EinSearchSettings r = einsearch_settings(11, 12);
  r.population = 12;
  for (const auto& k : einsearch_in(random_dir.path, r, random_fake.fitness())) CHECK(k.parent.empty());
}

TEST_CASE("einspace search: a failing evaluation is recorded with fitness 0 and its error; the search goes on",
          "[nas]") {
  testing::TempDir dir;
  int calls = 0;
  // One tree in three fails: a throw (a shape error at run time), an error with its run
  // directory (a run that diverged), or a fitness that is not finite.
  const auto kind = [](const EinNode& t) { return std::hash<std::string>{}(ein_key(t)) % 6; };
  const EinFitness failing = [&](const EinNode& t) -> EinEvaluation {
    ++calls;
    if (kind(t) == 0) throw std::runtime_error("shape \"error\"\nat run time");
    if (kind(t) == 1) return {0.7, "runs/diverged", "diverged at step 3"};
    return {einsearch_score(t), "", ""};
  };
  const auto history = einsearch_in(dir.path, einsearch_settings(5), failing);
  REQUIRE(history.size() == 30);
  int failed = 0;
  for (const auto& k : history) {
    INFO(k.key);
    if (kind(k.tree) == 0) {
      CHECK(k.accuracy == 0);
      CHECK(k.error == "shape \"error\"\nat run time");
      ++failed;
    } else if (kind(k.tree) == 1) {
      CHECK(k.accuracy == 0);
      CHECK(k.error == "diverged at step 3");
      CHECK(k.run_dir == "runs/diverged");
      ++failed;
    } else {
      CHECK(k.accuracy == einsearch_score(k.tree));
      CHECK(k.error.empty());
    }
  }
  CHECK(failed > 0);
  // The ledger keeps the failures: a rerun evaluates nothing and gives the same history.
  const int first_calls = calls;
  const auto again = einsearch_in(dir.path, einsearch_settings(5), failing);
  CHECK(calls == first_calls);
  CHECK(einsearch_keys(again) == einsearch_keys(history));
  for (std::size_t i = 0; i < again.size(); ++i) {
    CHECK(again[i].accuracy == history[i].accuracy);
    CHECK(again[i].error == history[i].error);
  }

  // A fitness that is not finite counts as a failure.
  testing::TempDir nan_dir;
  const EinFitness nan = [](const EinNode&) { return EinEvaluation{std::nan(""), "", ""}; };
  for (const auto& k : einsearch_in(nan_dir.path, einsearch_settings(5, 3), nan)) {
    CHECK(k.accuracy == 0);
    CHECK_FALSE(k.error.empty());
  }
}

TEST_CASE("einspace search: the experiment's tree seeds the population", "[nas]") {
  testing::TempDir dir;
  EinsearchFake fake;
  EinSearchSettings s = einsearch_settings(4, 10);
  const EinNode seed = ein_default_architecture();
  s.seeds.push_back(seed);
  const auto history = einsearch_in(dir.path, s, fake.fitness());
  REQUIRE(history.size() == 10);
  CHECK(history[0].tree == seed);
  CHECK(history[0].parent.empty());
  REQUIRE_FALSE(fake.seen.empty());
  CHECK(fake.seen[0] == seed);
}

TEST_CASE("einspace search: ledger lines round-trip; a cut or mismatched line is refused", "[nas]") {
  EinCandidate c;
  c.tree = ein_default_architecture();
  c.key = ein_key(c.tree);
  c.parameters = 1234;
  c.accuracy = 0.1 + 0.2;  // not a short decimal: must come back bit for bit
  c.run_dir = "results/runs/einspace_fmnist/0123456789ab";
  c.error = "a \"quoted\" error,\nover two lines";
  c.parent = "ignored";
  const std::string line = ein_candidate_json(c);
  CHECK(line.find('\n') == std::string::npos);
  const EinCandidate back = ein_candidate_from_json(line);
  CHECK(back.tree == c.tree);
  CHECK(back.key == c.key);
  CHECK(back.parameters == 1234);
  CHECK(back.accuracy == c.accuracy);
  CHECK(back.run_dir == c.run_dir);
  CHECK(back.error == c.error);
  CHECK(back.parent.empty());
  CHECK_THROWS(ein_candidate_from_json(line.substr(0, line.size() / 2)));
  std::string wrong_key = line;
  wrong_key.replace(wrong_key.find(c.key), c.key.size(), "identity");
  CHECK_THROWS(ein_candidate_from_json(wrong_key));

  // The ledger file: written through, read back, the parent not stored.
  testing::TempDir dir;
  const std::string path = (dir.path / "ledger.jsonl").string();
  {
    EinLedger ledger(path);
    ledger.add(c);
    REQUIRE(ledger.find(c.key) != nullptr);
    CHECK(ledger.find(c.key)->parent.empty());
  }
  EinLedger reopened(path);
  CHECK(reopened.size() == 1);
  REQUIRE(reopened.find(c.key) != nullptr);
  CHECK(reopened.find(c.key)->accuracy == c.accuracy);
  CHECK(reopened.find("identity") == nullptr);
}

TEST_CASE("einspace search: the ranking keeps each tree once, best first, ties in evaluation order", "[nas]") {
  const auto candidate = [](const std::string& fn, double accuracy) {
    EinCandidate c;
    c.tree = EinNode{"computation", fn, "", {}};
    c.key = ein_key(c.tree);
    c.accuracy = accuracy;
    return c;
  };
  const std::vector<EinCandidate> history{candidate("norm", 0.5),      candidate("identity", 0.8),
                                          candidate("softmax", 0.5),   candidate("identity", 0.8),
                                          candidate("leakyrelu", 0.9), candidate("linear16", 0.1)};
  std::vector<std::pair<std::string, double>> got;
  for (const auto& c : ein_ranked(history)) got.emplace_back(c.key, c.accuracy);
  CHECK(got == std::vector<std::pair<std::string, double>>{
                   {"leakyrelu", 0.9}, {"identity", 0.8}, {"norm", 0.5}, {"softmax", 0.5}, {"linear16", 0.1}});
}

}  // namespace BLOCKLAB_TEST_FILE
