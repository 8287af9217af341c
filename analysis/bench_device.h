// --device and --precision for the bench commands (bench vit, bench masks, bench mixers): where the
// blocks run, and whether their forward runs under bf16 autocast (experiments/training/precision.h).
#pragma once

#include <torch/torch.h>

#include <string>
#if defined(BLOCKLAB_WITH_CUDA) && __has_include(<cuda_runtime_api.h>)
#include <cuda_runtime_api.h>
#define BLOCKLAB_BENCH_DEVICE_NAME 1
#endif

#include "experiments/training/precision.h"
#include "registry/cli_options.h"

namespace blocklab {

constexpr const char* kBenchDeviceHelp = "cpu or cuda (default cpu; cuda needs a visible CUDA device)";
constexpr const char* kBenchPrecisionHelp = "fp32 or bf16 (forward under bfloat16 autocast, as trainer.precision)";

// --device: cpu (default) or cuda; cuda without a visible device is a usage error that says so.
inline torch::Device bench_device(const CommandLine& cl, const std::string& command) {
  const std::string name = choice_option(cl, command, "device", {"cpu", "cuda"}, "cpu");
  if (name == "cuda" && !torch::cuda::is_available())
    throw UsageError("blocklab " + command +
                     ": --device cuda, but no CUDA device is available here (torch::cuda::is_available() is false); "
                     "use --device cpu");
  return name == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

// --precision: fp32 (default) or bf16.
inline Precision bench_precision(const CommandLine& cl, const std::string& command) {
  return parse_precision(choice_option(cl, command, "precision", {"fp32", "bf16"}, "fp32"));
}

// The name of the current CUDA device ("NVIDIA H100 80GB HBM3"), or "cuda" when this build cannot ask.
inline std::string cuda_device_name() {
#ifdef BLOCKLAB_BENCH_DEVICE_NAME
  int device = 0;
  cudaDeviceProp props{};
  if (cudaGetDevice(&device) == cudaSuccess && cudaGetDeviceProperties(&props, device) == cudaSuccess)
    return props.name;
#endif
  return "cuda";
}

// CUDA runs asynchronously: a host clock read after this sees the work queued before it done.
inline void bench_sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

}  // namespace blocklab
