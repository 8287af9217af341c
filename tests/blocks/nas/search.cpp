// Architecture search (experiments/search.h), tag [nas]: with a judge whose numbers are exact
// functions of the subnet, the same seed gives the same trajectory and another seed another;
// no returned candidate breaks a constraint; a search killed mid-way and run again on its ledger
// follows the uninterrupted trajectory without measuring anything twice; a ledger line cut short
// is dropped; impossible constraints say so; the Pareto front keeps exactly the non-dominated
// points. End to end: `blocklab search` trains a tiny supernet, searches, writes its files, and a
// rerun takes every candidate from the ledger.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include "experiments/search.h"
#include "registry/yaml_io.h"
#include "tests/process_support.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

SearchSpace small_space() {
  SearchSpace s;
  s.depths = {1, 2, 3};
  s.widths = {16, 24, 32};
  s.heads = {1, 2};
  s.mlp_ratios = {1.0, 2.0};
  s.mixers = {"attention/softmax", "linear/elu", "mixer/pooling"};
  s.head_dim = 8;
  return s;
}

// Numbers that are exact functions of the subnet; counts what it was asked.
class FakeJudge : public CandidateJudge {
 public:
  std::int64_t parameters(const Subnet& s) override {
    std::int64_t n = s.width * 10;
    for (const auto& l : s.layers) n += s.width * (4 * l.heads + static_cast<std::int64_t>(8 * l.mlp_ratio));
    return n;
  }
  double mflops(const Subnet& s) override { return static_cast<double>(parameters(s)) / 100.0; }
  double latency_ms(const Subnet& s) override {
    ++latencies;
    return static_cast<double>(s.depth()) + static_cast<double>(s.width) / 32.0;
  }
  double accuracy(const Subnet& s) override {
    if (fail_after >= 0 && accuracies == fail_after) throw std::runtime_error("killed");
    ++accuracies;
    // Heritable (wider, deeper, softmax layers score higher) plus a little noise per subnet, so
    // tournaments have something to select.
    double a = static_cast<double>(s.width) / 32.0 + static_cast<double>(s.depth());
    for (const auto& l : s.layers) a += 0.5 * l.mlp_ratio + (l.mixer == "attention/softmax" ? 0.3 : 0.0);
    const double noise = static_cast<double>(std::hash<std::string>{}(subnet_key(s)) % 1000) / 1000.0;
    return (a + 0.2 * noise) / 10.0;
  }
  int latencies = 0, accuracies = 0;
  int fail_after = -1;  // throw at this evaluation (a kill)
};

SearchSettings settings(const std::string& algorithm, std::uint64_t seed) {
  SearchSettings s;
  s.algorithm = algorithm;
  s.candidates = 30;
  s.population = 8;
  s.sample = 3;
  s.seed = seed;
  return s;
}

std::vector<std::string> keys(const std::vector<Candidate>& history) {
  std::vector<std::string> k;
  for (const auto& c : history) k.push_back(subnet_key(c.subnet));
  return k;
}

std::vector<Candidate> search_in(const fs::path& dir, const SearchSettings& s, FakeJudge& judge) {
  const SearchSpace space = small_space();
  SearchLedger ledger((dir / "ledger.jsonl").string(), space);
  return run_search(space, s, judge, ledger);
}

}  // namespace

TEST_CASE("nas search: the same seed gives the same trajectory, another seed another", "[nas]") {
  for (const std::string algorithm : {"evolution", "random"}) {
    INFO(algorithm);
    testing::TempDir a, b, c;
    FakeJudge ja, jb, jc;
    const auto first = search_in(a.path, settings(algorithm, 1), ja);
    const auto again = search_in(b.path, settings(algorithm, 1), jb);
    const auto other = search_in(c.path, settings(algorithm, 2), jc);
    REQUIRE(first.size() == 30);
    CHECK(keys(first) == keys(again));
    CHECK(keys(first) != keys(other));
    CHECK(testing::slurp(a.path / "ledger.jsonl") == testing::slurp(b.path / "ledger.jsonl"));
  }
}

TEST_CASE("nas search: evolution improves on its random start", "[nas]") {
  testing::TempDir dir;
  FakeJudge judge;
  SearchSettings s = settings("evolution", 3);
  s.candidates = 120;
  const auto history = search_in(dir.path, s, judge);
  double start = 0, late = 0;
  for (int i = 0; i < 8; ++i) start += history[static_cast<std::size_t>(i)].accuracy / 8;
  for (int i = 100; i < 120; ++i) late += history[static_cast<std::size_t>(i)].accuracy / 20;
  CHECK(late > start);  // tournaments pick the better parents
}

TEST_CASE("nas search: no returned candidate breaks a constraint", "[nas]") {
  FakeJudge probe;
  for (const std::string algorithm : {"evolution", "random"}) {
    testing::TempDir dir;
    FakeJudge judge;
    SearchSettings s = settings(algorithm, 5);
    s.constraints.max_parameters = 700;
    s.constraints.max_mflops = 6.5;
    s.constraints.max_latency_ms = 2.6;
    const auto history = search_in(dir.path, s, judge);
    REQUIRE(history.size() == 30);
    for (const auto& c : history) {
      INFO(subnet_key(c.subnet));
      CHECK(c.feasible);
      CHECK(c.evaluated);
      CHECK(c.parameters == probe.parameters(c.subnet));
      CHECK(c.parameters <= 700);
      CHECK(c.mflops <= 6.5);
      CHECK(c.latency_ms <= 2.6);
    }
  }
  testing::TempDir dir;
  FakeJudge judge;
  SearchSettings impossible = settings("random", 0);
  impossible.constraints.max_parameters = 10;
  CHECK_THROWS_WITH(search_in(dir.path, impossible, judge),
                    Catch::Contains("no subnet of the space met the constraints"));
}

TEST_CASE("nas search: a killed search continues on its ledger along the same trajectory", "[nas]") {
  testing::TempDir whole, killed;
  FakeJudge uninterrupted;
  const auto expected = search_in(whole.path, settings("evolution", 7), uninterrupted);

  FakeJudge dying;
  dying.fail_after = 13;
  CHECK_THROWS_WITH(search_in(killed.path, settings("evolution", 7), dying), "killed");
  // A kill in the middle of a write leaves half a line: dropped on reopening.
  { std::ofstream(killed.path / "ledger.jsonl", std::ios::app) << "{\"key\": \"w16 d1"; }
  FakeJudge resumed;
  const auto history = search_in(killed.path, settings("evolution", 7), resumed);
  CHECK(keys(history) == keys(expected));
  CHECK(resumed.accuracies == uninterrupted.accuracies - 13);  // nothing measured twice
  CHECK(testing::slurp(killed.path / "ledger.jsonl") == testing::slurp(whole.path / "ledger.jsonl"));
}

TEST_CASE("nas search: the Pareto front keeps exactly the non-dominated candidates", "[nas]") {
  const SearchSpace space = small_space();
  std::mt19937_64 rng(1);
  std::vector<Candidate> all;
  for (const auto& [params, acc] : std::vector<std::pair<std::int64_t, double>>{
           {100, 0.5}, {200, 0.7}, {150, 0.4}, {300, 0.7}, {250, 0.8}, {120, 0.55}, {400, 0.79}}) {
    Candidate c;
    c.subnet = random_subnet(space, rng);
    c.subnet.width = 16 + 8 * static_cast<std::int64_t>(all.size() % 3);  // distinct keys
    c.subnet.layers.resize(1 + all.size() / 3);
    c.parameters = params, c.accuracy = acc, c.evaluated = c.feasible = true;
    all.push_back(c);
  }
  const auto front = pareto_front(all, [](const Candidate& c) { return static_cast<double>(c.parameters); });
  std::vector<std::pair<std::int64_t, double>> got;
  for (const auto& c : front) got.emplace_back(c.parameters, c.accuracy);
  CHECK(got == std::vector<std::pair<std::int64_t, double>>{{100, 0.5}, {120, 0.55}, {200, 0.7}, {250, 0.8}});
}

TEST_CASE("nas search: blocklab search trains a tiny supernet, searches and continues from its ledger", "[nas]") {
  testing::TempDir tmp;
  const std::string args =
      "search fmnist_supernet --candidates 6 --population 3 --sample 2 --max-params 30000 --eval-examples 200 "
      "--reference '{width: 24, layers: [{mixer: attention/softmax, heads: 2, mlp_ratio: 2}]}' "
      "--out " +
      (tmp.path / "searches").string() + " -q output_dir=" + (tmp.path / "runs").string() +
      " model.patch=7 model.depths=[1,2] model.widths=[16,24] model.heads=[1,2] model.mlp_ratios=[1,2] "
      "model.head_dim=8 dataset.limit_train=256 dataset.limit_test=100 dataset.val_size=200 trainer.batch_size=32 "
      "trainer.epochs=1 threads=1";
  const auto first = testing::blocklab_command(args);
  INFO(first.out << first.err);
  REQUIRE(first.status == 0);
  std::string dir = first.out;
  while (!dir.empty() && dir.back() == '\n') dir.pop_back();
  for (const char* f : {"search.json", "ledger.jsonl", "candidates.csv", "pareto.md", "conf/model/front_0.yaml",
                        "conf/model/tau_0.yaml", "conf/model/reference.yaml", "conf/vit_fmnist.yaml", "retrain.jsonl"})
    CHECK(fs::exists(fs::path(dir) / f));
  const std::string csv = testing::slurp(fs::path(dir) / "candidates.csv");
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 7);  // header + 6 evaluations
  // The front's model configs are ordinary models.
  const ConfigNode front0 =
      load_yaml_file((fs::path(dir) / "conf/model/front_0.yaml").string(), "conf/model/front_0.yaml");
  CHECK(front0.at("type").text() == "model/composed");
  const std::string ledger = testing::slurp(fs::path(dir) / "ledger.jsonl");
  const auto again = testing::blocklab_command(args);
  REQUIRE(again.status == 0);
  CHECK(again.out == first.out);
  CHECK(testing::slurp(fs::path(dir) / "ledger.jsonl") == ledger);  // nothing new was measured
  CHECK(testing::slurp(fs::path(dir) / "candidates.csv") == csv);
}

}  // namespace BLOCKLAB_TEST_FILE
