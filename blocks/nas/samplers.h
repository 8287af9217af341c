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
//   performance_aware ElasticViT's performance-aware sampling on top of complexity_aware (§3.3;
//                     microsoft/Moonlit ElasticViT `bank_arch_update`): every bank remembers
//                     the `memory_size` best subnets it has seen, scored by -CE on the batch
//                     they trained on; with probability `memory_rate` a random slot is drawn from
//                     the bank's memory instead of anew, so good subnets are trained more often
//
// What a step trains is a function of the run's seed and the global step only (the bank walk is
// replayed from step 0), and for performance_aware of the memory too, which a checkpoint keeps
// (SubnetMemory::text), so a resumed run trains what the uninterrupted one did.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "blocks/nas/space.h"

namespace blocklab {

struct SamplerSettings {
  std::string kind = "sandwich";     // sandwich | uniform | multi_arch | complexity_aware | performance_aware
  std::int64_t random = 2;           // random subnets a step (all but multi_arch)
  bool distill = true;               // sandwich: false trains every subnet on the labels
  std::int64_t sub_batches = 4;      // multi_arch
  std::vector<double> mflops_banks;  // complexity_aware: the banks' targets, increasing
  double mflops_bound = 0;           // complexity_aware: accepted distance to the target
  std::int64_t memory_size = 5;      // performance_aware: subnets a bank remembers
  double memory_rate = 0.2;          // performance_aware: probability a slot is drawn from memory
};

struct SampledSubnet {
  Subnet subnet;
  bool teaches = false;    // its predictions are (part of) the soft target of the distilling ones
  bool distills = false;   // learns from the teachers' mean prediction instead of the labels
  std::int64_t part = -1;  // multi_arch: the sub-batch it trains on (-1: the whole batch)
  std::int64_t bank = -1;  // complexity_aware, performance_aware: the FLOPs bank it was drawn for
  bool remembered = false;  // performance_aware: drawn from the bank's memory
};

// performance_aware: per FLOPs bank, the best subnets seen so far and their scores (-CE on the
// batch they were scored on; higher is better).
class SubnetMemory {
 public:
  struct Entry {
    Subnet subnet;
    double score = 0;
  };
  SubnetMemory(std::int64_t banks, std::int64_t capacity);

  // ElasticViT's update: a subnet joins a bank that is not full, else replaces the bank's worst
  // if it scores better; a subnet already remembered gets the new score.
  void offer(std::int64_t bank, const Subnet& subnet, double score);
  const std::vector<Entry>& bank(std::int64_t b) const { return banks_.at(static_cast<std::size_t>(b)); }
  std::vector<Entry>& bank(std::int64_t b) { return banks_.at(static_cast<std::size_t>(b)); }

  // A text form that restores exactly (scores to the last bit), for checkpoints; `from_text`
  // throws std::invalid_argument on text this did not write.
  std::string text() const;
  static SubnetMemory from_text(const std::string& text, const SearchSpace& space, std::int64_t banks,
                                std::int64_t capacity);

 private:
  std::int64_t capacity_;
  std::vector<std::vector<Entry>> banks_;
};

class SubnetSampler {
 public:
  // `mflops` measures a subnet (complexity_aware); throws std::invalid_argument for settings that
  // cannot work (an unknown kind, no banks, a bank no subnet reaches).
  SubnetSampler(SearchSpace space, SamplerSettings settings, std::function<double(const Subnet&)> mflops);

  // The subnets of global step `step` (teachers first), from the run's seed; performance_aware
  // draws from `memory` too (none: every slot anew).
  std::vector<SampledSubnet> at(std::uint64_t seed, std::int64_t step, const SubnetMemory* memory = nullptr) const;
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
