#include "blocks/memory/titans_memory.h"

#include <cmath>
#include <limits>

namespace blocklab {

namespace {

torch::Tensor silu_derivative(const torch::Tensor& z) {
  const auto s = torch::sigmoid(z);
  return s * (1 + z * (1 - s));
}

// seg[..., t, s] = sum_{s<j<=t} x_j for t >= s, -inf above the diagonal (x [..., n] -> [..., n, n]);
// summed without subtraction, so log-gates of -inf (a gate of exactly 0) stay exact.
torch::Tensor segment_sums(const torch::Tensor& x) {
  const auto n = x.size(-1);
  auto sizes = x.sizes().vec();
  sizes.push_back(n);
  const auto bool_options = torch::TensorOptions().dtype(torch::kBool).device(x.device());
  const auto strictly_lower = torch::ones({n, n}, bool_options).tril(-1);
  const auto rows = x.unsqueeze(-1).expand(sizes).masked_fill(~strictly_lower, 0.0);  // rows[t, s] = x_t, t > s
  const auto above = torch::ones({n, n}, bool_options).triu(1);
  return rows.cumsum(-2).masked_fill(above, -std::numeric_limits<double>::infinity());
}

// [B, h, n] -> [B, h, 1, 1] (a per-matrix scale).
torch::Tensor per_matrix(const torch::Tensor& t) { return t.unsqueeze(-1).unsqueeze(-1); }

torch::Tensor l2_normalise(const torch::Tensor& x) { return x * torch::rsqrt(x.pow(2).sum(-1, true) + 1e-12); }

}  // namespace

torch::Tensor memory_apply(const std::vector<torch::Tensor>& w, const torch::Tensor& x) {
  auto a = x;
  for (std::size_t l = 0; l < w.size(); ++l) {
    a = torch::matmul(a, w[l]);
    if (l + 1 < w.size()) a = torch::silu(a);
  }
  return a;
}

MemoryGradients memory_gradients(const std::vector<torch::Tensor>& w, const torch::Tensor& k, const torch::Tensor& v) {
  const auto layers = w.size();
  MemoryGradients g{std::vector<torch::Tensor>(layers), std::vector<torch::Tensor>(layers)};
  std::vector<torch::Tensor> pre(layers);  // pre-activations z_l = a_l W_l
  auto a = k;
  for (std::size_t l = 0; l < layers; ++l) {
    g.inputs[l] = a;
    pre[l] = torch::matmul(a, w[l]);
    a = l + 1 < layers ? torch::silu(pre[l]) : pre[l];
  }
  auto delta = 2 * (a - v);  // d/d out of ||out - v||^2
  for (std::size_t l = layers; l-- > 0;) {
    g.deltas[l] = delta;
    if (l > 0) delta = torch::matmul(delta, w[l].transpose(-1, -2)) * silu_derivative(pre[l - 1]);
  }
  return g;
}

ChunkCoefficients chunk_coefficients(const MemoryGates& gates) {
  const auto n = gates.theta.size(-1);
  const auto P = torch::exp(segment_sums(gates.log_eta));   // P(t, s) = prod_{s<j<=t} eta_j
  const auto Q = torch::exp(segment_sums(gates.log_keep));  // Q(t, s) = prod_{s<j<=t} (1 - alpha_j)
  ChunkCoefficients c;
  c.P0 = torch::exp(gates.log_eta.cumsum(-1));             // P(t, 0)
  c.Q0 = torch::exp(gates.log_keep.cumsum(-1));            // Q(t, 0)
  c.R = torch::matmul(Q, c.P0.unsqueeze(-1)).squeeze(-1);  // sum_r Q(t,r) P(r,0)
  c.C = torch::matmul(Q, P) * gates.theta.unsqueeze(-2);   // C(t, s), zero for s > t
  c.theta_P_last = P.select(-2, n - 1) * gates.theta;      // theta_s P(b, s)
  return c;
}

ChunkCoefficients ChunkCoefficients::select(std::int64_t dim, std::int64_t index) const {
  return {P0.select(dim, index), Q0.select(dim, index), R.select(dim, index), C.select(dim, index),
          theta_P_last.select(dim, index)};
}

MemoryChunk memory_chunk(const std::vector<torch::Tensor>& at, const MemoryWeights& start, const torch::Tensor& k,
                         const torch::Tensor& v, const torch::Tensor& q, const ChunkCoefficients& c) {
  const auto n = k.size(-2);
  const MemoryGradients g = memory_gradients(at, k, v);
  const auto C_last = c.C.select(-2, n - 1);
  MemoryChunk out;
  for (std::size_t l = 0; l < at.size(); ++l) {
    const auto inputs_t = g.inputs[l].transpose(-1, -2);  // [B, h, d_in, n]
    out.state.w.push_back(per_matrix(c.Q0.select(-1, n - 1)) * start.w[l] +
                          per_matrix(c.R.select(-1, n - 1)) * start.s[l] -
                          torch::matmul(inputs_t, C_last.unsqueeze(-1) * g.deltas[l]));
    out.state.s.push_back(per_matrix(c.P0.select(-1, n - 1)) * start.s[l] -
                          torch::matmul(inputs_t, c.theta_P_last.unsqueeze(-1) * g.deltas[l]));
  }
  if (q.defined()) {  // x_t W_t = Q(t,0) x_t W_0 + R(t) x_t S_0 - sum_s C(t,s) (x_t . a_s) delta_s, layer by layer
    auto a = q;
    for (std::size_t l = 0; l < at.size(); ++l) {
      auto z = c.Q0.unsqueeze(-1) * torch::matmul(a, start.w[l]) + c.R.unsqueeze(-1) * torch::matmul(a, start.s[l]) -
               torch::matmul(torch::matmul(a, g.inputs[l].transpose(-1, -2)) * c.C, g.deltas[l]);
      a = l + 1 < at.size() ? torch::silu(z) : z;
    }
    out.outputs = a;
  }
  return out;
}

MemoryChunk memory_chunk(const std::vector<torch::Tensor>& at, const MemoryWeights& start, const torch::Tensor& k,
                         const torch::Tensor& v, const torch::Tensor& q, const MemoryGates& gates) {
  return memory_chunk(at, start, k, v, q, chunk_coefficients(gates));
}

NeuralMemoryImpl::NeuralMemoryImpl(std::int64_t dim, const NeuralMemoryOptions& o)
    : heads_(o.heads()), head_dim_(dim / o.heads()), chunk_(o.chunk()), max_lr_(o.max_lr()) {
  qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(false)));
  conv = register_module("conv", ShortConv(3 * dim, o.conv(), /*causal=*/true));
  gates = register_module("gates", torch::nn::Linear(dim, 3 * heads_));
  {
    // Forgetting starts weak (alpha ~ sigmoid(-5) = 0.007, a memory of ~150 tokens): with the default
    // bias, alpha ~ 0.5 erases W_0 and every write within a few tokens. theta and eta keep bias ~ 0.
    torch::NoGradGuard no_grad;
    gates->bias.narrow(0, 2 * heads_, heads_).fill_(-5.0);
  }
  std::vector<std::int64_t> widths{head_dim_};
  for (std::int64_t l = 1; l < o.depth(); ++l) widths.push_back(o.expansion() * head_dim_);
  widths.push_back(head_dim_);
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    const auto init = torch::randn({heads_, widths[l], widths[l + 1]}) / std::sqrt(static_cast<double>(widths[l]));
    w0.push_back(register_parameter("w0_" + std::to_string(l), init));
  }
}

NeuralMemoryImpl::Terms NeuralMemoryImpl::terms(const torch::Tensor& x, const torch::Tensor& window) {
  const auto b = x.size(0), n = x.size(1), c = heads_ * head_dim_;
  const auto projected = qkv->forward(x);  // [B, n, 3C]
  const auto before = window.defined() ? window : conv->init_window(b, x.options());
  const auto joined = torch::cat({before.transpose(1, 2), projected}, 1);  // the conv continues the span
  const auto taps = conv->taps();
  const auto convolved = torch::silu(conv->forward(joined).narrow(1, taps - 1, n));
  const auto heads = [&](std::int64_t i) {
    return convolved.narrow(-1, i * c, c).view({b, n, heads_, head_dim_}).transpose(1, 2);
  };
  const auto logits = gates->forward(x).view({b, n, 3, heads_}).permute({2, 0, 3, 1});  // [3, B, h, n]
  // theta / d: the loss is the mean over the head's d features (titans_memory.h).
  MemoryGates g{max_lr_ / static_cast<double>(head_dim_) * torch::sigmoid(logits[0]), torch::log_sigmoid(logits[1]),
                torch::log_sigmoid(-logits[2])};
  return {l2_normalise(heads(0)), l2_normalise(heads(1)), heads(2), g,
          joined.narrow(1, joined.size(1) - (taps - 1), taps - 1).transpose(1, 2)};
}

MemoryWeights NeuralMemoryImpl::initial(std::int64_t batch) const {
  MemoryWeights m;
  for (const auto& w : w0) {
    m.w.push_back(w.unsqueeze(0).expand({batch, w.size(0), w.size(1), w.size(2)}));
    m.s.push_back(torch::zeros({batch, w.size(0), w.size(1), w.size(2)}, w.options()));
  }
  return m;
}

torch::Tensor NeuralMemoryImpl::merge(const torch::Tensor& heads) const {
  return heads.transpose(1, 2).reshape({heads.size(0), heads.size(2), heads_ * head_dim_});
}

torch::Tensor NeuralMemoryImpl::read(const std::vector<torch::Tensor>& w, const torch::Tensor& q) const {
  return merge(memory_apply(w, q));
}

torch::Tensor NeuralMemoryImpl::forward(const torch::Tensor& x, MemoryWeights& state, torch::Tensor& window) {
  Terms t = terms(x, window);
  window = t.window;
  // The gates' products do not depend on the state: those of all whole chunks at once.
  const auto n = x.size(1), whole = n / chunk_;
  const auto per_chunk = [&](const torch::Tensor& g) {
    return g.narrow(-1, 0, whole * chunk_).view({g.size(0), g.size(1), whole, chunk_});
  };
  ChunkCoefficients coefficients;
  if (whole > 0)
    coefficients =
        chunk_coefficients({per_chunk(t.gates.theta), per_chunk(t.gates.log_eta), per_chunk(t.gates.log_keep)});
  std::vector<torch::Tensor> outputs;
  for (std::int64_t from = 0; from < n; from += chunk_) {
    const auto size = std::min(chunk_, n - from);
    const auto c =
        size == chunk_ ? coefficients.select(2, from / chunk_) : chunk_coefficients(t.gates.narrow(from, size));
    MemoryChunk out = memory_chunk(state.w, state, t.k.narrow(2, from, size), t.v.narrow(2, from, size),
                                   t.q.narrow(2, from, size), c);
    outputs.push_back(out.outputs);
    state = std::move(out.state);
  }
  return merge(torch::cat(outputs, 2));
}

torch::Tensor NeuralMemoryImpl::forward(const torch::Tensor& x) {
  MemoryWeights state = initial(x.size(0));
  torch::Tensor window;
  return forward(x, state, window);
}

std::vector<torch::Tensor> NeuralMemoryImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) const {
  const MemoryWeights m = initial(batch);
  std::vector<torch::Tensor> state{conv->init_window(batch, options)};
  for (const auto& w : m.w) state.push_back(w.to(options).contiguous());  // W', the chunk's start
  for (const auto& w : m.w) state.push_back(w.to(options).contiguous());  // W
  for (const auto& s : m.s) state.push_back(s.to(options));               // S
  return state;
}

std::pair<torch::Tensor, std::vector<torch::Tensor>> NeuralMemoryImpl::step(const torch::Tensor& x_t,
                                                                            const std::vector<torch::Tensor>& state,
                                                                            std::int64_t position) {
  const auto layers = static_cast<std::int64_t>(w0.size());
  const auto part = [&](std::int64_t i) {
    return std::vector<torch::Tensor>(state.begin() + 1 + i * layers, state.begin() + 1 + (i + 1) * layers);
  };
  const auto at = part(0);
  const Terms t = terms(x_t.unsqueeze(1), state.at(0));
  MemoryChunk c = memory_chunk(at, MemoryWeights{part(1), part(2)}, t.k, t.v, t.q, t.gates);
  const bool chunk_ends = (position + 1) % chunk_ == 0;  // the chunked form takes new gradient weights
  std::vector<torch::Tensor> next{t.window};
  for (const auto& w : chunk_ends ? c.state.w : at) next.push_back(w);
  for (const auto& w : c.state.w) next.push_back(w);
  for (const auto& s : c.state.s) next.push_back(s);
  return {merge(c.outputs).squeeze(1), next};
}

}  // namespace blocklab
