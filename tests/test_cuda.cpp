// [cuda]: the CUDA path against its CPU reference, and bf16 autocast (experiments/training/precision.h).
//
//   every mixer     every registered token mixer, and every mask inside attention/softmax, built twice
//                   from its registry example with the same seed (the same weights), once on the CPU and
//                   once on CUDA: the outputs, the input's gradient and every parameter's gradient agree
//                   in float64 (relative error <= 1e-9) and float32 (<= 2e-3, TF32 off), not causal and,
//                   where the mixer can be, causal. A mixer that draws random numbers in its eval-mode
//                   forward (the CPU and CUDA generators differ) is checked for shape and finiteness.
//   bf16            attention/softmax (SDPA's flash kernel on CUDA), with an additive mask (SDPA with a
//                   float mask) and linear/elu under bf16 autocast equal their float32 CPU outputs
//                   within 3e-2 (bfloat16 keeps 8 bits of mantissa).
//   training        a tiny ViT trained for 30 AdamW steps on CUDA under bf16 autocast: every loss and
//                   gradient finite, the loss float32, the weights float32, the loss going down.
//   autocast        AutocastScope on the CPU (runs everywhere): bf16 inside, float32 outside, nesting.
//
// Without a CUDA device each CUDA case passes with the line "skipped: no CUDA device
// (torch::cuda::is_available() is false)" (a Catch2 WARN: printed by every reporter run).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "blocks/interfaces.h"
#include "blocks/masks/mask.h"
#include "conformance/checks.h"
#include "experiments/optim/optimizer.h"
#include "experiments/training/precision.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

constexpr std::int64_t kCudaBatch = 2, kCudaDim = 32, kCudaLongest = 73;

bool cuda_or_skip() {
  if (torch::cuda::is_available()) return true;
  WARN("skipped: no CUDA device (torch::cuda::is_available() is false)");
  return false;
}

// float32 on CUDA without TF32 (cuDNN convolutions use it by default), restored afterwards.
struct CudaNoTf32 {
  bool cudnn = at::globalContext().allowTF32CuDNN();
  bool cublas = at::globalContext().allowTF32CuBLAS();
  CudaNoTf32() {
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
  }
  ~CudaNoTf32() {
    at::globalContext().setAllowTF32CuDNN(cudnn);
    at::globalContext().setAllowTF32CuBLAS(cublas);
  }
};

// ‖got − want‖ / (‖want‖ + atol·√numel), both in float64 on the CPU; NaN when either is not finite.
double cuda_rel_error(const torch::Tensor& got, const torch::Tensor& want, double atol) {
  const auto g = got.detach().to(torch::kCPU, torch::kFloat64), w = want.detach().to(torch::kCPU, torch::kFloat64);
  if (g.sizes() != w.sizes()) return std::numeric_limits<double>::infinity();
  if (!conformance::all_finite(g) || !conformance::all_finite(w)) return std::numeric_limits<double>::quiet_NaN();
  const double scale =
      w.norm().item<double>() + atol * std::sqrt(static_cast<double>(std::max<std::int64_t>(1, w.numel())));
  return (g - w).norm().item<double>() / scale;
}

// 17 tokens: a class token and a 4x4 grid, as the conformance tests' main layout.
MixerContext cuda_context(bool causal) {
  MixerContext ctx;
  ctx.prefix_tokens = 1;
  ctx.grid_height = ctx.grid_width = 4;
  ctx.causal = causal;
  return ctx;
}
constexpr std::int64_t kCudaTokens = 17;

TokenMixer cuda_build(const ConfigNode& config, torch::Dtype dtype, const torch::Device& device) {
  torch::manual_seed(21);
  TokenMixer m = mixer_registry().create(config, MixerArgs{kCudaDim, kCudaLongest});
  m->to(device, dtype);
  m->eval();
  return m;
}

// The output, the input's gradient and each parameter's gradient of one forward + backward.
struct CudaRun {
  torch::Tensor output, input_grad;
  std::map<std::string, torch::Tensor> grads;
};

CudaRun cuda_run(TokenMixer& m, const torch::Device& device, const torch::Tensor& x_cpu,
                 const torch::Tensor& direction_cpu, bool causal, Precision precision = Precision::fp32) {
  const auto x = x_cpu.to(device).requires_grad_(true);
  torch::Tensor y;
  {
    AutocastScope autocast(device, precision);
    y = m->forward(x, cuda_context(causal));
  }
  // A random projection of the output (a plain sum is blind after a LayerNorm).
  (y.to(x.scalar_type()) * direction_cpu.to(device, x.scalar_type())).sum().backward();
  CudaRun r{y.detach(), x.grad(), {}};
  for (const auto& p : m->named_parameters())
    if (p.value().grad().defined()) r.grads[p.key()] = p.value().grad();
  return r;
}

// Whether the mixer's eval-mode forward draws random numbers: two CPU runs under different seeds.
bool cuda_draws_random(const ConfigNode& config, const torch::Tensor& x) {
  TokenMixer m = cuda_build(config, torch::kFloat64, torch::kCPU);
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  const auto a = m->forward(x, cuda_context(false));
  torch::manual_seed(2);
  const auto b = m->forward(x, cuda_context(false));
  return !torch::equal(a, b);
}

void cuda_compare(const ConfigNode& config, torch::Dtype dtype, bool causal, double tol) {
  INFO("dtype " << dtype << ", causal " << causal << ", tolerance " << tol);
  torch::manual_seed(5);
  const auto x = torch::randn({kCudaBatch, kCudaTokens, kCudaDim}, torch::kFloat64).to(dtype);
  const auto direction = torch::randn({kCudaBatch, kCudaTokens, kCudaDim}, torch::kFloat64).to(dtype);
  TokenMixer cpu = cuda_build(config, dtype, torch::kCPU), gpu = cuda_build(config, dtype, torch::kCUDA);
  const CudaRun want = cuda_run(cpu, torch::kCPU, x, direction, causal),
                got = cuda_run(gpu, torch::kCUDA, x, direction, causal);
  const double atol = dtype == torch::kFloat64 ? 1e-12 : 1e-6;
  CHECK(cuda_rel_error(got.output, want.output, atol) <= tol);
  CHECK(cuda_rel_error(got.input_grad, want.input_grad, atol) <= tol);
  CHECK(got.grads.size() == want.grads.size());
  for (const auto& [name, grad] : want.grads) {
    INFO("gradient of parameter " << name);
    REQUIRE(got.grads.count(name) == 1);
    CHECK(cuda_rel_error(got.grads.at(name), grad, atol) <= tol);
  }
}

void cuda_check_mixer(const ConfigNode& config) {
  const CudaNoTf32 no_tf32;
  const bool causal_capable = cuda_build(config, torch::kFloat64, torch::kCPU)->capabilities().causal;
  torch::manual_seed(3);
  if (cuda_draws_random(config, torch::randn({kCudaBatch, kCudaTokens, kCudaDim}, torch::kFloat64))) {
    WARN(
        "draws random numbers in its eval-mode forward (CPU and CUDA generators differ): "
        "checked on CUDA for shape and finiteness only");
    TokenMixer m = cuda_build(config, torch::kFloat32, torch::kCUDA);
    const auto y = m->forward(torch::randn({kCudaBatch, kCudaTokens, kCudaDim}, torch::kCUDA), cuda_context(false));
    CHECK(y.sizes() == torch::IntArrayRef({kCudaBatch, kCudaTokens, kCudaDim}));
    CHECK(conformance::all_finite(y));
    return;
  }
  for (bool causal : {false, true}) {
    if (causal && !causal_capable) continue;
    cuda_compare(config, torch::kFloat64, causal, 1e-9);
    cuda_compare(config, torch::kFloat32, causal, 2e-3);
  }
}

ConfigNode cuda_config(const std::string& yaml) { return parse_yaml(yaml, "test_cuda"); }

}  // namespace

TEST_CASE("cuda: every registered token mixer on CUDA equals its CPU run", "[cuda]") {
  if (!cuda_or_skip()) return;
  for (const EntryInfo* e : mixer_registry().list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("mixer " << key) { cuda_check_mixer(conformance::example_config(*e)); }
  }
}

TEST_CASE("cuda: every attention mask on CUDA equals its CPU run", "[cuda]") {
  if (!cuda_or_skip()) return;
  for (const EntryInfo* e : mask_registry().list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("mask " << key) {
      ConfigNode config = cuda_config("{type: attention/softmax, heads: 2}");
      config.set("mask", conformance::example_config(*e));
      cuda_check_mixer(config);
    }
  }
}

TEST_CASE("cuda: mixers under bf16 autocast stay near their float32 CPU output", "[cuda]") {
  if (!cuda_or_skip()) return;
  for (const char* yaml : {"{type: attention/softmax, heads: 4}",
                           "{type: attention/softmax, heads: 4, mask: {type: mask/alibi}}", "{type: linear/elu}"}) {
    DYNAMIC_SECTION(yaml) {
      const ConfigNode config = cuda_config(yaml);
      torch::manual_seed(9);
      const auto x = torch::randn({kCudaBatch, kCudaTokens, kCudaDim});
      const auto direction = torch::randn({kCudaBatch, kCudaTokens, kCudaDim});
      for (bool causal : {false, true}) {
        INFO("causal " << causal);
        TokenMixer cpu = cuda_build(config, torch::kFloat32, torch::kCPU);
        TokenMixer gpu = cuda_build(config, torch::kFloat32, torch::kCUDA);
        const CudaRun want = cuda_run(cpu, torch::kCPU, x, direction, causal);
        const CudaRun got = cuda_run(gpu, torch::kCUDA, x, direction, causal, Precision::bf16);
        CHECK(got.output.scalar_type() == torch::kBFloat16);
        CHECK(cuda_rel_error(got.output, want.output, 1e-6) <= 3e-2);
        CHECK(cuda_rel_error(got.input_grad, want.input_grad, 1e-6) <= 3e-2);
        for (const auto& [name, grad] : want.grads) {
          INFO("gradient of parameter " << name);
          REQUIRE(got.grads.count(name) == 1);
          CHECK(got.grads.at(name).scalar_type() == torch::kFloat);  // the weights stay float32
          CHECK(cuda_rel_error(got.grads.at(name), grad, 1e-6) <= 5e-2);
        }
      }
    }
  }
}

TEST_CASE("cuda: a tiny ViT trains under bf16 autocast: finite, float32 weights, the loss goes down", "[cuda]") {
  if (!cuda_or_skip()) return;
  const torch::Device device(torch::kCUDA);
  torch::manual_seed(0);
  auto backbone = backbone_registry().create(
      cuda_config("{type: vit, patch: 4, dim: 64, depth: 2, pool: cls, pos: learned, drop_path: 0.0, "
                  "mixer: {type: attention/softmax, heads: 4}, channel: {type: mlp, ratio: 2}}"),
      BackboneArgs{1, 28, 28});
  auto head = head_registry().create(cuda_config("{type: linear}"), HeadArgs{backbone->feature_dim(), 10});
  backbone->to(device);
  head->to(device);
  OptimizerArgs args;
  args.lr = 3e-3;
  for (const auto& p : backbone->parameters()) args.decay.push_back(p);
  for (const auto& p : head->parameters()) args.decay.push_back(p);
  auto opt = optimizer_registry().create(cuda_config("{type: adamw, weight_decay: 0.05}"), args);
  // One fixed batch: the model can memorise it, so the loss must fall.
  const auto images = torch::randn({64, 1, 28, 28}).to(device);
  const auto labels = torch::randint(0, 10, {64}, torch::kLong).to(device);
  std::vector<double> losses;
  for (int step = 0; step < 30; ++step) {
    opt->zero_grad();
    torch::Tensor loss;
    {
      AutocastScope autocast(device, Precision::bf16);
      REQUIRE(autocast.active());
      loss = torch::nn::functional::cross_entropy(head->forward(backbone->forward(images)), labels);
    }
    CHECK(loss.scalar_type() == torch::kFloat);  // cross-entropy runs in float32 under autocast
    loss.backward();
    for (const auto& p : args.decay) {
      CHECK(p.scalar_type() == torch::kFloat);
      if (p.grad().defined()) REQUIRE(conformance::all_finite(p.grad()));
    }
    opt->step();
    losses.push_back(loss.item<double>());
    REQUIRE(std::isfinite(losses.back()));
  }
  INFO("first loss " << losses.front() << ", last " << losses.back());
  CHECK(*std::min_element(losses.end() - 5, losses.end()) < 0.8 * losses.front());
}

TEST_CASE("cuda: AutocastScope on the CPU: bf16 inside, float32 outside, scopes nest", "[cuda]") {
  const auto a = torch::randn({8, 8}), b = torch::randn({8, 8});
  CHECK(torch::matmul(a, b).scalar_type() == torch::kFloat);
  {
    AutocastScope off(torch::kCPU, Precision::fp32);
    CHECK_FALSE(off.active());
    CHECK(torch::matmul(a, b).scalar_type() == torch::kFloat);
  }
  {
    AutocastScope outer(torch::kCPU, Precision::bf16);
    CHECK(outer.active());
    CHECK(torch::matmul(a, b).scalar_type() == torch::kBFloat16);
    {
      AutocastScope inner(torch::kCPU, Precision::bf16);
      CHECK(torch::matmul(a, b).scalar_type() == torch::kBFloat16);
    }
    CHECK(torch::matmul(a, b).scalar_type() == torch::kBFloat16);  // the inner scope restored "on"
  }
  CHECK(torch::matmul(a, b).scalar_type() == torch::kFloat);
  CHECK(parse_precision("bf16") == Precision::bf16);
  CHECK(std::string(precision_name(parse_precision("fp32"))) == "fp32");
  CHECK_THROWS_WITH(parse_precision("fp16"), Catch::Contains("neither fp32 nor bf16"));
}

}  // namespace BLOCKLAB_TEST_FILE
