// blocklab bench vit: training throughput of the ViT in blocklab against the same model in
// PyTorch Python (analysis/bench/vit_peer.py) on the same torch release, side by side.
// blocklab bench masks: training throughput of the default ViT (experiments/conf/model/
// vit_small.yaml) with plain fused softmax attention and with each additive mask (biases on the
// fused path), as ratios to the plain one; the reference path is shown for comparison.
// Rounds alternate between the runs so that machine noise hits them alike; the median of the
// rounds is reported with the ratio.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "analysis/bench_device.h"
#include "analysis/bench_mixers.h"
#include "analysis/bench_peer.h"
#include "analysis/bench_scan.h"
#include "analysis/bench_timing.h"
#include "blocks/interfaces.h"
#include "experiments/json_io.h"
#include "experiments/optim/optimizer.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/registry.h"
#include "registry/yaml_io.h"

namespace blocklab {
namespace {

struct BenchShape {
  int dim = 64, depth = 4, patch = 4, heads = 4, batch = 128, steps = 30, warmup = 5, threads = 2;
  double mlp_ratio = 2.0;
  bool breakdown = false;
  std::string pool = "cls";
  std::string mixer_extra;  // more options of the attention/softmax mixer, e.g. ", mask: {type: mask/alibi}"
  torch::Device device = torch::kCPU;
  Precision precision = Precision::fp32;
};

class BenchModel : public torch::nn::Module {
 public:
  BenchModel(Backbone b, Head h) : backbone(register_module("backbone", b)), head(register_module("head", h)) {}
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(backbone->forward(x)); }
  Backbone backbone;
  Head head;
};

std::pair<double, std::int64_t> blocklab_images_per_second(const BenchShape& s) {
  at::set_num_threads(s.threads);
  torch::manual_seed(0);
  std::ostringstream cfg;
  cfg << "{type: vit, patch: " << s.patch << ", dim: " << s.dim << ", depth: " << s.depth << ", pool: " << s.pool
      << ", pos: learned, drop_path: 0.0, mixer: {type: attention/softmax, heads: " << s.heads << s.mixer_extra
      << "}, channel: {type: mlp, ratio: " << format_double(s.mlp_ratio) << "}}";
  auto backbone = backbone_registry().create(parse_yaml(cfg.str(), "bench"), BackboneArgs{1, 28, 28});
  auto head = head_registry().create(parse_yaml("{type: linear}", "bench"), HeadArgs{backbone->feature_dim(), 10});
  auto model = std::make_shared<BenchModel>(backbone, head);
  model->to(s.device);
  std::int64_t params = 0;
  OptimizerArgs args;
  args.lr = 1e-3;
  for (const auto& p : model->parameters()) args.decay.push_back(p), params += p.numel();
  auto opt = optimizer_registry().create(parse_yaml("{type: adamw, weight_decay: 0.05}", "bench"), args);
  const torch::Tensor images = torch::randn({s.batch, 1, 28, 28}).to(s.device);
  const torch::Tensor labels = torch::randint(0, 10, {s.batch}, torch::kLong).to(s.device);
  double forward_s = 0, backward_s = 0, optimizer_s = 0;
  auto since = [&](std::chrono::steady_clock::time_point t) {
    if (s.breakdown) bench_sync(s.device);  // CUDA: the phase's kernels finished
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  auto step = [&] {
    auto t = std::chrono::steady_clock::now();
    opt->zero_grad();
    torch::Tensor loss;
    {
      AutocastScope autocast(s.device, s.precision);
      loss = torch::nn::functional::cross_entropy(model->forward(images), labels);
    }
    forward_s += since(t), t = std::chrono::steady_clock::now();
    loss.backward();
    backward_s += since(t), t = std::chrono::steady_clock::now();
    opt->step();
    optimizer_s += since(t);
    return loss.item<double>();
  };
  for (int i = 0; i < s.warmup; ++i) step();
  forward_s = backward_s = optimizer_s = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < s.steps; ++i) step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s.breakdown)
    std::printf("  blocklab per step: forward %.2f ms, backward %.2f ms, optimizer %.2f ms\n",
                1e3 * forward_s / s.steps, 1e3 * backward_s / s.steps, 1e3 * optimizer_s / s.steps);
  return {s.batch * s.steps / seconds, params};
}

std::pair<double, std::int64_t> python_images_per_second(const BenchShape& s) {
  std::ostringstream args;
  args << "--dim " << s.dim << " --depth " << s.depth << " --patch " << s.patch << " --heads " << s.heads << " --batch "
       << s.batch << " --steps " << s.steps << " --warmup " << s.warmup << " --threads " << s.threads << " --mlp-ratio "
       << s.mlp_ratio << " --device " << s.device.str() << " --precision " << precision_name(s.precision);
  const Json result = run_python_peer("vit_peer.py", args.str());
  if (!result.contains("images_per_s") || !result["images_per_s"].is_number() || !result.contains("parameters") ||
      !result["parameters"].is_number())
    throw std::runtime_error("unexpected output of the Python peer vit_peer.py: " + result.dump());
  return {result["images_per_s"].get<double>(), result["parameters"].get<std::int64_t>()};
}

// ", on cuda (NVIDIA H100 ...), bf16 autocast" for the header lines; "" on CPU in fp32.
std::string device_note(const BenchShape& s) {
  std::string note;
  if (s.device.is_cuda()) note += ", on cuda (" + cuda_device_name() + ")";
  if (s.precision == Precision::bf16) note += ", bf16 autocast";
  return note;
}

// The default ViT with plain fused softmax attention and with each additive mask, side by side.
int bench_masks(BenchShape s, int rounds) {
  s.pool = "mean";  // experiments/conf/model/vit_small.yaml: 7x7 patches of 4x4 pixels, mean pooling
  const std::vector<std::pair<std::string, std::string>> variants = {
      {"softmax (fused)", ""},
      {"softmax (reference path)", ", fused: false"},
      {"mask/alibi", ", mask: {type: mask/alibi}"},
      {"mask/rel-pos-2d", ", mask: {type: mask/rel-pos-2d}"},
      {"mask/retnet-decay", ", mask: {type: mask/retnet-decay}"},
  };
  std::vector<std::vector<double>> rates(variants.size());
  for (int r = 0; r < rounds; ++r)
    for (std::size_t i = 0; i < variants.size(); ++i) {
      s.mixer_extra = variants[i].second;
      rates[i].push_back(blocklab_images_per_second(s).first);
    }
  std::printf("vit dim %d depth %d patch %d heads %d mlp %.2g pool mean batch %d threads %d (torch %s)%s\n", s.dim,
              s.depth, s.patch, s.heads, s.mlp_ratio, s.batch, s.threads, BLOCKLAB_TORCH_VERSION,
              device_note(s).c_str());
  const double base = median(rates[0]);
  std::printf("%-26s %12s %8s   (training images/s, median of %d rounds)\n", "attention", "images/s", "ratio", rounds);
  for (std::size_t i = 0; i < variants.size(); ++i)
    std::printf("%-26s %12.1f %7.2fx\n", variants[i].first.c_str(), median(rates[i]), median(rates[i]) / base);
  return 0;
}

int bench_command(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "mixers") return bench_mixers_command({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "scan") return bench_scan_command({args.begin() + 1, args.end()});
  po::options_description opts("Options");
  BenchShape s;
  // An integer option: its name, help, where it goes (holding the default) and its valid range.
  struct IntOption {
    const char* name;
    const char* help;
    int* value;
    int lo, hi;
  };
  int rounds = 3;
  const std::vector<IntOption> ints = {
      {"dim", "embedding width", &s.dim, 1, 4096},
      {"depth", "blocks", &s.depth, 1, 64},
      {"patch", "patch size (divides 28)", &s.patch, 1, 28},
      {"heads", "attention heads (divide --dim)", &s.heads, 1, 256},
      {"batch", "images per step", &s.batch, 1, 65536},
      {"steps", "timed steps per round", &s.steps, 1, 100000},
      {"warmup", "untimed steps per round", &s.warmup, 0, 100000},
      {"threads", "CPU threads (both sides; 2 = the experiments' default)", &s.threads, 1, 256},
      {"rounds", "alternating rounds; the median is reported", &rounds, 1, 1000}};
  opts.add_options()("help,h", "show this help");
  for (const IntOption& o : ints)
    opts.add_options()(o.name, po::value<std::string>(),
                       (std::string(o.help) + ", " + std::to_string(o.lo) + " to " + std::to_string(o.hi) +
                        " (default " + std::to_string(*o.value) + ")")
                           .c_str());
  opts.add_options()("mlp-ratio", po::value(&s.mlp_ratio)->default_value(2.0), "MLP hidden ratio, above 0 up to 16")(
      "breakdown", po::bool_switch(&s.breakdown), "also time forward, backward and optimizer separately")(
      "device", po::value<std::string>(), kBenchDeviceHelp)("precision", po::value<std::string>(), kBenchPrecisionHelp);
  const auto cl = parse_command_line("bench", args, opts);
  if (cl.vars.count("help") || cl.positional.empty()) {
    std::cout << command_help("bench", "vit [options]",
                              "vit: trains the ViT for a few steps in blocklab and in PyTorch Python (same torch, same "
                              "model, optimizer, batch and threads) and prints images/s and the ratio. masks: trains "
                              "the default ViT (pool mean) with plain fused softmax attention and with each additive "
                              "mask, and prints images/s and the ratios to the plain one. mixers: token mixers "
                              "against the sequence length next to softmax (blocklab bench mixers --help). scan: "
                              "the selective scan, SSD and the long convolution alone, fast form against its "
                              "reference loop (blocklab bench scan --help).",
                              opts,
                              "Examples:\n  blocklab bench vit\n  blocklab bench vit --dim 32 --depth 2 --batch 32\n"
                              "  blocklab bench vit --device cuda --precision bf16\n"
                              "  blocklab bench masks --rounds 5\n  blocklab bench mixers\n  blocklab bench scan\n");
    return cl.vars.count("help") ? 0 : 2;
  }
  if (cl.positional.size() > 1)
    throw UsageError("blocklab bench: name one benchmark (vit or masks), not " + std::to_string(cl.positional.size()));
  if (cl.positional[0] != "vit" && cl.positional[0] != "masks")
    throw UsageError("blocklab bench: unknown benchmark '" + cl.positional[0] + "' (known: vit, masks, mixers, scan)");
  for (const IntOption& o : ints)
    *o.value = static_cast<int>(integer_option(cl, "bench", o.name, o.lo, o.hi, *o.value));
  if (!(s.mlp_ratio > 0 && s.mlp_ratio <= 16))
    throw UsageError("blocklab bench: --mlp-ratio takes a number above 0 up to 16, not " + std::to_string(s.mlp_ratio));
  if (28 % s.patch != 0)
    throw UsageError("blocklab bench: --patch " + std::to_string(s.patch) +
                     " does not divide the 28-pixel images (1, 2, 4, 7, 14 or 28)");
  if (s.dim % s.heads != 0)
    throw UsageError("blocklab bench: --heads " + std::to_string(s.heads) + " does not divide --dim " +
                     std::to_string(s.dim));
  s.device = bench_device(cl, "bench");
  s.precision = bench_precision(cl, "bench");
  if (cl.positional[0] == "masks") return bench_masks(s, rounds);
  std::vector<double> ours, peer;
  std::int64_t our_params = 0, peer_params = 0;
  for (int r = 0; r < rounds; ++r) {
    auto [a, pa] = blocklab_images_per_second(s);
    auto [b, pb] = python_images_per_second(s);
    ours.push_back(a), peer.push_back(b);
    our_params = pa, peer_params = pb;
    std::printf("round %d: blocklab %.1f images/s, pytorch-python %.1f images/s\n", r + 1, a, b);
  }
  const double a = median(ours), b = median(peer);
  std::printf("vit dim %d depth %d patch %d heads %d mlp %.2g batch %d threads %d (torch %s)%s\n", s.dim, s.depth,
              s.patch, s.heads, s.mlp_ratio, s.batch, s.threads, BLOCKLAB_TORCH_VERSION, device_note(s).c_str());
  std::printf("parameters: blocklab %lld, pytorch-python %lld%s\n", static_cast<long long>(our_params),
              static_cast<long long>(peer_params), our_params == peer_params ? "" : "  (MISMATCH: not the same model)");
  std::printf("images/s (median of %d): blocklab %.1f, pytorch-python %.1f, ratio %.2fx\n", rounds, a, b, a / b);
  return our_params == peer_params ? 0 : 1;
}

const bool BLOCKLAB_UNIQUE(registered_) = CommandRegistry::instance().add(
    {"bench",
     "benchmarks run side by side (vit vs PyTorch Python; the ViT with each additive mask; mixers vs N; scans vs N)",
     bench_command, 90});

}  // namespace
}  // namespace blocklab
