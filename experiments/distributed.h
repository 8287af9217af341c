// Data-parallel training over LibTorch's c10d process groups: Gloo on CPU, NCCL on CUDA (the
// engines PyTorch's DistributedDataParallel uses; no home-made all-reduce).
//
// Every rank builds the same model from the same seed, rank 0's parameters are broadcast, each
// rank trains on its rows of the same seeded global batch, and gradients are averaged in
// buckets before the optimizer step, so all ranks hold the same weights after every step. With
// equal shards the averaged gradient is the full batch's gradient: a run on N ranks equals the
// one-process run with the same global batch up to float rounding.
//
// Ranks come from `blocklab run --nproc N` (one machine: BLOCKLAB_RANK, BLOCKLAB_WORLD_SIZE,
// BLOCKLAB_RENDEZVOUS set by the launcher) or from Slurm (`srun`: SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID; the rendezvous from MASTER_ADDR/MASTER_PORT, else a file store on the shared
// output directory keyed by the job and step ids).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "registry/config_node.h"

namespace blocklab {

struct WorldSpec {
  int rank = 0;
  int size = 1;
  int local_size = 1;      // ranks on this machine (threads per rank = cores / local_size)
  std::string rendezvous;  // "file:<path>" or "tcp:<host>:<port>"
  std::string hostname;    // the address other machines reach this rank's Gloo device at ("" = own)
};

// The world this process belongs to, or nullopt for a one-process run. Throws ConfigError
// (naming the variable) when the environment is inconsistent.
std::optional<WorldSpec> world_from_environment(const std::string& output_root);

// The Slurm step this process runs in, as a file name: "<job>.<step>", plus ".r<k>" after the
// k-th requeue (Slurm reuses the job id and may reuse step ids). Names what the step's ranks
// share on the file system (the file-store rendezvous, `blocklab job`'s word to its ranks).
std::string slurm_step_name();

// Refuses a global batch that does not split into `ranks` equal shards (ConfigError naming
// trainer.batch_size; the hint offers a multiple, or `other_count`, e.g. "another --nproc").
void check_batch_splits(std::int64_t batch_size, const Source& where, int ranks, const std::string& other_count);
// The same for a resolved config's trainer.batch_size (nothing to check when it has none).
void check_batch_splits(const ConfigNode& config, int ranks, const std::string& other_count);

// Environment variables the --nproc launcher sets for each rank.
constexpr const char* kRankVariable = "BLOCKLAB_RANK";
constexpr const char* kWorldSizeVariable = "BLOCKLAB_WORLD_SIZE";
constexpr const char* kRendezvousVariable = "BLOCKLAB_RENDEZVOUS";

class DataParallel {
 public:
  // Joins the process group (blocks until every rank has joined, or times out).
  DataParallel(const WorldSpec& world, torch::Device device);
  ~DataParallel();
  int rank() const { return world_.rank; }
  int size() const { return world_.size; }
  const WorldSpec& world() const { return world_; }

  // Rank 0's parameters and buffers to every rank.
  void broadcast(torch::nn::Module& model);
  // Sums the gradients over ranks in flat buckets and divides by the world size. Parameters
  // without a gradient take no part (every rank must have the same ones: checked).
  void average_gradients(const std::vector<torch::Tensor>& parameters);
  // Element-wise sums over ranks of a few numbers (losses, flags, counts).
  std::vector<double> sum(const std::vector<double>& values);
  // Rank 0's `value` on every rank (a decision: start, resume, already done).
  std::string share(const std::string& key, const std::string& value_on_rank0);
  void barrier();

 private:
  struct Engine;
  WorldSpec world_;
  torch::Device device_;
  std::unique_ptr<Engine> engine_;
};

// The rows of a global batch of `rows` rows that `rank` of `world` trains on: equal
// contiguous shards (the global batch must divide evenly; validated before a run starts).
std::pair<std::int64_t, std::int64_t> shard_rows(std::int64_t rows, int rank, int world);

}  // namespace blocklab
