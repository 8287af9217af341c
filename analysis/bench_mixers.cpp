// blocklab bench mixers: forward + backward time, tokens/s and the memory autograd keeps of
// registered token mixers against the sequence length N, next to attention/softmax (fused:
// small_attention or PyTorch's SDPA), printed as a table with ratios to softmax, the scaling
// of each mixer from N/4 to N (linear: <= 4.6x per 4x tokens), the crossover with softmax, and a
// log-log plot. Each round runs every mixer at every length, so that machine noise and drift
// hit them alike; the median over rounds is reported, and the scaling is the median over rounds
// of the ratio within one round (with its range), so that a slow drift of the machine cancels.
// One measurement repeats the call for --min-time seconds and takes the mean (the timing
// discipline of analysis/bench_timing.h).
//
// Memory: the bytes held by the allocator after the forward (what autograd keeps for the
// backward: activations and saved tensors), measured with glibc's mallinfo2 (on CUDA: the
// caching allocator's allocated bytes) around the forward; the inputs and parameters are
// allocated before and not counted.
//
// --device cuda runs the mixers on the GPU (each call ends with a synchronisation); --peer adds
// attention in PyTorch Python on the same device and torch (analysis/bench/attention_peer.py):
// scaled_dot_product_attention plain and with ALiBi as a float mask, and FlexAttention with
// ALiBi as a score_mod (CUDA), timed the same way, as rows next to blocklab's mixers.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <sstream>

#include "analysis/bench_device.h"
#include "analysis/bench_mixers.h"
#include "analysis/bench_peer.h"
#include "analysis/bench_timing.h"
#include "analysis/block_options.h"
#include "analysis/plot.h"
#include "blocks/interfaces.h"
#include "registry/cli_options.h"
#include "registry/command.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#ifdef BLOCKLAB_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace blocklab {
namespace {

struct MixerBench {
  std::vector<std::string> mixers;
  std::vector<std::int64_t> lengths{256, 1024, 4096, 16384};  // squares: grid mixers run on them too
  std::int64_t dim = 64, heads = 4, batch = 1, threads = 2, rounds = 3;
  double min_time = 0.2;  // seconds of calls per measurement
  bool causal = true;
  bool grid = false;    // every mixer on a square image grid (N a square), not causal
  bool softmax = true;  // attention/softmax first, the reference of the ratios (--without-softmax: not run)
  bool peer = false;    // --peer: PyTorch Python's attention rows too
  torch::Device device = torch::kCPU;
  Precision precision = Precision::fp32;
  std::vector<std::string> sets;  // --set KEY=VALUE, for every mixer that has the option
  std::string out = "results/bench";
};

struct Measure {
  double seconds = std::numeric_limits<double>::quiet_NaN();  // forward + backward, median
  double saved_mb = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> rounds;  // forward + backward of each round, in order
};

std::size_t allocated_bytes(const torch::Device& device) {
#ifdef BLOCKLAB_WITH_CUDA
  if (device.is_cuda())  // [0]: the aggregate over the allocator's pools
    return static_cast<std::size_t>(
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0)
            .allocated_bytes[0]
            .current);
#endif
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

constexpr const char* kCommand = "bench mixers";
constexpr const char* kTypeHint = "the mixers are named by --mixers, not an option";

// A --mixers entry is a registry key, optionally with options of that mixer alone after colons:
// "ssm/mamba:scan=reference" (its label in the tables is the whole entry).
std::string key_of(const std::string& entry) { return entry.substr(0, entry.find(':')); }
std::vector<std::string> entry_options(const std::string& entry) {
  std::vector<std::string> options;
  for (auto at = entry.find(':'); at != std::string::npos;) {
    const auto next = entry.find(':', at + 1);
    options.push_back(entry.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1));
    at = next;
  }
  return options;
}

// Whether the mixer `key` has the option set by `text` (its first key part).
bool has_option(const std::string& entry, const std::string& text) {
  const auto key = key_of(entry);
  const auto option = option_set_key(text, kCommand, kTypeHint);
  return mixer_registry().info(key).schema.find(option.substr(0, option.find('.'))) != nullptr;
}

TokenMixer build_mixer(const std::string& entry, const MixerBench& b, std::int64_t n) {
  const auto key = key_of(entry);
  std::ostringstream cfg;
  cfg << "{type: " << key << "}";
  ConfigNode node = parse_yaml(cfg.str(), "bench");
  // Every mixer with `heads` gets the same head count, and every --set it has an option for.
  if (mixer_registry().info(key).schema.find("heads")) node.set("heads", ConfigNode::integer(b.heads));
  for (const auto& text : b.sets)
    if (has_option(key, text)) apply_option_set(node, text, kCommand, kTypeHint);
  for (const auto& text : entry_options(entry)) apply_option_set(node, text, kCommand, kTypeHint);
  TokenMixer mixer = mixer_registry().create(node, MixerArgs{b.dim, n});
  mixer->to(b.device);
  return mixer;
}

// One forward + backward of `mixer` on x [B, N, C]: seconds, and bytes kept after the forward.
std::pair<double, double> run_once(TokenMixer& mixer, const torch::Tensor& x, const MixerContext& ctx,
                                   const MixerBench& b) {
  bench_sync(b.device);
  const auto before = allocated_bytes(b.device);
  const auto t0 = std::chrono::steady_clock::now();
  torch::Tensor y;
  {
    AutocastScope autocast(b.device, b.precision);
    y = mixer->forward(x, ctx);
  }
  const double kept = static_cast<double>(allocated_bytes(b.device)) - static_cast<double>(before);
  y.to(torch::kFloat).pow(2).mean().backward();
  bench_sync(b.device);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  mixer->zero_grad();
  return {s, kept};
}

// The layout a mixer runs on: causal when asked and the mixer can; a square grid when it needs
// one or --grid asks (N must then be a square). Returns false when the mixer cannot run at N.
bool mixer_context(const TokenMixer& m, const MixerBench& b, std::int64_t n, MixerContext& ctx) {
  const MixerCapabilities caps = m->capabilities();
  ctx = MixerContext{};
  ctx.causal = b.causal && caps.causal;
  if (!caps.needs_grid && !b.grid) return true;
  const auto side = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  ctx.grid_height = ctx.grid_width = side;
  return side * side == n;
}

// measures[mixer][length], medians over rounds. Each round runs every mixer at every length, one
// mixer's lengths back to back, so that a drift of the machine's speed (other load, clocks) hits
// them alike and cancels in the scaling ratios.
std::vector<std::vector<Measure>> measure_all(const MixerBench& b) {
  at::set_num_threads(static_cast<int>(b.threads));
  const auto mixers = b.mixers.size(), lengths = b.lengths.size();
  std::vector<std::vector<TokenMixer>> built(lengths);
  std::vector<std::vector<MixerContext>> contexts(lengths, std::vector<MixerContext>(mixers));
  std::vector<torch::Tensor> inputs;
  std::vector<std::pair<std::size_t, std::size_t>> cases;  // (mixer, length) that run, one mixer's lengths back to back
  for (std::size_t l = 0; l < lengths; ++l) {
    for (std::size_t i = 0; i < mixers; ++i) built[l].push_back(build_mixer(b.mixers[i], b, b.lengths[l]));
    torch::manual_seed(0);
    inputs.push_back(torch::randn({b.batch, b.lengths[l], b.dim}).to(b.device).requires_grad_(true));
  }
  for (std::size_t i = 0; i < mixers; ++i)
    for (std::size_t l = 0; l < lengths; ++l)
      if (mixer_context(built[l][i], b, b.lengths[l], contexts[l][i])) cases.emplace_back(i, l);
  std::vector<std::vector<double>> kept(cases.size());  // bytes after the forward of each timed call
  const auto times = time_rounds(
      cases.size(), b.rounds, b.min_time,
      [&](std::size_t c, bool timed) {
        const auto [i, l] = cases[c];
        const auto [seconds, bytes] = run_once(built[l][i], inputs[l], contexts[l][i], b);
        if (timed) kept[c].push_back(bytes);
        return seconds;
      },
      kCommand);
  std::vector<std::vector<Measure>> result(mixers, std::vector<Measure>(lengths));
  for (std::size_t c = 0; c < cases.size(); ++c)
    result[cases[c].first][cases[c].second] = Measure{median(times[c]), median(kept[c]) / (1024.0 * 1024.0), times[c]};
  return result;
}

// --peer: the rows of analysis/bench/attention_peer.py (PyTorch Python on the same device and
// torch), appended after blocklab's mixers; a peer that fails leaves a note, not an error.
void add_peer_rows(MixerBench& b, std::vector<std::vector<Measure>>& m) {
  std::ostringstream args;
  args << "--lengths ";
  for (std::size_t l = 0; l < b.lengths.size(); ++l) args << (l ? "," : "") << b.lengths[l];
  args << " --dim " << b.dim << " --heads " << b.heads << " --batch " << b.batch << " --rounds " << b.rounds
       << " --min-time " << b.min_time << " --threads " << b.threads << " --device " << b.device.str()
       << " --precision " << precision_name(b.precision) << (b.causal ? "" : " --not-causal");
  Json result;
  try {
    result = run_python_peer("attention_peer.py", args.str());
  } catch (const std::exception& e) {
    std::printf("--peer: no PyTorch rows: %s\n", e.what());
    return;
  }
  for (const auto& note : result.value("notes", Json::array())) std::printf("--peer: %s\n", note.dump().c_str());
  for (const auto& row : result.value("rows", Json::array())) {
    const auto length = std::find(b.lengths.begin(), b.lengths.end(), row.at("n").get<std::int64_t>());
    if (length == b.lengths.end()) continue;
    const std::string label = row.at("label").get<std::string>();
    auto index = static_cast<std::size_t>(std::find(b.mixers.begin(), b.mixers.end(), label) - b.mixers.begin());
    if (index == b.mixers.size()) b.mixers.push_back(label), m.emplace_back(b.lengths.size());
    Measure& x = m[index][static_cast<std::size_t>(length - b.lengths.begin())];
    x.rounds = row.at("rounds").get<std::vector<double>>();
    if (!x.rounds.empty()) x.seconds = median(x.rounds);
  }
}

void print_table(const MixerBench& b, const std::vector<std::vector<Measure>>& m) {
  std::printf(
      "mixers at dim %lld, heads %lld, batch %lld, %s, %lld threads, forward + backward, median of %lld "
      "rounds of >= %.2g s of calls each (torch %s)%s%s\n",
      static_cast<long long>(b.dim), static_cast<long long>(b.heads), static_cast<long long>(b.batch),
      b.grid     ? "square image grids"
      : b.causal ? "causal"
                 : "not causal",
      static_cast<long long>(b.threads), static_cast<long long>(b.rounds), b.min_time, BLOCKLAB_TORCH_VERSION,
      b.device.is_cuda() ? (", on cuda (" + cuda_device_name() + ")").c_str() : "",
      b.precision == Precision::bf16 ? ", bf16 autocast" : "");
  for (const auto& text : b.sets) std::printf("--set %s (the mixers that have the option)\n", text.c_str());
  std::printf(
      "(mixers that are not causal run bidirectionally, those that need a grid on a square grid; '-': N is "
      "not a square)\n");
  std::printf("%-28s %7s %11s %13s %10s %12s\n", "mixer", "N", "ms", "tokens/s", "saved MB", "vs softmax");
  for (std::size_t i = 0; i < b.mixers.size(); ++i)
    for (std::size_t l = 0; l < b.lengths.size(); ++l) {
      const auto& x = m[i][l];
      if (std::isnan(x.seconds)) {
        std::printf("%-28s %7lld %11s\n", b.mixers[i].c_str(), static_cast<long long>(b.lengths[l]), "-");
        continue;
      }
      const double tokens = static_cast<double>(b.batch * b.lengths[l]) / x.seconds;
      std::printf("%-28s %7lld %11.2f %13.0f", b.mixers[i].c_str(), static_cast<long long>(b.lengths[l]),
                  1e3 * x.seconds, tokens);
      if (std::isnan(x.saved_mb))  // the peers' rows: not measured
        std::printf(" %10s", "-");
      else
        std::printf(" %10.1f", x.saved_mb);
      if (b.softmax)
        std::printf(" %11.2fx\n", m[0][l].seconds / x.seconds);
      else
        std::printf(" %12s\n", "-");
    }
}

// Time at N over time at N/4 (when both were measured), and where each mixer overtakes softmax.
void print_scaling(const MixerBench& b, const std::vector<std::vector<Measure>>& m) {
  std::printf("\n%-28s %-34s %s\n", "mixer", "time x per 4x tokens, N/4 -> N:", "faster than softmax from N =");
  std::printf("%-28s %-34s\n", "", "median over rounds (range)");
  for (std::size_t i = 0; i < b.mixers.size(); ++i) {
    std::string ratios;
    for (std::size_t l = 0; l < b.lengths.size(); ++l)
      for (std::size_t k = 0; k < l; ++k)
        if (b.lengths[l] == 4 * b.lengths[k]) ratios += ratio_over_rounds(b.lengths[l], m[i][l].rounds, m[i][k].rounds);
    std::string crossover = b.softmax ? "never (in this range)" : "- (not run)";
    for (std::size_t l = 0; l < b.lengths.size() && b.softmax; ++l)
      if (m[i][l].seconds < m[0][l].seconds) {
        crossover = std::to_string(b.lengths[l]);
        break;
      }
    std::printf("%-28s %-34s %s\n", b.mixers[i].c_str(), ratios.c_str(), b.softmax && i == 0 ? "-" : crossover.c_str());
  }
}

// Each entry with options ("ssm/mamba:scan=reference") against its plain key when both ran:
// time of the variant / time of the plain mixer, per N (e.g. a reference loop against the fused form).
void print_variants(const MixerBench& b, const std::vector<std::vector<Measure>>& m) {
  bool header = false;
  for (std::size_t i = 0; i < b.mixers.size(); ++i) {
    const auto base = std::find(b.mixers.begin(), b.mixers.end(), key_of(b.mixers[i]));
    if (b.mixers[i] == key_of(b.mixers[i]) || base == b.mixers.end()) continue;
    if (!header) std::printf("\n%-48s %s\n", "variant / its plain mixer", "time ratio at N (median over rounds)");
    header = true;
    std::string ratios;
    for (std::size_t l = 0; l < b.lengths.size(); ++l) {
      char text[64];
      std::snprintf(text, sizeof text, "%lld: %.1fx  ", static_cast<long long>(b.lengths[l]),
                    m[i][l].seconds / m[static_cast<std::size_t>(base - b.mixers.begin())][l].seconds);
      ratios += text;
    }
    std::printf("%-48s %s\n", (b.mixers[i] + " / " + *base).c_str(), ratios.c_str());
  }
}

void plot(const MixerBench& b, const std::vector<std::vector<Measure>>& m) {
  LineChart chart;
  chart.title = "forward + backward time of one mixer against N";
  chart.x_label = "tokens N";
  chart.y_label = "ms";
  chart.log_x = chart.log_y = true;
  for (std::size_t i = 0; i < b.mixers.size(); ++i) {
    PlotSeries s;
    s.label = b.mixers[i];
    for (std::size_t l = 0; l < b.lengths.size(); ++l)
      s.x.push_back(static_cast<double>(b.lengths[l])), s.y.push_back(1e3 * m[i][l].seconds);
    chart.series.push_back(s);
  }
  const std::string stem = b.out + "/bench_mixers";
  render_line_chart(chart, stem + ".png", stem + ".svg");
  std::printf("\nplot: %s.png (.svg)\n", stem.c_str());
}

// The default set: softmax and every linear-attention and retention mixer.
std::vector<std::string> default_mixers() {
  std::vector<std::string> keys{"attention/softmax"};
  for (const EntryInfo* e : mixer_registry().list())
    if (e->key.rfind("linear/", 0) == 0 || e->key.rfind("retention/", 0) == 0) keys.push_back(e->key);
  return keys;
}

}  // namespace

int bench_mixers_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")(
      "mixers", po::value<std::string>(),
      "registry keys, comma-separated (default: attention/softmax and every linear/ and retention/ mixer); "
      "softmax is always first, the reference of the ratios (unless --without-softmax); KEY:OPTION=VALUE[:...] "
      "runs a variant, timed against KEY when both are named (e.g. ssm/mamba,ssm/mamba:scan=reference)")(
      "lengths", po::value<std::string>(), "sequence lengths N, comma-separated (default 256,1024,4096,16384)")(
      "dim", po::value<std::string>(), "width C, 8 to 4096 (default 64)")(
      "heads", po::value<std::string>(), "heads of every mixer that has them, 1 to 64 (default 4)")(
      "batch", po::value<std::string>(), "sequences per call, 1 to 1024 (default 1)")(
      "threads", po::value<std::string>(), "CPU threads, 1 to 256 (default 2)")(
      "rounds", po::value<std::string>(), "timed rounds, median reported, 1 to 100 (default 3)")(
      "min-time", po::value<std::string>(),
      "seconds of repeated calls per measurement, their mean taken, 0 to 60 (default 0.2; 0: one call)")(
      "set", po::value<std::vector<std::string>>()->composing(),
      "an option for every mixer that has it, KEY=VALUE (repeatable), e.g. chunk=32")("not-causal",
                                                                                      "bidirectional (default causal)")(
      "grid",
      "every mixer on a square grid of image tokens (N a square: 196,784,...), not causal: the local and "
      "sparse image mixers next to dense attention")(
      "without-softmax", "do not run attention/softmax (no ratios to it): to profile the mixers alone")(
      "peer",
      "also time attention in PyTorch Python on the same device (analysis/bench/attention_peer.py): "
      "scaled_dot_product_attention, SDPA with ALiBi as a float mask, FlexAttention with ALiBi (CUDA)")(
      "device", po::value<std::string>(), kBenchDeviceHelp)("precision", po::value<std::string>(), kBenchPrecisionHelp)(
      "out", po::value<std::string>(), "directory of the plot (default results/bench)");
  const auto cl = parse_command_line("bench", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "bench", "mixers [options]",
        "Times forward + backward of token mixers against N next to attention/softmax (fused) "
        "and prints ms, tokens/s, the memory autograd keeps, the ratio to softmax, how each "
        "scales per 4x tokens and where it overtakes softmax; draws a log-log plot.",
        opts,
        "Examples:\n  blocklab bench mixers\n  blocklab bench mixers --mixers linear/elu "
        "--lengths 1024,4096,16384 --threads 1\n  blocklab bench mixers --mixers linear/elu,linear/lightning "
        "--set chunk=32\n  blocklab bench mixers --mixers ssm/mamba,ssm/mamba:scan=reference --lengths 1024,4096\n  "
        "blocklab bench mixers --grid --mixers local/window,local/neighborhood --lengths 196,784,3136,12544\n  "
        "blocklab bench mixers --device cuda --peer --mixers attention/softmax:mask.type=mask/alibi,linear/elu\n");
    return 0;
  }
  if (!cl.positional.empty()) throw UsageError("blocklab bench mixers: unexpected argument '" + cl.positional[0] + "'");
  MixerBench b;
  b.mixers = cl.vars.count("mixers") ? name_list("bench", "--mixers", string_option(cl, "mixers")) : default_mixers();
  b.mixers.erase(std::remove(b.mixers.begin(), b.mixers.end(), "attention/softmax"), b.mixers.end());
  b.softmax = cl.vars.count("without-softmax") == 0;
  if (b.softmax) b.mixers.insert(b.mixers.begin(), "attention/softmax");
  if (b.mixers.empty())
    throw UsageError("blocklab bench mixers: --without-softmax leaves no mixer; name some with --mixers");
  for (const auto& entry : b.mixers) mixer_registry().info(key_of(entry));  // unknown keys: did-you-mean
  if (cl.vars.count("lengths")) {
    b.lengths.clear();
    for (const auto& item : split_commas(string_option(cl, "lengths")))
      b.lengths.push_back(parse_integer("bench", "--lengths", item, 1, 1 << 20));
  }
  b.dim = integer_option(cl, "bench", "dim", 8, 4096, b.dim);
  b.heads = integer_option(cl, "bench", "heads", 1, 64, b.heads);
  b.batch = integer_option(cl, "bench", "batch", 1, 1024, b.batch);
  b.threads = integer_option(cl, "bench", "threads", 1, 256, b.threads);
  b.rounds = integer_option(cl, "bench", "rounds", 1, 100, b.rounds);
  b.min_time = real_option(cl, "bench", "min-time", 0.0, 60.0, b.min_time);
  b.grid = cl.vars.count("grid") > 0;
  b.peer = cl.vars.count("peer") > 0;
  b.device = bench_device(cl, "bench");
  b.precision = bench_precision(cl, "bench");
  b.causal = cl.vars.count("not-causal") == 0 && !b.grid;
  if (cl.vars.count("set")) b.sets = cl.vars["set"].as<std::vector<std::string>>();
  for (const auto& text : b.sets)
    if (std::none_of(b.mixers.begin(), b.mixers.end(), [&](const auto& key) { return has_option(key, text); }))
      throw UsageError("blocklab bench mixers: --set '" + printable(text) + "': none of the mixers has the option '" +
                       option_set_key(text, kCommand, kTypeHint) + "' (blocklab describe <mixer> lists them)");
  if (cl.vars.count("out")) b.out = string_option(cl, "out");
  if (b.dim % b.heads != 0)
    throw UsageError("blocklab bench mixers: --heads " + std::to_string(b.heads) + " does not divide --dim " +
                     std::to_string(b.dim));
  for (const auto& entry : b.mixers) build_mixer(entry, b, 16);  // bad options: the schema's message, before timing
  auto measures = measure_all(b);
  if (b.peer) add_peer_rows(b, measures);
  print_table(b, measures);
  print_scaling(b, measures);
  print_variants(b, measures);
  plot(b, measures);
  return 0;
}

}  // namespace blocklab
