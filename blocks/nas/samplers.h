// Which subnets a step of supernet training trains, and what each learns from (task supernet).
//
//   sandwich          the largest subnet from the labels, teaching the smallest and `random` random
//                     ones by in-place distillation (Yu & Huang 2019, arXiv:1903.05134; BigNAS)
//   uniform           `random` random subnets, each from the labels (single-path training)
//   multi_arch        ViT-ResNAS's multi-architectural sampling (Liao et al. 2021,
//                     arXiv:2109.09542, §3.3): the batch split into `sub_batches` parts, each
//                     trained by its own random subnet, from the labels
//   complexity_aware  ElasticViT's complexity-aware sampling (Tang et al. 2023,
//                     arXiv:2303.09730, §3.2): MFLOPs banks; every step the bank index moves by
//                     -1, 0 or +1 (clamped), so consecutive steps train similar sizes; `random`
//                     subnets within `mflops_bound` of the bank's target learn from the labels
//                     and teach the smallest subnet (the mean of their predictions)
//
// What a step trains is a function of the run's seed and the global step only (the bank walk is
// replayed from step 0), so a resumed run trains what the uninterrupted one did.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "blocks/nas/space.h"

namespace blocklab {

struct SamplerSettings {
  std::string kind = "sandwich";     // sandwich | uniform | multi_arch | complexity_aware
  std::int64_t random = 2;           // random subnets a step (all but multi_arch)
  bool distill = true;               // sandwich: false trains every subnet on the labels
  std::int64_t sub_batches = 4;      // multi_arch
  std::vector<double> mflops_banks;  // complexity_aware: the banks' targets, increasing
  double mflops_bound = 0;           // complexity_aware: accepted distance to the target
};

struct SampledSubnet {
  Subnet subnet;
  bool teaches = false;    // its predictions are (part of) the soft target of the distilling ones
  bool distills = false;   // learns from the teachers' mean prediction instead of the labels
  std::int64_t part = -1;  // multi_arch: the sub-batch it trains on (-1: the whole batch)
};

class SubnetSampler {
 public:
  // `mflops` measures a subnet (complexity_aware); throws std::invalid_argument for settings that
  // cannot work (an unknown kind, no banks, a bank no subnet reaches).
  SubnetSampler(SearchSpace space, SamplerSettings settings, std::function<double(const Subnet&)> mflops);

  // The subnets of global step `step` (teachers first), from the run's seed.
  std::vector<SampledSubnet> at(std::uint64_t seed, std::int64_t step) const;
  // complexity_aware: the bank of global step `step` (the walk from bank 0 at step 0).
  std::int64_t bank_at(std::uint64_t seed, std::int64_t step) const;

  const SamplerSettings& settings() const { return settings_; }

 private:
  Subnet in_bank(std::int64_t bank, std::mt19937_64& rng) const;

  SearchSpace space_;
  SamplerSettings settings_;
  std::function<double(const Subnet&)> mflops_;
  mutable std::uint64_t walk_seed_ = 0;  // the bank walk so far (a cache: bank_at is a function)
  mutable std::int64_t walk_step_ = 0, walk_bank_ = 0;
};

// The generator of (seed, step, stream): independent streams for one step's draws.
std::mt19937_64 step_generator(std::uint64_t seed, std::int64_t step, std::uint32_t stream);

}  // namespace blocklab
