#include "blocks/common/selective_scan.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace blocklab {
namespace {

constexpr std::int64_t kLanes = 8;   // channels one task walks through time together, one per vector lane
constexpr std::int64_t kSteps = 64;  // steps per chunk: one batched exp, one checkpoint of the state

struct Dims {
  std::int64_t batch, length, channels, states;
  std::int64_t chunks() const { return (length + kSteps - 1) / kSteps; }
  std::int64_t blocks() const { return (channels + kLanes - 1) / kLanes; }
};

template <typename T>
struct Inputs {
  const T *u, *delta, *A, *B, *C;
};

// One task's view: channels [d0, d0 + dc) of the block `block`, and the chunk [t0, t0 + steps)
// of batch entry b. Every per-channel buffer is laid out [..][kLanes], the channels innermost,
// so that the loops over them have no reductions and vectorise; lanes past dc hold zeros
// (delta = 0: their state stays 0).
template <typename T>
struct Block {
  const Inputs<T>& in;
  const Dims& s;
  std::int64_t block, d0, dc;
  std::vector<T> A;      // [N][kLanes]
  std::vector<T> delta;  // [kSteps][kLanes]
  std::vector<T> u;      // [kSteps][kLanes]
  std::vector<T> decay;  // [kSteps][N][kLanes]: exp(delta A)
  std::vector<T> h;      // [N][kLanes]: the state

  Block(const Inputs<T>& inputs, const Dims& dims, std::int64_t index)
      : in(inputs), s(dims), block(index), d0(index * kLanes), dc(std::min(kLanes, dims.channels - index * kLanes)),
        A(dims.states * kLanes, T(0)), delta(kSteps * kLanes), u(kSteps * kLanes),
        decay(kSteps * dims.states * kLanes), h(dims.states * kLanes) {
    for (std::int64_t l = 0; l < dc; ++l)
      for (std::int64_t n = 0; n < s.states; ++n) A[n * kLanes + l] = in.A[(d0 + l) * s.states + n];
  }
  std::int64_t at(std::int64_t b, std::int64_t t) const { return (b * s.length + t) * s.channels + d0; }

  // Reads the chunk's delta and u and discretises A: decay = exp(delta A), one vectorised exp
  // (ATen's) for the chunk instead of an exp call per element.
  void load(std::int64_t b, std::int64_t t0, std::int64_t steps) {
    std::fill(delta.begin(), delta.end(), T(0));
    std::fill(u.begin(), u.end(), T(0));
    for (std::int64_t t = 0; t < steps; ++t)
      for (std::int64_t l = 0; l < dc; ++l) {
        delta[t * kLanes + l] = in.delta[at(b, t0 + t) + l];
        u[t * kLanes + l] = in.u[at(b, t0 + t) + l];
      }
    for (std::int64_t t = 0; t < steps; ++t)
      for (std::int64_t n = 0; n < s.states; ++n)
        for (std::int64_t l = 0; l < kLanes; ++l)
          decay[(t * s.states + n) * kLanes + l] = delta[t * kLanes + l] * A[n * kLanes + l];
    torch::from_blob(decay.data(), {steps * s.states * kLanes}, c10::CppTypeToScalarType<T>::value).exp_();
  }

  // The state [B, (rows), D, N] of a global tensor <-> h.
  void read_state(const T* from, std::int64_t row) {
    std::fill(h.begin(), h.end(), T(0));
    for (std::int64_t l = 0; l < dc; ++l)
      for (std::int64_t n = 0; n < s.states; ++n) h[n * kLanes + l] = from[(row * s.channels + d0 + l) * s.states + n];
  }
  void write_state(T* to, std::int64_t row, const std::vector<T>& state) const {
    for (std::int64_t l = 0; l < dc; ++l)
      for (std::int64_t n = 0; n < s.states; ++n) to[(row * s.channels + d0 + l) * s.states + n] = state[n * kLanes + l];
  }

  // h <- decay_t h + delta_t u_t B_t over the chunk; y_t = C_t . h when `y` is given; the states
  // after each step into states[t + 1] when `states` is given ([steps + 1][N][kLanes]).
  void walk(std::int64_t b, std::int64_t t0, std::int64_t steps, T* y, T* states) {
    const auto n_states = s.states;
    for (std::int64_t t = 0; t < steps; ++t) {
      const T *Bt = in.B + (b * s.length + t0 + t) * n_states, *Ct = in.C + (b * s.length + t0 + t) * n_states;
      T du[kLanes], acc[kLanes] = {};
      for (std::int64_t l = 0; l < kLanes; ++l) du[l] = delta[t * kLanes + l] * u[t * kLanes + l];
      for (std::int64_t n = 0; n < n_states; ++n) {
        const T* a = decay.data() + (t * n_states + n) * kLanes;
        T* hn = h.data() + n * kLanes;
        for (std::int64_t l = 0; l < kLanes; ++l) {
          hn[l] = a[l] * hn[l] + du[l] * Bt[n];
          acc[l] += Ct[n] * hn[l];
        }
      }
      if (y)
        for (std::int64_t l = 0; l < dc; ++l) y[at(b, t0 + t) + l] = acc[l];
      if (states) std::copy(h.begin(), h.end(), states + (t + 1) * n_states * kLanes);
    }
  }
};

template <typename T>
void forward_kernel(const Inputs<T>& in, const T* h0, const Dims& s, T* y, T* checkpoints, T* last) {
  at::parallel_for(0, s.blocks(), 1, [&](std::int64_t from, std::int64_t to) {
    for (std::int64_t index = from; index < to; ++index) {
      Block<T> block(in, s, index);
      for (std::int64_t b = 0; b < s.batch; ++b) {
        if (h0) block.read_state(h0, b);
        else std::fill(block.h.begin(), block.h.end(), T(0));
        for (std::int64_t c = 0; c < s.chunks(); ++c) {
          const auto t0 = c * kSteps, steps = std::min(kSteps, s.length - t0);
          block.write_state(checkpoints, b * s.chunks() + c, block.h);
          block.load(b, t0, steps);
          block.walk(b, t0, steps, y, static_cast<T*>(nullptr));
        }
        block.write_state(last, b, block.h);
      }
    }
  });
}

template <typename T>
struct Grads {
  T *du, *ddelta, *dA, *dB_parts, *dC_parts, *dh0;  // d*_parts [blocks, B, L, N]: summed after
};

// Backwards through one chunk, its states recomputed in `states` ([steps + 1][N][kLanes],
// states[0] the state before the chunk). g [N][kLanes] carries a_{t+1} dL/dh_{t+1} in and
// a_t dL/dh_t out:
//   dL/dh_t = dy_t C_t + a_{t+1} dL/dh_{t+1},  dL/da_t = dL/dh_t h_{t-1},
//   dL/d(delta_t u_t B_t) = dL/dh_t,  and a_t = exp(delta_t A) chains into delta and A.
template <typename T>
void chunk_backward(Block<T>& blk, const T* dy, std::int64_t b, std::int64_t t0, std::int64_t steps,
                    const T* states, T* g, T* dA, const Grads<T>& out) {
  const auto& s = blk.s;
  const auto n_states = s.states;
  for (std::int64_t t = steps - 1; t >= 0; --t) {
    const auto row = b * s.length + t0 + t;
    const T *Bt = blk.in.B + row * n_states, *Ct = blk.in.C + row * n_states;
    const auto part = ((blk.block * s.batch + b) * s.length + t0 + t) * n_states;
    T *dBt = out.dB_parts + part, *dCt = out.dC_parts + part;
    T dyt[kLanes] = {}, du[kLanes], d_delta[kLanes] = {}, d_du[kLanes] = {};
    for (std::int64_t l = 0; l < blk.dc; ++l) dyt[l] = dy[blk.at(b, t0 + t) + l];
    for (std::int64_t l = 0; l < kLanes; ++l) du[l] = blk.delta[t * kLanes + l] * blk.u[t * kLanes + l];
    for (std::int64_t n = 0; n < n_states; ++n) {
      const T* a = blk.decay.data() + (t * n_states + n) * kLanes;
      const T *before = states + (t * n_states + n) * kLanes, *after = before + n_states * kLanes;
      const T* A = blk.A.data() + n * kLanes;
      T *gn = g + n * kLanes, *dAn = dA + n * kLanes;
      T grad_h[kLanes], grad_exponent[kLanes];
      for (std::int64_t l = 0; l < kLanes; ++l) {
        grad_h[l] = gn[l] + dyt[l] * Ct[n];
        grad_exponent[l] = grad_h[l] * before[l] * a[l];  // dL/d(delta A)
        d_delta[l] += grad_exponent[l] * A[l];
        dAn[l] += grad_exponent[l] * blk.delta[t * kLanes + l];
        d_du[l] += grad_h[l] * Bt[n];
        gn[l] = grad_h[l] * a[l];
      }
      T db = 0, dc = 0;
      for (std::int64_t l = 0; l < kLanes; ++l) {
        db += grad_h[l] * du[l];
        dc += dyt[l] * after[l];
      }
      dBt[n] += db;
      dCt[n] += dc;
    }
    for (std::int64_t l = 0; l < blk.dc; ++l) {
      out.du[blk.at(b, t0 + t) + l] = d_du[l] * blk.delta[t * kLanes + l];
      out.ddelta[blk.at(b, t0 + t) + l] = d_delta[l] + d_du[l] * blk.u[t * kLanes + l];
    }
  }
}

template <typename T>
void backward_kernel(const Inputs<T>& in, const T* dy, const T* checkpoints, const Dims& s, const Grads<T>& out) {
  at::parallel_for(0, s.blocks(), 1, [&](std::int64_t from, std::int64_t to) {
    for (std::int64_t index = from; index < to; ++index) {
      Block<T> block(in, s, index);
      const auto state = s.states * kLanes;
      std::vector<T> g(state), dA(state, T(0)), states((kSteps + 1) * state);
      for (std::int64_t b = 0; b < s.batch; ++b) {
        std::fill(g.begin(), g.end(), T(0));
        for (std::int64_t c = s.chunks() - 1; c >= 0; --c) {
          const auto t0 = c * kSteps, steps = std::min(kSteps, s.length - t0);
          block.read_state(checkpoints, b * s.chunks() + c);
          std::copy(block.h.begin(), block.h.end(), states.begin());
          block.load(b, t0, steps);
          block.walk(b, t0, steps, static_cast<T*>(nullptr), states.data());
          chunk_backward(block, dy, b, t0, steps, states.data(), g.data(), dA.data(), out);
        }
        if (out.dh0) block.write_state(out.dh0, b, g);
      }
      // dA [D, N] of this block's channels (every batch entry summed in).
      for (std::int64_t l = 0; l < block.dc; ++l)
        for (std::int64_t n = 0; n < s.states; ++n) out.dA[(block.d0 + l) * s.states + n] = dA[n * kLanes + l];
    }
  });
}

struct SelectiveScan : torch::autograd::Function<SelectiveScan> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& u_in,
                                                const torch::Tensor& delta_in, const torch::Tensor& A_in,
                                                const torch::Tensor& B_in, const torch::Tensor& C_in,
                                                const torch::Tensor& h0_in) {
    const auto u = u_in.contiguous(), delta = delta_in.contiguous(), A = A_in.contiguous(), B = B_in.contiguous(),
               C = C_in.contiguous();
    const auto h0 = h0_in.numel() > 0 ? h0_in.contiguous() : torch::Tensor();  // empty: no initial state
    const Dims s{u.size(0), u.size(1), u.size(2), A.size(1)};
    auto y = torch::empty_like(u);
    auto checkpoints = torch::empty({s.batch, s.chunks(), s.channels, s.states}, u.options());
    auto last = torch::empty({s.batch, s.channels, s.states}, u.options());
    AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan", [&] {
      const Inputs<scalar_t> in{u.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
                                B.data_ptr<scalar_t>(), C.data_ptr<scalar_t>()};
      forward_kernel(in, h0.defined() ? h0.data_ptr<scalar_t>() : nullptr, s, y.data_ptr<scalar_t>(),
                     checkpoints.data_ptr<scalar_t>(), last.data_ptr<scalar_t>());
    });
    ctx->save_for_backward({u, delta, A, B, C, checkpoints});
    ctx->saved_data["has_h0"] = h0.defined();
    ctx->mark_non_differentiable({last});
    return {y, last};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    TORCH_CHECK(!torch::GradMode::is_enabled(), "selective_scan: the fused backward is not differentiable again");
    const auto saved = ctx->get_saved_variables();
    const auto &u = saved[0], &delta = saved[1], &A = saved[2], &B = saved[3], &C = saved[4], &checkpoints = saved[5];
    const Dims s{u.size(0), u.size(1), u.size(2), A.size(1)};
    const auto dy = grads[0].defined() ? grads[0].contiguous() : torch::zeros_like(u);
    const bool has_h0 = ctx->saved_data["has_h0"].toBool();
    auto du = torch::empty_like(u), ddelta = torch::empty_like(u), dA = torch::empty_like(A);
    auto dB_parts = torch::zeros({s.blocks(), s.batch, s.length, s.states}, u.options()), dC_parts = torch::zeros_like(dB_parts);
    auto dh0 = has_h0 ? torch::empty({s.batch, s.channels, s.states}, u.options()) : torch::Tensor();
    AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_backward", [&] {
      const Inputs<scalar_t> in{u.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
                                B.data_ptr<scalar_t>(), C.data_ptr<scalar_t>()};
      const Grads<scalar_t> out{du.data_ptr<scalar_t>(),       ddelta.data_ptr<scalar_t>(),
                                dA.data_ptr<scalar_t>(),       dB_parts.data_ptr<scalar_t>(),
                                dC_parts.data_ptr<scalar_t>(), has_h0 ? dh0.data_ptr<scalar_t>() : nullptr};
      backward_kernel(in, dy.data_ptr<scalar_t>(), checkpoints.data_ptr<scalar_t>(), s, out);
    });
    return {du, ddelta, dA, dB_parts.sum(0), dC_parts.sum(0), dh0};
  }
};

void check_shapes(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
                  const torch::Tensor& C, const torch::Tensor& h0) {
  TORCH_CHECK(u.dim() == 3 && delta.sizes() == u.sizes() && u.size(1) >= 1,
              "selective_scan: u and delta must be [B, L >= 1, D], got ", u.sizes(), " and ", delta.sizes());
  TORCH_CHECK(A.dim() == 2 && A.size(0) == u.size(2), "selective_scan: A must be [D, N], got ", A.sizes());
  const std::vector<std::int64_t> bc{u.size(0), u.size(1), A.size(1)};
  TORCH_CHECK(B.sizes() == torch::IntArrayRef(bc) && C.sizes() == torch::IntArrayRef(bc),
              "selective_scan: B and C must be [B, L, N], got ", B.sizes(), " and ", C.sizes());
  TORCH_CHECK(!h0.defined() || h0.sizes() == torch::IntArrayRef({u.size(0), u.size(2), A.size(1)}),
              "selective_scan: h0 must be [B, D, N], got ", h0.sizes());
}

}  // namespace

SelectiveScanResult selective_scan_reference(const torch::Tensor& u, const torch::Tensor& delta,
                                             const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& C,
                                             const torch::Tensor& h0) {
  check_shapes(u, delta, A, B, C, h0);
  // The naive scan of the official code (mamba_ssm selective_scan_ref): the discretised terms
  // materialised, then one step and one read-out per token.
  const auto decay = torch::exp(delta.unsqueeze(-1) * A);                       // [B, L, D, N]
  const auto input = (delta * u).unsqueeze(-1) * B.unsqueeze(2);                // [B, L, D, N]
  auto h = h0.defined() ? h0 : torch::zeros({u.size(0), u.size(2), A.size(1)}, u.options());
  const auto decays = decay.unbind(1), inputs = input.unbind(1), cs = C.unbind(1);
  std::vector<torch::Tensor> ys;
  ys.reserve(decays.size());
  for (std::size_t t = 0; t < decays.size(); ++t) {
    h = decays[t] * h + inputs[t];
    ys.push_back(torch::einsum("bdn,bn->bd", {h, cs[t]}));
  }
  return {torch::stack(ys, 1), h};
}

SelectiveScanResult selective_scan(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                                   const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& h0) {
  check_shapes(u, delta, A, B, C, h0);
  const bool same_type = delta.scalar_type() == u.scalar_type() && A.scalar_type() == u.scalar_type() &&
                         B.scalar_type() == u.scalar_type() && C.scalar_type() == u.scalar_type();
  TORCH_CHECK(same_type, "selective_scan: u, delta, A, B and C must share one floating type");
  if (!u.device().is_cpu()) return selective_scan_reference(u, delta, A, B, C, h0);  // no fused GPU kernel yet
  // (autograd Functions take no undefined tensors: an empty one stands for "no initial state")
  const auto out = SelectiveScan::apply(u, delta, A, B, C, h0.defined() ? h0 : torch::empty({0}, u.options()));
  return {out[0], out[1]};
}

SelectiveScanResult selective_step(const torch::Tensor& u_t, const torch::Tensor& delta_t, const torch::Tensor& A,
                                   const torch::Tensor& B_t, const torch::Tensor& C_t, const torch::Tensor& h) {
  const auto decay = torch::exp(delta_t.unsqueeze(-1) * A);  // [B, D, N]
  const auto next = decay * h + (delta_t * u_t).unsqueeze(-1) * B_t.unsqueeze(1);
  return {torch::einsum("bdn,bn->bd", {next, C_t}), next};
}

}  // namespace blocklab
