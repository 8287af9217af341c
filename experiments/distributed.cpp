#include "experiments/distributed.h"

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(BLOCKLAB_WITH_CUDA) && defined(USE_C10D_NCCL) && __has_include(<nccl.h>)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define BLOCKLAB_WITH_NCCL 1
#endif

#include <cstdlib>
#include <filesystem>
#include <map>

#include "registry/config_error.h"

namespace blocklab {

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// An environment variable that must hold a whole number in [lo, hi].
int env_int(const char* name, int lo, int hi) {
  const char* v = env(name);
  char* end = nullptr;
  const long n = v ? std::strtol(v, &end, 10) : 0;
  if (!v || *end != '\0' || n < lo || n > hi)
    throw ConfigError(std::string("environment variable ") + name + "=" + (v ? v : "(unset)") +
                          " is not a whole number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
                      Source{}, name, {"set by `blocklab run --nproc N` or by srun; do not set it by hand"});
  return static_cast<int>(n);
}

// The leading count of Slurm's tasks-per-node text ("2(x3),1" -> 2).
int leading_count(const char* text) {
  const int n = text ? std::atoi(text) : 0;
  return n > 0 ? n : 1;
}

std::optional<WorldSpec> world_from_launcher() {
  if (!env(kWorldSizeVariable)) return std::nullopt;
  WorldSpec w;
  w.size = env_int(kWorldSizeVariable, 1, 4096);
  w.rank = env_int(kRankVariable, 0, w.size - 1);
  w.local_size = w.size;  // --nproc starts every rank on this machine
  w.hostname = "127.0.0.1";
  const char* r = env(kRendezvousVariable);
  if (!r)
    throw ConfigError(std::string(kRendezvousVariable) + " is not set", Source{}, kRendezvousVariable,
                      {"start ranks with `blocklab run <experiment> --nproc N`"});
  w.rendezvous = r;
  return w;
}

// Inside an `srun` step of several tasks (the batch script itself is one task).
std::optional<WorldSpec> world_from_slurm(const std::string& output_root) {
  const char* tasks = env("SLURM_STEP_NUM_TASKS");
  if (!tasks || std::atoi(tasks) <= 1) return std::nullopt;
  WorldSpec w;
  w.size = env_int("SLURM_STEP_NUM_TASKS", 1, 1 << 20);
  w.rank = env_int("SLURM_PROCID", 0, w.size - 1);
  w.local_size = leading_count(env("SLURM_STEP_TASKS_PER_NODE"));
  if (env("MASTER_ADDR") && env("MASTER_PORT")) {
    w.rendezvous = std::string("tcp:") + env("MASTER_ADDR") + ":" + env("MASTER_PORT");
  } else {
    // A file store on the output directory, which a multi-node job must share anyway.
    w.rendezvous = "file:" + output_root + "/.rendezvous/slurm-" + slurm_step_name();
  }
  return w;
}

}  // namespace

std::string slurm_step_name() {
  const std::string job = env("SLURM_JOB_ID") ? env("SLURM_JOB_ID") : "job";
  const std::string step = env("SLURM_STEP_ID") ? env("SLURM_STEP_ID") : "0";
  const char* restart = env("SLURM_RESTART_COUNT");
  return job + "." + step + (restart && std::string(restart) != "0" ? std::string(".r") + restart : "");
}

void check_batch_splits(std::int64_t batch_size, const Source& where, int ranks, const std::string& other_count) {
  if (ranks > 0 && batch_size % ranks != 0)
    throw ConfigError("trainer.batch_size " + std::to_string(batch_size) + " does not split into " +
                          std::to_string(ranks) + " equal shards, one per data-parallel rank",
                      where, "trainer.batch_size",
                      {"use a multiple of " + std::to_string(ranks) + ", or " + other_count});
}

void check_batch_splits(const ConfigNode& config, int ranks, const std::string& other_count) {
  const ConfigNode* trainer = config.find("trainer");
  const ConfigNode* batch = trainer && trainer->is_map() ? trainer->find("batch_size") : nullptr;
  if (batch && batch->is_int()) check_batch_splits(batch->as_int(), batch->source(), ranks, other_count);
}

std::optional<WorldSpec> world_from_environment(const std::string& output_root) {
  if (auto w = world_from_launcher()) return w;
  return world_from_slurm(output_root);
}

std::pair<std::int64_t, std::int64_t> shard_rows(std::int64_t rows, int rank, int world) {
  const std::int64_t each = rows / world;
  return {each * rank, each * (rank + 1)};
}

// ---- The process group ---------------------------------------------------------------------

struct DataParallel::Engine {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};

namespace {

// Long enough for rank 0's evaluation, during which the other ranks wait in their next collective.
constexpr std::chrono::minutes kCollectiveTimeout{120};

c10::intrusive_ptr<c10d::Store> open_store(const WorldSpec& w) {
  if (w.rendezvous.rfind("file:", 0) == 0) {
    const std::string path = w.rendezvous.substr(5);
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    return c10::make_intrusive<c10d::FileStore>(path, w.size);
  }
  const std::size_t colon = w.rendezvous.rfind(':');
  if (w.rendezvous.rfind("tcp:", 0) != 0 || colon <= 4)
    throw ConfigError("rendezvous '" + w.rendezvous + "' is neither file:<path> nor tcp:<host>:<port>", Source{},
                      kRendezvousVariable, {});
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(std::stoi(w.rendezvous.substr(colon + 1)));
  o.isServer = w.rank == 0;
  o.numWorkers = static_cast<std::size_t>(w.size);
  return c10::make_intrusive<c10d::TCPStore>(w.rendezvous.substr(4, colon - 4), o);
}

std::shared_ptr<::gloo::transport::Device> gloo_device(const WorldSpec& w) {
  if (const char* ifname = env("GLOO_SOCKET_IFNAME")) return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  if (!w.hostname.empty()) return c10d::ProcessGroupGloo::createDeviceForHostname(w.hostname);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

c10::intrusive_ptr<c10d::Backend> make_backend(const WorldSpec& w, const c10::intrusive_ptr<c10d::Store>& store,
                                               torch::Device device) {
#ifdef BLOCKLAB_WITH_NCCL
  if (device.is_cuda()) return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, w.rank, w.size);
#else
  if (device.is_cuda())
    throw ConfigError("data-parallel training on CUDA needs NCCL, and this build has none", Source{}, "device",
                      {"rebuild where nccl.h is found, or use device=cpu (Gloo)"});
#endif
  auto options = c10d::ProcessGroupGloo::Options::create();
  options->timeout = kCollectiveTimeout;
  options->devices.push_back(gloo_device(w));
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, w.rank, w.size, options);
}

}  // namespace

DataParallel::DataParallel(const WorldSpec& world, torch::Device device)
    : world_(world), device_(device), engine_(std::make_unique<Engine>()) {
  engine_->store = open_store(world_);
  engine_->backend = make_backend(world_, engine_->store, device_);
}

DataParallel::~DataParallel() = default;

void DataParallel::broadcast(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : model.parameters()) tensors.push_back(p);
  for (const auto& b : model.buffers()) tensors.push_back(b);
  for (auto& t : tensors) {
    std::vector<torch::Tensor> one{t};
    engine_->backend->broadcast(one)->wait();
  }
}

void DataParallel::average_gradients(const std::vector<torch::Tensor>& parameters) {
  // Gradients grouped by dtype into flat buckets of about 16 MiB: one all-reduce per bucket.
  constexpr std::int64_t kBucketBytes = 16 << 20;
  std::map<c10::ScalarType, std::vector<torch::Tensor>> by_type;
  double elements = 0;
  for (const auto& p : parameters)
    if (p.grad().defined()) by_type[p.grad().scalar_type()].push_back(p.grad()), elements += p.numel();
  const std::vector<double> total = sum({elements});
  if (total[0] != elements * size())
    throw std::runtime_error("data-parallel ranks computed gradients for different parameters (" +
                             std::to_string(elements) + " elements here, " + std::to_string(total[0]) +
                             " over all ranks); a model or task whose path depends on the rank's data cannot "
                             "train data-parallel");
  for (auto& [type, grads] : by_type) {
    for (std::size_t begin = 0; begin < grads.size();) {
      std::size_t end = begin;
      std::int64_t bytes = 0;
      std::vector<torch::Tensor> flat_parts;
      while (end < grads.size() && (end == begin || bytes + grads[end].nbytes() <= kBucketBytes)) {
        bytes += static_cast<std::int64_t>(grads[end].nbytes());
        flat_parts.push_back(grads[end].reshape(-1));
        ++end;
      }
      std::vector<torch::Tensor> bucket{torch::cat(flat_parts)};
      engine_->backend->allreduce(bucket)->wait();
      bucket[0].div_(size());
      std::int64_t offset = 0;
      for (std::size_t i = begin; i < end; ++i) {
        const std::int64_t n = grads[i].numel();
        grads[i].copy_(bucket[0].narrow(0, offset, n).view_as(grads[i]));
        offset += n;
      }
      begin = end;
    }
  }
}

std::vector<double> DataParallel::sum(const std::vector<double>& values) {
  torch::Tensor t = torch::tensor(values, torch::kFloat64).to(device_);
  std::vector<torch::Tensor> one{t};
  engine_->backend->allreduce(one)->wait();
  const torch::Tensor back = one[0].to(torch::kCPU).contiguous();
  return {back.data_ptr<double>(), back.data_ptr<double>() + back.numel()};
}

std::string DataParallel::share(const std::string& key, const std::string& value_on_rank0) {
  const std::string k = "blocklab/" + key;
  if (rank() == 0) {
    engine_->store->set(k, std::vector<std::uint8_t>(value_on_rank0.begin(), value_on_rank0.end()));
    return value_on_rank0;
  }
  const std::vector<std::uint8_t> v = engine_->store->get(k);
  return std::string(v.begin(), v.end());
}

void DataParallel::barrier() { engine_->backend->barrier()->wait(); }

}  // namespace blocklab
