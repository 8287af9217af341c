// blocklab bench scan: forward + backward time and tokens/s of the sequence primitives that the
// state space and long-convolution mixers share, alone, each in its fast form next to its
// reference loop, against the sequence length N:
//
//   selective  selective_scan (fused) vs selective_scan_reference (blocks/common/selective_scan.h)
//              at ssm/mamba's shapes for width 64: channels D = 128 (expand 2), state 16, with the
//              skip D, the gate z, delta_bias and delta_softplus, as ssm/mamba calls it
//   ssd        ssd chunked (blocks/common/ssd.h, chunk 256) vs a token-by-token loop of ssd_step, at
//              ssm/mamba2's shapes for width 64: heads 2 of head dim 64, state 128
//   conv       causal_fft_conv vs causal_direct_conv (blocks/common/long_conv.h): u [1, N, D] and a
//              kernel of N taps (Hyena's implicit filter); the direct form is O(N^2), ~40 s a call at
//              16,384, and runs up to --direct-max (4,096) only, to keep the default run ~1 minute
//
// Why: `bench mixers` times whole mixers, whose projections, short convolutions and gates are the
// same in both forms and dilute the ratio of the primitive itself; this prints that ratio
// (reference / fast at each N) and whether the fast form is linear in N (its time per 4x tokens,
// about 4x; the FFT's N log N a little more). The timing discipline is analysis/bench_timing.h:
// the warm-up round fixes the calls per measurement (>= --min-time; a reference call longer than
// that is measured once), each round runs every primitive, form and length, the median over
// rounds is reported and the ratios are taken within each round.
#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>

#include "analysis/bench_scan.h"
#include "analysis/bench_timing.h"
#include "blocks/common/long_conv.h"
#include "blocks/common/selective_scan.h"
#include "blocks/common/ssd.h"
#include "blocks/common/ssm_parts.h"
#include "registry/cli_options.h"
#include "registry/command.h"

namespace blocklab {
namespace {

// ssm/mamba's d_state; ssm/mamba2's heads, headdim, d_state and chunk at width 64 (its defaults).
constexpr std::int64_t kScanState = 16;
constexpr std::int64_t kSsdHeads = 2, kSsdHeadDim = 64, kSsdState = 128, kSsdChunk = 256;

// A primitive and the names of its two forms.
struct Primitive {
  const char* name;
  const char* fast;
  const char* reference;
};
constexpr std::array<Primitive, 3> kPrimitives = {{
    {"selective", "fused", "reference"},
    {"ssd", "chunked", "token-loop"},
    {"conv", "fft", "direct"},
}};

struct ScanBench {
  std::vector<std::size_t> primitives{0, 1, 2};  // indices into kPrimitives
  std::vector<std::int64_t> lengths{1024, 4096, 16384};
  std::int64_t channels = 128, threads = 2, rounds = 3;
  std::int64_t direct_max = 4096;  // longest N of the direct convolution, O(N^2): ~40 s a call at 16,384
  double min_time = 0.2;           // seconds of calls per measurement
};

// One form of one primitive at one length: its differentiable inputs, the call on them, and the
// seconds per call of each round (none when it does not run: the direct convolution above
// --direct-max).
struct Case {
  std::size_t primitive, length;  // indices into kPrimitives and ScanBench::lengths
  bool reference, runs;
  std::vector<torch::Tensor> leaves;
  std::function<torch::Tensor(const std::vector<torch::Tensor>&)> call;
  std::vector<double> rounds;
};

std::vector<torch::Tensor> leaves_of(std::vector<torch::Tensor> inputs) {
  for (auto& t : inputs) t.requires_grad_(true);
  return inputs;
}

// u, delta, A, B, C, D, z, delta_bias at Mamba's shapes; A = -exp(randn) as Mamba's A is negative,
// delta_bias Mamba's initialisation (softplus log-uniform in [0.001, 0.1]).
std::vector<torch::Tensor> selective_inputs(std::int64_t n, std::int64_t d) {
  torch::manual_seed(0);
  return leaves_of({torch::randn({1, n, d}), torch::randn({1, n, d}), -torch::exp(torch::randn({d, kScanState})),
                    torch::randn({1, n, kScanState}), torch::randn({1, n, kScanState}), torch::randn({d}),
                    torch::randn({1, n, d}), dt_bias_init(d)});
}

torch::Tensor selective_form(const std::vector<torch::Tensor>& in, bool reference) {
  const auto scan = reference ? selective_scan_reference : selective_scan;
  return scan(in[0], in[1], in[2], in[3], in[4], {}, in[5], in[6], in[7], /*delta_softplus=*/true).y;
}

// x, dt (after softplus, around Mamba-2's initial step sizes), A (negative), B, C.
std::vector<torch::Tensor> ssd_inputs(std::int64_t n) {
  torch::manual_seed(0);
  return leaves_of({torch::randn({1, n, kSsdHeads, kSsdHeadDim}),
                    torch::softplus(torch::randn({1, n, kSsdHeads}) + dt_bias_init(kSsdHeads)),
                    -torch::exp(torch::randn({kSsdHeads})), torch::randn({1, n, kSsdState}),
                    torch::randn({1, n, kSsdState})});
}

// The recurrent form, one ssd_step per token from a zero state: SSD's token-by-token reference.
torch::Tensor ssd_token_loop(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A,
                             const torch::Tensor& B, const torch::Tensor& C) {
  auto state = torch::zeros({x.size(0), x.size(2), B.size(2), x.size(3)}, x.options());
  const auto xs = x.unbind(1), dts = dt.unbind(1), bs = B.unbind(1), cs = C.unbind(1);
  std::vector<torch::Tensor> ys;
  ys.reserve(xs.size());
  for (std::size_t t = 0; t < xs.size(); ++t) {
    auto [y, next] = ssd_step(xs[t], dts[t], A, bs[t], cs[t], state);
    ys.push_back(y);
    state = next;
  }
  return torch::stack(ys, 1);
}

torch::Tensor ssd_form(const std::vector<torch::Tensor>& in, bool reference) {
  return reference ? ssd_token_loop(in[0], in[1], in[2], in[3], in[4])
                   : ssd(in[0], in[1], in[2], in[3], in[4], "chunked", kSsdChunk);
}

// u [1, N, D] and a kernel of N taps [N, D], convolved along N.
std::vector<torch::Tensor> conv_inputs(std::int64_t n, std::int64_t d) {
  torch::manual_seed(0);
  return leaves_of({torch::randn({1, n, d}), torch::randn({n, d})});
}

torch::Tensor conv_form(const std::vector<torch::Tensor>& in, bool reference) {
  return reference ? causal_direct_conv(in[0], in[1], 1) : causal_fft_conv(in[0], in[1], 1);
}

// Both forms of primitive p at length index l, on the same inputs.
void add_cases(const ScanBench& b, std::size_t p, std::size_t l, std::vector<Case>& cases) {
  const auto n = b.lengths[l];
  const std::string name = kPrimitives[p].name;
  const auto inputs = name == "selective" ? selective_inputs(n, b.channels)
                      : name == "ssd"     ? ssd_inputs(n)
                                          : conv_inputs(n, b.channels);
  const auto call = name == "selective" ? selective_form : name == "ssd" ? ssd_form : conv_form;
  for (const bool reference : {false, true}) {
    const bool runs = !(reference && name == "conv" && n > b.direct_max);
    cases.push_back(
        Case{p, l, reference, runs, inputs, [call, reference](const auto& in) { return call(in, reference); }, {}});
  }
}

// One forward + backward (of the sum of the output); the gradients are dropped after.
double run_once(Case& c) {
  const auto t0 = std::chrono::steady_clock::now();
  c.call(c.leaves).sum().backward();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& t : c.leaves) t.mutable_grad() = torch::Tensor();
  return s;
}

// Every case, with the seconds per call of each round of those that run. In each round one
// primitive's forms and lengths run back to back, so that a drift of the machine's speed hits the
// two sides of its ratios alike.
std::vector<Case> measure_all(const ScanBench& b) {
  at::set_num_threads(static_cast<int>(b.threads));
  std::vector<Case> cases;
  for (const auto p : b.primitives)
    for (std::size_t l = 0; l < b.lengths.size(); ++l) add_cases(b, p, l, cases);
  std::vector<std::size_t> timed;
  for (std::size_t i = 0; i < cases.size(); ++i)
    if (cases[i].runs) timed.push_back(i);
  const auto seconds = time_rounds(
      timed.size(), b.rounds, b.min_time, [&](std::size_t i, bool) { return run_once(cases[timed[i]]); }, "bench scan");
  for (std::size_t i = 0; i < timed.size(); ++i) cases[timed[i]].rounds = seconds[i];
  return cases;
}

std::string form_of(const Case& c) {
  return c.reference ? kPrimitives[c.primitive].reference : kPrimitives[c.primitive].fast;
}

void print_header(const ScanBench& b) {
  const long long d = b.channels;
  std::printf(
      "sequence primitives alone, batch 1, %lld threads, forward + backward, median of %lld rounds of >= %.2g s "
      "of calls each (torch %s)\n",
      static_cast<long long>(b.threads), static_cast<long long>(b.rounds), b.min_time, BLOCKLAB_TORCH_VERSION);
  std::printf(
      "  selective  selective_scan (fused) vs selective_scan_reference: u, delta, z [1, N, %lld], A [%lld, %lld], "
      "B, C [1, N, %lld]; D skip, z gate, delta_bias, softplus\n",
      d, d, static_cast<long long>(kScanState), static_cast<long long>(kScanState));
  std::printf(
      "  ssd        ssd chunked (chunk %lld) vs a loop of ssd_step: x [1, N, %lld, %lld], dt [1, N, %lld], A [%lld], "
      "B, C [1, N, %lld]\n",
      static_cast<long long>(kSsdChunk), static_cast<long long>(kSsdHeads), static_cast<long long>(kSsdHeadDim),
      static_cast<long long>(kSsdHeads), static_cast<long long>(kSsdHeads), static_cast<long long>(kSsdState));
  std::printf(
      "  conv       causal_fft_conv vs causal_direct_conv (up to N = %lld): u [1, N, %lld], kernel [N, %lld] (N "
      "taps)\n",
      static_cast<long long>(b.direct_max), d, d);
}

void print_table(const ScanBench& b, const std::vector<Case>& cases) {
  std::printf("\n%-10s %-11s %7s %11s %13s\n", "primitive", "form", "N", "ms", "tokens/s");
  for (const Case& c : cases) {
    const auto n = b.lengths[c.length];
    std::printf("%-10s %-11s %7lld", kPrimitives[c.primitive].name, form_of(c).c_str(), static_cast<long long>(n));
    if (!c.runs) {
      std::printf(" %11s   (not run above --direct-max %lld: O(N^2))\n", "-", static_cast<long long>(b.direct_max));
      continue;
    }
    const double s = median(c.rounds);
    std::printf(" %11.2f %13.0f\n", 1e3 * s, static_cast<double>(n) / s);
  }
}

// The case of the q-th primitive of --primitives, its reference or fast form, at length index l
// (where measure_all's add_cases put it).
std::size_t case_index(const ScanBench& b, std::size_t q, std::size_t l, bool reference) {
  return 2 * (q * b.lengths.size() + l) + (reference ? 1 : 0);
}

// Per primitive: reference / fast at each N ("N: -" where the reference did not run).
void print_speedups(const ScanBench& b, const std::vector<Case>& cases) {
  std::printf("\n%-28s %s\n", "reference / fast", "time ratio at N: median over rounds (range)");
  for (std::size_t q = 0; q < b.primitives.size(); ++q) {
    std::string ratios;
    for (std::size_t l = 0; l < b.lengths.size(); ++l) {
      const Case& slow = cases[case_index(b, q, l, true)];
      ratios += slow.runs ? ratio_over_rounds(b.lengths[l], slow.rounds, cases[case_index(b, q, l, false)].rounds)
                          : std::to_string(b.lengths[l]) + ": -  ";
    }
    const auto& p = kPrimitives[b.primitives[q]];
    std::printf("%-28s %s\n", (std::string(p.name) + " " + p.reference + " / " + p.fast).c_str(), ratios.c_str());
  }
}

// Per primitive: the fast form's time at N over its time at N/4 (linear in N: about 4).
void print_scaling(const ScanBench& b, const std::vector<Case>& cases) {
  std::printf("\n%-28s %s\n", "fast form",
              "time x per 4x tokens, N/4 -> N (linear: about 4): median over rounds (range)");
  for (std::size_t q = 0; q < b.primitives.size(); ++q) {
    std::string ratios;
    for (std::size_t l = 0; l < b.lengths.size(); ++l)
      for (std::size_t k = 0; k < b.lengths.size(); ++k)
        if (b.lengths[l] == 4 * b.lengths[k])
          ratios += ratio_over_rounds(b.lengths[l], cases[case_index(b, q, l, false)].rounds,
                                      cases[case_index(b, q, k, false)].rounds);
    const auto& p = kPrimitives[b.primitives[q]];
    std::printf("%-28s %s\n", (std::string(p.name) + " " + p.fast).c_str(),
                ratios.empty() ? "- (no N whose N/4 is measured too)" : ratios.c_str());
  }
}

// --primitives: names of kPrimitives, as indices.
std::vector<std::size_t> parse_primitives(const std::string& text) {
  std::vector<std::size_t> chosen;
  for (const auto& name : name_list("bench", "--primitives", text)) {
    std::size_t p = 0;
    while (p < kPrimitives.size() && name != kPrimitives[p].name) ++p;
    if (p == kPrimitives.size())
      throw UsageError("blocklab bench scan: --primitives takes selective, ssd or conv (comma-separated), not '" +
                       printable(name) + "'");
    chosen.push_back(p);
  }
  return chosen;
}

ScanBench parse_options(const CommandLine& cl) {
  if (!cl.positional.empty()) throw UsageError("blocklab bench scan: unexpected argument '" + cl.positional[0] + "'");
  ScanBench b;
  if (cl.vars.count("primitives")) b.primitives = parse_primitives(string_option(cl, "primitives"));
  if (cl.vars.count("lengths")) {
    b.lengths.clear();
    for (const auto& item : split_commas(string_option(cl, "lengths")))
      b.lengths.push_back(parse_integer("bench", "--lengths", item, 1, 1 << 20));
  }
  b.channels = integer_option(cl, "bench", "channels", 1, 4096, b.channels);
  b.threads = integer_option(cl, "bench", "threads", 1, 256, b.threads);
  b.rounds = integer_option(cl, "bench", "rounds", 1, 100, b.rounds);
  b.min_time = real_option(cl, "bench", "min-time", 0.0, 60.0, b.min_time);
  b.direct_max = integer_option(cl, "bench", "direct-max", 0, 1 << 20, b.direct_max);
  return b;
}

}  // namespace

int bench_scan_command(const std::vector<std::string>& args) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")(
      "primitives", po::value<std::string>(),
      "comma-separated, of selective (the selective scan), ssd (Mamba-2's SSD), conv (the causal long "
      "convolution) (default all three)")(
      "lengths", po::value<std::string>(),
      "sequence lengths N, comma-separated, 1 to 1048576 (default 1024,4096,16384)")(
      "channels", po::value<std::string>(),
      "channels D of the selective scan and the convolution, 1 to 4096 (default 128: Mamba's width 64 x expand 2; "
      "SSD keeps Mamba-2's 2 heads of 64)")("threads", po::value<std::string>(), "CPU threads, 1 to 256 (default 2)")(
      "rounds", po::value<std::string>(), "timed rounds, median reported, 1 to 100 (default 3)")(
      "min-time", po::value<std::string>(),
      "seconds of repeated calls per measurement, their mean taken, 0 to 60 (default 0.2; 0: one call)")(
      "direct-max", po::value<std::string>(),
      "longest N at which the direct convolution runs, 0 to 1048576 (default 4096: it is O(N^2), ~40 s a call "
      "at 16,384 on 1 thread; above, the FFT runs alone)");
  const auto cl = parse_command_line("bench", args, opts);
  if (cl.vars.count("help")) {
    std::cout << command_help(
        "bench", "scan [options]",
        "Times forward + backward of the shared sequence primitives alone (the selective scan, SSD, the causal "
        "long convolution), each fast form next to its reference loop, against N; prints ms, tokens/s, the "
        "ratio reference / fast at each N and the fast forms' time per 4x tokens (linear in N: about 4).",
        opts,
        "Examples:\n  blocklab bench scan\n  blocklab bench scan --primitives selective --lengths 4096 --rounds 5\n"
        "  blocklab bench scan --primitives ssd,conv --lengths 256,1024,4096 --threads 1\n");
    return 0;
  }
  const ScanBench b = parse_options(cl);
  const auto cases = measure_all(b);
  print_header(b);
  print_table(b, cases);
  print_speedups(b, cases);
  print_scaling(b, cases);
  return 0;
}

}  // namespace blocklab
