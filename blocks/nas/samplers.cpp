#include "blocks/nas/samplers.h"

#include <algorithm>
#include <cmath>
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
  if (k != "sandwich" && k != "uniform" && k != "multi_arch" && k != "complexity_aware")
    throw std::invalid_argument("unknown sampler " + k + " (sandwich, uniform, multi_arch, complexity_aware)");
  if (k == "complexity_aware") {
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

std::vector<SampledSubnet> SubnetSampler::at(std::uint64_t seed, std::int64_t step) const {
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
  } else {  // complexity_aware
    const std::int64_t bank = bank_at(seed, step);
    for (std::int64_t i = 0; i < settings_.random; ++i) out.push_back({in_bank(bank, rng), true, false, -1});
    out.push_back({smallest_subnet(space_), false, true, -1});
  }
  return out;
}

}  // namespace blocklab
