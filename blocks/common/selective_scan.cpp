#include "blocks/common/selective_scan.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

namespace blocklab {
namespace {

constexpr std::int64_t kLanes = 8;   // channels walked through time together, one per vector lane
constexpr std::int64_t kSteps = 64;  // steps per chunk: one batched exp, one checkpoint of the state

// Flushes denormal floats to zero in this thread while alive. A decaying state (exp(delta A) < 1
// each step, its input small) walks down into the denormal range, where x86 arithmetic is ~100x
// slower: without this the scan of a freshly initialised Mamba ran 3x slower at 4k tokens.
// Values below 1e-38 (float) / 1e-308 (double) become 0, far below any tolerance.
class FlushDenormals {
 public:
#if defined(__SSE__) || defined(__x86_64__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};

// The kernels read u, delta (and dy) and write y (du, ddelta) in their own [B, L, D] layout, 8
// channels of a step at a time (the last block of a D that is no multiple of 8 through a
// zero-padded copy). A, the states and their gradients are in "lane layout": D padded to
// `blocks` blocks of kLanes, the lanes innermost (A as [blocks, N, kLanes], states
// [B, blocks, N, kLanes]). Loops run over the lanes without reductions and vectorise; padded
// lanes have delta = u = A = 0, so their state stays 0.
struct Dims {
  std::int64_t batch, length, channels, states;
  std::int64_t blocks() const { return (channels + kLanes - 1) / kLanes; }
  std::int64_t chunks() const { return (length + kSteps - 1) / kSteps; }
};

// A [D, N] <-> [blocks, N, kLanes]; states [B, D, N] <-> [B, blocks, N, kLanes].
torch::Tensor A_to_lanes(const torch::Tensor& A, const Dims& s) {
  const auto padded = torch::constant_pad_nd(A, {0, 0, 0, s.blocks() * kLanes - s.channels});
  return padded.view({s.blocks(), kLanes, s.states}).permute({0, 2, 1}).contiguous();
}
torch::Tensor A_from_lanes(const torch::Tensor& A, const Dims& s) {
  return A.permute({0, 2, 1}).reshape({s.blocks() * kLanes, s.states}).narrow(0, 0, s.channels);
}
// D (or the delta bias) [D] -> [blocks, kLanes] (zero-padded).
torch::Tensor D_to_lanes(const torch::Tensor& D, const Dims& s) {
  return torch::constant_pad_nd(D, {0, s.blocks() * kLanes - s.channels}).view({s.blocks(), kLanes}).contiguous();
}
torch::Tensor state_to_lanes(const torch::Tensor& h, const Dims& s) {
  const auto padded = torch::constant_pad_nd(h, {0, 0, 0, s.blocks() * kLanes - s.channels});
  return padded.view({s.batch, s.blocks(), kLanes, s.states}).permute({0, 1, 3, 2}).contiguous();
}
torch::Tensor state_from_lanes(const torch::Tensor& h, const Dims& s) {
  return h.permute({0, 1, 3, 2}).reshape({s.batch, s.blocks() * kLanes, s.states}).narrow(1, 0, s.channels);
}

// Runs body(b, block) for every batch entry and block of lanes, in parallel, denormals flushed.
template <typename Body>
void for_items(const Dims& s, const Body& body) {
  at::parallel_for(0, s.batch * s.blocks(), 1, [&](std::int64_t from, std::int64_t to) {
    const FlushDenormals flush;
    for (std::int64_t item = from; item < to; ++item) body(item / s.blocks(), item % s.blocks());
  });
}

// What one item (a batch entry's block of lanes) reads, from its first step on.
template <typename T>
struct Item {
  const T *u, *delta;  // [L][D] from its first channel: `lanes` of them, `stride` = D apart
  const T* A;          // [N][kLanes]
  const T *B, *C;      // [L][N]
  const T* D;          // [kLanes], the skip D u_t, or null (none)
  const T* z;          // [L][D] like u, the gate silu(z_t), or null (none)
  const T* delta_bias;  // [kLanes] added to the delta input, or null (none)
  bool softplus;        // delta = softplus(input (+ bias))
  T* h;                 // the state [N][kLanes]
  std::int64_t steps, states, stride, lanes;
  // The same item from step t0 on, for `count` steps.
  Item at(std::int64_t t0, std::int64_t count) const {
    return {u + t0 * stride,
            delta + t0 * stride,
            A,
            B + t0 * states,
            C + t0 * states,
            D,
            z ? z + t0 * stride : nullptr,
            delta_bias,
            softplus,
            h,
            count,
            states,
            stride,
            lanes};
  }
};

// Where one item's gradients go, from its first step on.
template <typename T>
struct ItemGrads {
  const T* dy;      // [L][D] like u
  T *du, *ddelta;   // [L][D] like u
  T *dA, *dB, *dC;  // dA [N][kLanes] (accumulated); dB, dC [L][N] (this block's part)
  T* g;             // [N][kLanes]: a_{t+1} dL/dh_{t+1} in, a_t dL/dh_t out
  T* dD;            // [kLanes] (accumulated), when the item has D
  T* dz;            // [L][D] like u, when the item has z
  T* d_delta_bias;  // [kLanes] (accumulated), when the item has a delta bias
  ItemGrads at(std::int64_t t0, std::int64_t states, std::int64_t stride) const {
    return {dy + t0 * stride,
            du + t0 * stride,
            ddelta + t0 * stride,
            dA,
            dB + t0 * states,
            dC + t0 * states,
            g,
            dD,
            dz ? dz + t0 * stride : nullptr,
            d_delta_bias};
  }
};

// One vector of kLanes lanes (GCC vector extensions), and the integers of the same width.
template <typename T>
struct Lanes;
template <>
struct Lanes<float> {
  typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
  typedef std::int32_t Int __attribute__((vector_size(kLanes * sizeof(float))));
};
template <>
struct Lanes<double> {
  typedef double Vec __attribute__((vector_size(kLanes * sizeof(double))));
  typedef std::int64_t Int __attribute__((vector_size(kLanes * sizeof(double))));
};
template <typename T>
using Vec = typename Lanes<T>::Vec;
template <typename T>
using LaneInt = typename Lanes<T>::Int;

namespace baseline {
#include "blocks/common/selective_scan_kernels.inc"
}  // namespace baseline

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "blocks/common/selective_scan_kernels.inc"
}  // namespace avx2
#pragma GCC pop_options
#endif

// The AVX2 + FMA loops where the CPU has them (decided once), else the baseline ones.
bool use_avx2() {
#if defined(__GNUC__) && defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return avx2;
#else
  return false;
#endif
}

// The saved lane-layout inputs (contiguous) and each item's view of them.
struct LaneInputs {
  torch::Tensor u, delta, A, B, C;  // [B, L, D] x2, [blocks, N, kLanes], [B, L, N] x2
  torch::Tensor D, z;               // [blocks, kLanes] and [B, L, D], or undefined (none)
  torch::Tensor delta_bias;         // [blocks, kLanes], or undefined (none)
  bool softplus;                    // delta = softplus(delta (+ delta_bias))
  Dims s;

  // Where item (b, block)'s channels start in a [B, L, D] tensor.
  std::int64_t lanes(std::int64_t b, std::int64_t block) const { return b * s.length * s.channels + block * kLanes; }
  std::int64_t state(std::int64_t b, std::int64_t block) const { return (b * s.blocks() + block) * s.states * kLanes; }
  template <typename T>
  Item<T> item(std::int64_t b, std::int64_t block, T* h) const {
    return {u.data_ptr<T>() + lanes(b, block),
            delta.data_ptr<T>() + lanes(b, block),
            A.data_ptr<T>() + block * s.states * kLanes,
            B.data_ptr<T>() + b * s.length * s.states,
            C.data_ptr<T>() + b * s.length * s.states,
            D.defined() ? D.data_ptr<T>() + block * kLanes : nullptr,
            z.defined() ? z.data_ptr<T>() + lanes(b, block) : nullptr,
            delta_bias.defined() ? delta_bias.data_ptr<T>() + block * kLanes : nullptr,
            softplus,
            h,
            s.length,
            s.states,
            s.channels,
            std::min(kLanes, s.channels - block * kLanes)};
  }
};

// Forward: y [B, L, D]; h [B, blocks, N, kLanes] advanced from the initial state to
// the last; checkpoints [chunks, B, blocks, N, kLanes]: the state before each chunk.
void forward_lanes(const LaneInputs& in, torch::Tensor& y, torch::Tensor& h, torch::Tensor& checkpoints) {
  const Dims& s = in.s;
  const auto stride = s.batch * s.blocks() * s.states * kLanes;  // from one chunk's checkpoints to the next
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "selective_scan", [&] {
    const auto run = use_avx2() ? avx2::forward_item<scalar_t> : baseline::forward_item<scalar_t>;
    for_items(s, [&](std::int64_t b, std::int64_t block) {
      const auto state = in.state(b, block);
      run(in.item<scalar_t>(b, block, h.data_ptr<scalar_t>() + state), s.length,
          y.data_ptr<scalar_t>() + in.lanes(b, block), checkpoints.data_ptr<scalar_t>() + state, stride);
    });
  });
}

struct LaneGrads {
  torch::Tensor du, ddelta;  // [B, L, D]
  torch::Tensor dA;          // [B, blocks, N, kLanes] (per batch entry: summed after)
  torch::Tensor dB, dC;      // [blocks, B, L, N] (per block: summed after)
  torch::Tensor g;           // [B, blocks, N, kLanes]: dL/dh_{-1} at the end
  torch::Tensor dD;          // [B, blocks, kLanes] (summed after), when there is D
  torch::Tensor dz;          // [B, L, D], when there is z
  torch::Tensor d_delta_bias;  // [B, blocks, kLanes] (summed after), when there is a delta bias
};

LaneGrads backward_lanes(const LaneInputs& in, const torch::Tensor& dy, const torch::Tensor& checkpoints) {
  const Dims& s = in.s;
  const auto o = dy.options();
  const auto per_block = [&] { return torch::zeros({s.blocks(), s.batch, s.length, s.states}, o); };
  const auto per_state = [&] { return torch::zeros({s.batch, s.blocks(), s.states, kLanes}, o); };
  LaneGrads d{torch::empty_like(dy),
              torch::empty_like(dy),
              per_state(),
              per_block(),
              per_block(),
              per_state(),
              in.D.defined() ? torch::zeros({s.batch, s.blocks(), kLanes}, o) : torch::Tensor(),
              in.z.defined() ? torch::empty_like(dy) : torch::Tensor(),
              in.delta_bias.defined() ? torch::zeros({s.batch, s.blocks(), kLanes}, o) : torch::Tensor()};
  const auto stride = s.batch * s.blocks() * s.states * kLanes;
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "selective_scan_backward", [&] {
    const auto run = use_avx2() ? avx2::backward_item<scalar_t> : baseline::backward_item<scalar_t>;
    for_items(s, [&](std::int64_t b, std::int64_t block) {
      const auto lanes = in.lanes(b, block), state = in.state(b, block);
      const auto rows = (block * s.batch + b) * s.length * s.states;
      run(in.item<scalar_t>(b, block, static_cast<scalar_t*>(nullptr)), s.length,
          checkpoints.data_ptr<scalar_t>() + state, stride,
          ItemGrads<scalar_t>{
              dy.data_ptr<scalar_t>() + lanes, d.du.data_ptr<scalar_t>() + lanes, d.ddelta.data_ptr<scalar_t>() + lanes,
              d.dA.data_ptr<scalar_t>() + state, d.dB.data_ptr<scalar_t>() + rows, d.dC.data_ptr<scalar_t>() + rows,
              d.g.data_ptr<scalar_t>() + state,
              d.dD.defined() ? d.dD.data_ptr<scalar_t>() + (b * s.blocks() + block) * kLanes : nullptr,
              d.dz.defined() ? d.dz.data_ptr<scalar_t>() + lanes : nullptr,
              d.d_delta_bias.defined() ? d.d_delta_bias.data_ptr<scalar_t>() + (b * s.blocks() + block) * kLanes
                                       : nullptr});
    });
  });
  return d;
}

struct SelectiveScan : torch::autograd::Function<SelectiveScan> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& u,
                                                const torch::Tensor& delta, const torch::Tensor& A,
                                                const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& h0,
                                                const torch::Tensor& D, const torch::Tensor& z,
                                                const torch::Tensor& delta_bias, bool softplus) {
    // (empty tensors stand for "none": autograd Functions take no undefined ones)
    const Dims s{u.size(0), u.size(1), u.size(2), A.size(1)};
    const LaneInputs in{u.contiguous(),
                        delta.contiguous(),
                        A_to_lanes(A, s),
                        B.contiguous(),
                        C.contiguous(),
                        D.numel() > 0 ? D_to_lanes(D, s) : torch::Tensor(),
                        z.numel() > 0 ? z.contiguous() : torch::Tensor(),
                        delta_bias.numel() > 0 ? D_to_lanes(delta_bias, s) : torch::Tensor(),
                        softplus,
                        s};
    auto y = torch::empty_like(in.u);
    auto h = h0.numel() > 0 ? state_to_lanes(h0, s)  // empty: no initial state
                            : torch::zeros({s.batch, s.blocks(), s.states, kLanes}, u.options());
    auto checkpoints = torch::empty({s.chunks(), s.batch, s.blocks(), s.states, kLanes}, u.options());
    forward_lanes(in, y, h, checkpoints);
    ctx->save_for_backward({in.u, in.delta, in.A, in.B, in.C, checkpoints, in.D.defined() ? in.D : D,
                            in.z.defined() ? in.z : z, in.delta_bias.defined() ? in.delta_bias : delta_bias});
    ctx->saved_data["softplus"] = softplus;
    ctx->saved_data["dims"] = std::vector<std::int64_t>{s.batch, s.length, s.channels, s.states};
    ctx->saved_data["has_h0"] = h0.numel() > 0;
    auto last = state_from_lanes(h, s);
    ctx->mark_non_differentiable({last});
    return {y, last};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    TORCH_CHECK(!torch::GradMode::is_enabled(), "selective_scan: the fused backward is not differentiable again");
    const auto saved = ctx->get_saved_variables();
    const auto dims = ctx->saved_data["dims"].toIntVector();
    const Dims s{dims[0], dims[1], dims[2], dims[3]};
    const auto given = [](const torch::Tensor& t) { return t.numel() > 0 ? t : torch::Tensor(); };
    const LaneInputs in{saved[0],
                        saved[1],
                        saved[2],
                        saved[3],
                        saved[4],
                        given(saved[6]),
                        given(saved[7]),
                        given(saved[8]),
                        ctx->saved_data["softplus"].toBool(),
                        s};
    const auto dy = grads[0].defined() ? grads[0].contiguous() : torch::zeros_like(in.u);
    const auto d = backward_lanes(in, dy, saved[5]);
    const auto dh0 = ctx->saved_data["has_h0"].toBool() ? state_from_lanes(d.g, s) : torch::Tensor();
    const auto dD = d.dD.defined() ? d.dD.sum(0).reshape(-1).narrow(0, 0, s.channels) : torch::Tensor();
    const auto d_bias =
        d.d_delta_bias.defined() ? d.d_delta_bias.sum(0).reshape(-1).narrow(0, 0, s.channels) : torch::Tensor();
    return {d.du,   d.ddelta,       A_from_lanes(d.dA.sum(0), s), d.dB.sum(0), d.dC.sum(0), dh0, dD, d.dz,
            d_bias, torch::Tensor()};
  }
};

void check_shapes(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
                  const torch::Tensor& C, const torch::Tensor& h0, const torch::Tensor& D, const torch::Tensor& z,
                  const torch::Tensor& delta_bias) {
  TORCH_CHECK(u.dim() == 3 && delta.sizes() == u.sizes() && u.size(1) >= 1,
              "selective_scan: u and delta must be [B, L >= 1, D], got ", u.sizes(), " and ", delta.sizes());
  TORCH_CHECK(A.dim() == 2 && A.size(0) == u.size(2), "selective_scan: A must be [D, N], got ", A.sizes());
  const std::vector<std::int64_t> bc{u.size(0), u.size(1), A.size(1)};
  TORCH_CHECK(B.sizes() == torch::IntArrayRef(bc) && C.sizes() == torch::IntArrayRef(bc),
              "selective_scan: B and C must be [B, L, N], got ", B.sizes(), " and ", C.sizes());
  TORCH_CHECK(!h0.defined() || h0.sizes() == torch::IntArrayRef({u.size(0), u.size(2), A.size(1)}),
              "selective_scan: h0 must be [B, D, N], got ", h0.sizes());
  TORCH_CHECK(!D.defined() || D.sizes() == torch::IntArrayRef({u.size(2)}), "selective_scan: D must be [D], got ",
              D.sizes());
  TORCH_CHECK(!z.defined() || z.sizes() == u.sizes(), "selective_scan: z must be [B, L, D] like u, got ", z.sizes());
  TORCH_CHECK(!delta_bias.defined() || delta_bias.sizes() == torch::IntArrayRef({u.size(2)}),
              "selective_scan: delta_bias must be [D], got ", delta_bias.sizes());
}

}  // namespace

SelectiveScanResult selective_scan_reference(const torch::Tensor& u, const torch::Tensor& delta_in,
                                             const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& C,
                                             const torch::Tensor& h0, const torch::Tensor& D, const torch::Tensor& z,
                                             const torch::Tensor& delta_bias, bool delta_softplus) {
  check_shapes(u, delta_in, A, B, C, h0, D, z, delta_bias);
  // The naive scan of the official code (mamba_ssm selective_scan_ref): the discretised terms
  // materialised, then one step and one read-out per token.
  auto delta = delta_bias.defined() ? delta_in + delta_bias : delta_in;
  if (delta_softplus) delta = torch::softplus(delta);
  const auto decay = torch::exp(delta.unsqueeze(-1) * A);         // [B, L, D, N]
  const auto input = (delta * u).unsqueeze(-1) * B.unsqueeze(2);  // [B, L, D, N]
  auto h = h0.defined() ? h0 : torch::zeros({u.size(0), u.size(2), A.size(1)}, u.options());
  const auto decays = decay.unbind(1), inputs = input.unbind(1), cs = C.unbind(1);
  std::vector<torch::Tensor> ys;
  ys.reserve(decays.size());
  for (std::size_t t = 0; t < decays.size(); ++t) {
    h = decays[t] * h + inputs[t];
    ys.push_back(torch::einsum("bdn,bn->bd", {h, cs[t]}));
  }
  auto y = torch::stack(ys, 1);
  if (D.defined()) y = y + D * u;
  if (z.defined()) y = y * torch::silu(z);
  return {y, h};
}

SelectiveScanResult selective_scan(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                                   const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& h0,
                                   const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& delta_bias,
                                   bool delta_softplus) {
  check_shapes(u, delta, A, B, C, h0, D, z, delta_bias);
  bool same_type = true;
  for (const auto* t : {&delta, &A, &B, &C, &h0, &D, &z, &delta_bias})
    same_type = same_type && (!t->defined() || t->scalar_type() == u.scalar_type());
  TORCH_CHECK(same_type, "selective_scan: every input must share u's floating type");
  if (!u.device().is_cpu())  // no GPU kernel yet
    return selective_scan_reference(u, delta, A, B, C, h0, D, z, delta_bias, delta_softplus);
  const auto none = torch::empty({0}, u.options());  // autograd Functions take no undefined tensors
  const auto or_none = [&](const torch::Tensor& t) { return t.defined() ? t : none; };
  const auto out =
      SelectiveScan::apply(u, delta, A, B, C, or_none(h0), or_none(D), or_none(z), or_none(delta_bias), delta_softplus);
  return {out[0], out[1]};
}

SelectiveScanResult selective_step(const torch::Tensor& u_t, const torch::Tensor& delta_t, const torch::Tensor& A,
                                   const torch::Tensor& B_t, const torch::Tensor& C_t, const torch::Tensor& h) {
  const auto decay = torch::exp(delta_t.unsqueeze(-1) * A);  // [B, D, N]
  const auto next = decay * h + (delta_t * u_t).unsqueeze(-1) * B_t.unsqueeze(1);
  return {torch::einsum("bdn,bn->bd", {next, C_t}), next};
}

}  // namespace blocklab
