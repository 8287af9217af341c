#include "blocks/nas/samplers.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace blocklab {

std::mt19937_64 step_generator(std::uint64_t seed, std::int64_t step, std::uint32_t stream) {
  std::seed_seq seq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                    static_cast<std::uint32_t>(step),
                    static_cast<std::uint32_t>(static_cast<std::uint64_t>(step) >> 32), stream};
  return std::mt19937_64(seq);
}

SubnetSampler::SubnetSampler(SearchSpace space, SamplerSettings settings, std::function<double(const Subnet&)> mflops)
    : space_(std::move(space)), settings_(std::move(settings)), mflops_(std::move(mflops)) {
  const auto& k = settings_.kind;
  if (k != "sandwich" && k != "uniform" && k != "multi_arch" && k != "complexity_aware" && k != "performance_aware")
    throw std::invalid_argument("unknown sampler " + k +
                                " (sandwich, uniform, multi_arch, complexity_aware, performance_aware)");
  if (k == "performance_aware" && (settings_.memory_size < 1 || settings_.memory_rate < 0 || settings_.memory_rate > 1))
    throw std::invalid_argument("performance_aware needs memory_size >= 1 and memory_rate in [0, 1]");
  if (k == "complexity_aware" || k == "performance_aware") {
    if (settings_.mflops_banks.empty() || settings_.mflops_bound <= 0)
      throw std::invalid_argument("the complexity_aware sampler needs mflops_banks and an mflops_bound > 0");
    if (!std::is_sorted(settings_.mflops_banks.begin(), settings_.mflops_banks.end()))
      throw std::invalid_argument("mflops_banks must increase");
  }
  if (k == "multi_arch" && settings_.sub_batches < 1) throw std::invalid_argument("sub_batches must be at least 1");
}

std::int64_t SubnetSampler::bank_at(std::uint64_t seed, std::int64_t step) const {
  const auto last = static_cast<std::int64_t>(settings_.mflops_banks.size()) - 1;
  // The walk from the last step asked (training asks step after step), else from step 0.
  if (walk_seed_ != seed || walk_step_ > step) walk_seed_ = seed, walk_step_ = 0, walk_bank_ = 0;
  for (std::int64_t s = walk_step_ + 1; s <= step; ++s) {  // ElasticViT's adjacent step: -1, 0 or +1
    auto rng = step_generator(seed, s, 1);
    walk_bank_ = std::clamp<std::int64_t>(walk_bank_ + static_cast<std::int64_t>(rng() % 3) - 1, 0, last);
  }
  walk_step_ = step;
  return walk_bank_;
}

// A random subnet within the bound of the bank's target: uniform draws until one is accepted
// (ElasticViT keeps offline candidate lists per bank; this draws them on the fly), the closest of
// 2000 when none is.
Subnet SubnetSampler::in_bank(std::int64_t bank, std::mt19937_64& rng) const {
  const double target = settings_.mflops_banks[static_cast<std::size_t>(bank)];
  Subnet closest;
  double distance = INFINITY;
  for (int tries = 0; tries < 2000; ++tries) {
    Subnet s = random_subnet(space_, rng);
    const double d = std::abs(mflops_(s) - target);
    if (d <= settings_.mflops_bound) return s;
    if (d < distance) distance = d, closest = std::move(s);
  }
  return closest;
}

std::vector<SampledSubnet> SubnetSampler::at(std::uint64_t seed, std::int64_t step, const SubnetMemory* memory) const {
  auto rng = step_generator(seed, step, 0);
  std::vector<SampledSubnet> out;
  const auto& k = settings_.kind;
  if (k == "sandwich") {
    out.push_back({largest_subnet(space_), settings_.distill, false, -1});
    out.push_back({smallest_subnet(space_), false, settings_.distill, -1});
    for (std::int64_t i = 0; i < settings_.random; ++i)
      out.push_back({random_subnet(space_, rng), false, settings_.distill, -1});
  } else if (k == "uniform") {
    for (std::int64_t i = 0; i < settings_.random; ++i) out.push_back({random_subnet(space_, rng), false, false, -1});
  } else if (k == "multi_arch") {
    for (std::int64_t i = 0; i < settings_.sub_batches; ++i)
      out.push_back({random_subnet(space_, rng), false, false, i});
  } else {  // complexity_aware, performance_aware
    const std::int64_t bank = bank_at(seed, step);
    const bool aware = k == "performance_aware";
    for (std::int64_t i = 0; i < settings_.random; ++i) {
      // performance_aware: the coin and the pick are drawn whether used or not, so the stream does
      // not depend on what the memory holds.
      const double coin = aware ? static_cast<double>(rng() >> 11) * 0x1.0p-53 : 1.0;
      const std::uint64_t pick = aware ? rng() : 0;
      if (aware && memory && !memory->bank(bank).empty() && coin < settings_.memory_rate) {
        const auto& entries = memory->bank(bank);
        out.push_back({entries[pick % entries.size()].subnet, true, false, -1, bank, true});
      } else {
        out.push_back({in_bank(bank, rng), true, false, -1, bank, false});
      }
    }
    out.push_back({smallest_subnet(space_), false, true, -1});
  }
  return out;
}

// ---- performance_aware's memory ---------------------------------------------------------------

SubnetMemory::SubnetMemory(std::int64_t banks, std::int64_t capacity)
    : capacity_(capacity), banks_(static_cast<std::size_t>(std::max<std::int64_t>(banks, 0))) {}

void SubnetMemory::offer(std::int64_t b, const Subnet& subnet, double score) {
  auto& entries = bank(b);
  for (Entry& e : entries)
    if (e.subnet == subnet) {
      e.score = score;
      return;
    }
  if (static_cast<std::int64_t>(entries.size()) < capacity_) {
    entries.push_back({subnet, score});
    return;
  }
  auto worst = std::min_element(entries.begin(), entries.end(),
                                [](const Entry& a, const Entry& c) { return a.score < c.score; });
  if (worst->score < score) *worst = {subnet, score};
}

namespace {
std::string exact(double v) {  // %.17g restores a double exactly through strtod
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.17g", v);
  return buffer;
}
}  // namespace

// One line an entry: bank score width depth (mixer heads ratio) per layer.
std::string SubnetMemory::text() const {
  std::string t;
  for (std::size_t b = 0; b < banks_.size(); ++b)
    for (const Entry& e : banks_[b]) {
      t += std::to_string(b) + " " + exact(e.score) + " " + std::to_string(e.subnet.width) + " " +
           std::to_string(e.subnet.depth());
      for (const LayerChoice& l : e.subnet.layers)
        t += " " + l.mixer + " " + std::to_string(l.heads) + " " + exact(l.mlp_ratio);
      t += "\n";
    }
  return t;
}

SubnetMemory SubnetMemory::from_text(const std::string& text, const SearchSpace& space, std::int64_t banks,
                                     std::int64_t capacity) {
  SubnetMemory memory(banks, capacity);
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream in(line);
    std::int64_t b = -1, depth = 0;
    std::string score;
    Subnet s;
    in >> b >> score >> s.width >> depth;
    for (std::int64_t i = 0; in && i < depth; ++i) {
      LayerChoice l;
      std::string ratio;
      in >> l.mixer >> l.heads >> ratio;
      l.mlp_ratio = std::strtod(ratio.c_str(), nullptr);
      s.layers.push_back(l);
    }
    if (!in || b < 0 || b >= banks || !subnet_problem(s, space).empty())
      throw std::invalid_argument("not a subnet memory line: " + line);
    memory.bank(b).push_back({s, std::strtod(score.c_str(), nullptr)});
  }
  return memory;
}

}  // namespace blocklab
