#include "experiments/search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include "experiments/json_io.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

namespace blocklab {

// ---- the judge of a trained supernet -----------------------------------------------------------

SupernetJudge::SupernetJudge(Supernet supernet, std::shared_ptr<Dataset> dataset, const SearchSettings& settings,
                             ModelArgs model_args)
    : supernet_(std::move(supernet)),
      dataset_(std::move(dataset)),
      settings_(settings),
      model_args_(std::move(model_args)) {
  const BatchLoader all(*dataset_, settings.split, 1, /*shuffle=*/false, 0);
  const std::int64_t n = settings.eval_examples > 0 ? std::min(settings.eval_examples, all.size()) : all.size();
  if (n == 0)
    throw ConfigError("the " + settings.split + " split is empty: nothing to measure accuracy on", Source{}, "",
                      {"train the supernet with dataset.val_size > 0, or search on --split test"});
  const BatchLoader first(*dataset_, settings.split, n, /*shuffle=*/false, 0);
  std::tie(inputs_, targets_) = first.batch(0, 0, /*augment=*/false);
  supernet_->eval();
}

void SupernetJudge::set_teacher(Supernet teacher, std::int64_t relation_heads) {
  teacher_ = std::move(teacher);
  relation_heads_ = relation_heads;
  teacher_->set_subnet(largest_subnet(teacher_->space()));
  teacher_->eval();
}

// AutoDistil's proxy: minus the relation-distillation loss on the evaluation examples (higher is
// better, as accuracy).
double SupernetJudge::relation_score(const Subnet& s) {
  torch::NoGradGuard no_grad;
  supernet_->set_subnet(s);
  double sum = 0;
  const std::int64_t n = inputs_.size(0), chunk = 500;
  for (std::int64_t i = 0; i < n; i += chunk) {
    const auto len = std::min(chunk, n - i);
    AttentionRelations taught, learnt;
    teacher_->forward_relations(inputs_.narrow(0, i, len), taught);
    supernet_->forward_relations(inputs_.narrow(0, i, len), learnt);
    sum += relation_kd_loss(taught, learnt, relation_heads_).item<double>() * static_cast<double>(len);
  }
  return -sum / static_cast<double>(n);
}

double SupernetJudge::accuracy(const Subnet& s) {
  if (settings_.score == "relation_kd") return relation_score(s);
  torch::NoGradGuard no_grad;
  supernet_->set_subnet(s);
  std::int64_t correct = 0;
  const std::int64_t n = inputs_.size(0), chunk = 500;
  for (std::int64_t i = 0; i < n; i += chunk) {
    const auto len = std::min(chunk, n - i);
    const auto logits = supernet_->forward(inputs_.narrow(0, i, len));
    correct += logits.argmax(1).eq(targets_.narrow(0, i, len)).sum().item<std::int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

double SupernetJudge::latency_ms(const Subnet& s) {
  // The extracted model (what would be deployed), one image at a time: the median of the repeats
  // after two warm-up calls.
  Network model = model_registry().create(supernet_->subnet_config(s), model_args_);
  supernet_->export_weights(s, *model);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto image = inputs_.narrow(0, 0, 1);
  for (int i = 0; i < 2; ++i) model->forward(image);
  std::vector<double> ms;
  for (std::int64_t i = 0; i < std::max<std::int64_t>(1, settings_.latency_repeats); ++i) {
    const auto start = std::chrono::steady_clock::now();
    model->forward(image);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(ms.begin(), ms.begin() + static_cast<std::ptrdiff_t>(ms.size() / 2), ms.end());
  return ms[ms.size() / 2];
}

// ---- the ledger --------------------------------------------------------------------------------

std::string one_line_json(const ConfigNode& node) {
  std::string json = dump_json(node);
  while (!json.empty() && json.back() == '\n') json.pop_back();
  return json;
}

std::vector<Candidate> evaluated_once(const std::vector<Candidate>& history) {
  std::vector<Candidate> out;
  std::set<std::string> seen;
  for (const auto& c : history)
    if (c.evaluated && seen.insert(subnet_key(c.subnet)).second) out.push_back(c);
  return out;
}

std::string candidate_json(const Candidate& c) {
  JsonObject line;
  line.set("key", subnet_key(c.subnet))
      .set_raw("subnet", one_line_json(subnet_node(c.subnet)))
      .set("parameters", c.parameters)
      .set("mflops", c.mflops)
      .set("latency_ms", c.latency_ms)
      .set("feasible", c.feasible)
      .set("evaluated", c.evaluated);
  if (c.evaluated) line.set("accuracy", c.accuracy);
  return line.str();
}

Candidate candidate_from_json(const std::string& line, const SearchSpace& space) {
  const ConfigNode node = parse_json_object(line, "ledger line");
  Candidate c;
  c.subnet = subnet_from_node(node.at("subnet"), space);
  c.parameters = node.at("parameters").as_int();
  c.mflops = node.at("mflops").as_double();
  c.latency_ms = node.at("latency_ms").as_double();
  c.feasible = node.at("feasible").as_bool();
  c.evaluated = node.at("evaluated").as_bool();
  if (c.evaluated) c.accuracy = node.at("accuracy").as_double();
  return c;
}

AppendFile open_ledger(const std::string& path, const std::function<void(const std::string& line)>& read) {
  const std::string text = file_exists(path) ? read_file(path) : "";
  std::uint64_t whole = 0;  // bytes of whole, readable lines
  for (std::size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    try {
      read(text.substr(start, end - start));
      whole = end + 1;
    } catch (const std::exception&) {
      break;  // a line a kill cut short (or a later change of the format): measured again
    }
  }
  AppendFile file(path);
  file.truncate(whole);
  return file;
}

SearchLedger::SearchLedger(const std::string& path, const SearchSpace& space) : space_(space) {
  file_ = open_ledger(path, [this](const std::string& line) {
    const Candidate c = candidate_from_json(line, space_);  // throws on a cut line or a changed space
    const std::string key = subnet_key(c.subnet);
    if (!by_key_.count(key)) order_.push_back(key);
    by_key_[key] = c;
  });
}

const Candidate* SearchLedger::find(const Subnet& s) const {
  const auto it = by_key_.find(subnet_key(s));
  return it == by_key_.end() ? nullptr : &it->second;
}

void SearchLedger::add(const Candidate& c) {
  const std::string key = subnet_key(c.subnet);
  if (!by_key_.count(key)) order_.push_back(key);
  by_key_[key] = c;
  file_.append_line(candidate_json(c));
}

// ---- the search --------------------------------------------------------------------------------

Candidate measure_candidate(const Subnet& s, const SearchConstraints& k, CandidateJudge& judge, SearchLedger& ledger) {
  if (const Candidate* known = ledger.find(s)) return *known;
  Candidate c;
  c.subnet = s;
  c.parameters = judge.parameters(s);
  c.mflops = judge.mflops(s);
  if ((k.max_parameters > 0 && c.parameters > k.max_parameters) || (k.max_mflops > 0 && c.mflops > k.max_mflops))
    return c;
  c.latency_ms = judge.latency_ms(s);
  c.feasible = k.max_latency_ms <= 0 || c.latency_ms <= k.max_latency_ms;
  if (c.feasible) {
    c.accuracy = judge.accuracy(s);
    c.evaluated = true;
  }
  ledger.add(c);
  return c;
}

namespace {

class Searcher {
 public:
  Searcher(const SearchSpace& space, const SearchSettings& settings, CandidateJudge& judge, SearchLedger& ledger,
           const SearchProgress& progress)
      : space_(space), settings_(settings), judge_(judge), ledger_(ledger), progress_(progress), rng_(settings.seed) {}

  std::vector<Candidate> random() {
    while (count() < settings_.candidates) record(draw_feasible());
    return history_;
  }

  std::vector<Candidate> evolution() {
    std::deque<Candidate> population;
    while (count() < std::min(settings_.population, settings_.candidates)) {
      population.push_back(draw_feasible());
      record(population.back());
    }
    while (count() < settings_.candidates) {
      const Candidate& parent = tournament(population);
      population.push_back(mutate_feasible(parent.subnet));
      population.pop_front();  // the oldest dies (regularised evolution)
      record(population.back());
    }
    return history_;
  }

 private:
  std::int64_t count() const { return static_cast<std::int64_t>(history_.size()); }

  // `sample` members drawn with replacement; the most accurate (the first of equals) wins.
  const Candidate& tournament(const std::deque<Candidate>& population) {
    return tournament_winner(population, settings_.sample, rng_, [](const Candidate& c) { return c.accuracy; });
  }

  Candidate draw_feasible() {
    for (int tries = 0; tries < 10000; ++tries)
      if (Candidate c = measure(random_subnet(space_, rng_)); c.feasible) return c;
    throw std::runtime_error("no subnet of the space met the constraints in 10000 draws; loosen them (" +
                             constraints_text() + ") or shrink the space's widths and depths");
  }

  Candidate mutate_feasible(const Subnet& parent) {
    for (int tries = 0; tries < 1000; ++tries)
      if (Candidate c = measure(mutate_subnet(parent, space_, settings_.mutation, rng_)); c.feasible) return c;
    return draw_feasible();  // a parent at the constraints' edge whose mutations all fail
  }

  Candidate measure(const Subnet& s) { return measure_candidate(s, settings_.constraints, judge_, ledger_); }

  void record(const Candidate& c) {
    history_.push_back(c);
    if (!best_ || c.accuracy > best_->accuracy) best_ = c;
    if (progress_) progress_(count(), *best_);
  }

  std::string constraints_text() const {
    const SearchConstraints& k = settings_.constraints;
    std::ostringstream s;
    s << "max_parameters " << k.max_parameters << ", max_mflops " << k.max_mflops << ", max_latency_ms "
      << k.max_latency_ms;
    return s.str();
  }

  const SearchSpace& space_;
  const SearchSettings& settings_;
  CandidateJudge& judge_;
  SearchLedger& ledger_;
  const SearchProgress& progress_;
  std::mt19937_64 rng_;
  std::vector<Candidate> history_;
  std::optional<Candidate> best_;
};

}  // namespace

std::vector<Candidate> run_search(const SearchSpace& space, const SearchSettings& settings, CandidateJudge& judge,
                                  SearchLedger& ledger, const SearchProgress& progress) {
  Searcher searcher(space, settings, judge, ledger, progress);
  if (settings.algorithm == "random") return searcher.random();
  if (settings.algorithm == "evolution") return searcher.evolution();
  throw std::invalid_argument("search: unknown algorithm " + settings.algorithm + " (evolution, random)");
}

std::vector<Candidate> pareto_front(const std::vector<Candidate>& candidates,
                                    const std::function<double(const Candidate&)>& cost) {
  std::vector<Candidate> sorted;
  for (const auto& c : evaluated_once(candidates))
    if (c.feasible) sorted.push_back(c);
  std::stable_sort(sorted.begin(), sorted.end(), [&](const Candidate& a, const Candidate& b) {
    return cost(a) != cost(b) ? cost(a) < cost(b) : a.accuracy > b.accuracy;
  });
  std::vector<Candidate> front;
  for (const auto& c : sorted)
    if (front.empty() || c.accuracy > front.back().accuracy) front.push_back(c);
  return front;
}

}  // namespace blocklab
