// The chunked form of the linear attention core (linear_core.h): Lightning Attention-2's tiling
// (Qin et al. 2024, arXiv:2401.04658, Algorithm 1), causal, with a state carried across chunks.
//
// The sequence is cut into chunks of m tokens; within a chunk the masked quadratic form, across
// chunks a d x e state. Chunks are grouped into tiles of about kTileTokens tokens that run one
// after the other, carrying the state: a tile's chunk scores, states and outputs stay in the
// CPU's caches, so the time grows with N like the number of tiles (whole-sequence tensors would
// leave the caches between 4k and 16k tokens on the 2-core machine and cost ~5x per 4x tokens).
//
// Training keeps q, k, v only and recomputes in the backward, as flash-linear-attention's chunk
// kernels do: the gradients of o_i = sum_{j <= i} M_ij (q_i . k_j) v_j are causal linear
// attentions themselves, forward in time for dq and backward in time for dk and dv (M depends
// on i - j only):
//   dq_i = sum_{j <= i} M_ij (do_i . v_j) k_j     dk_j = sum_{i >= j} M_ij (v_j . do_i) q_i
//   dv_j = sum_{i >= j} M_ij (k_j . q_i) do_i
// so the backward is three more tiled passes and the memory kept is that of q, k, v. This pays
// from the second tile on; a sequence of one tile (as in training on short sequences) keeps
// autograd's saved chunk scores, which are small enough to stay in cache: measured on the
// 2-core machine (bench mixers, batch 32, 256 tokens) recomputing was 19-38 % slower there,
// while at 16k tokens it is as fast or faster and keeps a half to two thirds of the memory.
// A decay that needs its own gradient (none of the registered mixers' decays: they are
// buffers) and per-token decays (SSD's, from the input) go through autograd too.
#include <vector>

#include "blocks/attention/parts/linear_core.h"

namespace blocklab {
namespace {

constexpr std::int64_t kTileTokens = 1024;

// The decay of the chunks of m tokens, per head; undefined members without decay. A per-head
// constant lambda, or per token (Mamba-2's SSD, Dao & Gu 2024, arXiv:2405.21060, sec. 6): with
// the decay a_t of step t and L_a the sum of log a over the chunk's tokens 0..a,
//   D_ab = exp(L_a - L_b) (b <= a),  q_a * exp(L_a),  k_b * exp(L_{m-1} - L_b),  exp(L_{m-1}),
// which for a_t = lambda are lambda^(a - b), lambda^(a + 1), lambda^(m - 1 - b), lambda^m.
struct ChunkDecay {
  torch::Tensor intra_mask;   // D: [h, 1, m, m] constant, [B, h, c, m, m] per token; [m, m] tril without decay
  torch::Tensor q_scale;      // [1, h, 1, m, 1] constant, [B, h, c, m, 1] per token
  torch::Tensor k_scale;      // as q_scale
  torch::Tensor chunk_scale;  // [1, h, 1, 1] constant, [B, h, c, 1, 1] per token (one per chunk)

  // log_decay: [h] (constant) or [B, h, n] (per token, n a multiple of m), or undefined.
  ChunkDecay(const torch::Tensor& log_decay, std::int64_t m, const torch::TensorOptions& opts) {
    if (!log_decay.defined()) {
      intra_mask = torch::ones({m, m}, opts).tril();
    } else if (log_decay.dim() == 1) {
      const auto h = log_decay.size(0);
      const auto local = torch::arange(m, opts);
      intra_mask = linear_decay_matrix(log_decay, m, true).unsqueeze(1);
      q_scale = linear_decay_powers(log_decay, local + 1).view({1, h, 1, m, 1});
      k_scale = linear_decay_powers(log_decay, (m - 1) - local).view({1, h, 1, m, 1});
      chunk_scale = torch::exp(log_decay * static_cast<double>(m)).view({1, h, 1, 1});
    } else {
      const auto b = log_decay.size(0), h = log_decay.size(1), c = log_decay.size(2) / m;
      const auto sums = log_decay.reshape({b, h, c, m}).cumsum(-1);  // L_a
      const auto last = sums.narrow(-1, m - 1, 1);
      intra_mask = linear_token_decay_matrix(log_decay.reshape({b, h, c, m}));
      q_scale = sums.exp().unsqueeze(-1);
      k_scale = (last - sums).exp().unsqueeze(-1);
      chunk_scale = last.exp().unsqueeze(-1);
    }
  }
  bool per_token() const { return chunk_scale.defined() && chunk_scale.dim() == 5; }
};

// One segment of whole chunks, from the state before it (S = sum over earlier tokens j of
// lambda^(t0 - 1 - j) k_j v_j^T, t0 its first token). Within the chunk starting at t0 (local rows
// a, columns b):
//   intra  [(Q_c K_c^T) * D] V_c,  D_ab = lambda^(a - b), b <= a
//   inter  (Q_c * lambda^(a + 1)) S_c
//   next   S_{c+1} = lambda^m S_c + (K_c * lambda^(m - 1 - b))^T V_c
// Returns the output and the state after the segment.
std::pair<torch::Tensor, torch::Tensor> causal_segment(const torch::Tensor& q, const torch::Tensor& k,
                                                       const torch::Tensor& v, const ChunkDecay& decay, std::int64_t m,
                                                       const torch::Tensor& state) {
  const auto b = q.size(0), h = q.size(1), c = q.size(2) / m, d = q.size(3), e = v.size(3);
  const auto qc = q.reshape({b, h, c, m, d}), kc = k.reshape({b, h, c, m, d}), vc = v.reshape({b, h, c, m, e});
  const auto intra = torch::matmul(torch::matmul(qc, kc.transpose(-1, -2)) * decay.intra_mask, vc);
  const auto scaled_k = decay.k_scale.defined() ? kc * decay.k_scale : kc;
  const auto chunk_kv = torch::matmul(scaled_k.transpose(-1, -2), vc);  // [b, h, c, d, e]
  torch::Tensor before, after;  // the state before each chunk, and after the last
  if (!decay.chunk_scale.defined()) {
    const auto running = chunk_kv.cumsum(2);
    before = running - chunk_kv + state.unsqueeze(2);
    after = state + running.select(2, c - 1);
  } else {  // a scan (unbind, not a select per chunk: each select's backward fills a whole zero tensor)
    std::vector<torch::Tensor> states;
    states.reserve(c);
    const auto per_chunk = chunk_kv.unbind(2);
    const auto scales = decay.per_token() ? decay.chunk_scale.unbind(2) : std::vector<torch::Tensor>{};
    auto s = state;
    for (std::int64_t i = 0; i < c; ++i) {
      states.push_back(s);
      s = (scales.empty() ? decay.chunk_scale : scales[i]) * s + per_chunk[i];
    }
    before = torch::stack(states, 2);
    after = s;
  }
  const auto inter = torch::matmul(decay.q_scale.defined() ? qc * decay.q_scale : qc, before);
  return {(intra + inter).reshape({b, h, c * m, e}), after};
}

// The causal pass over a sequence of whole chunks, tile by tile (split and cat, which autograd
// undoes in linear time). Reversed: o_j = sum_{i >= j} M_ij (q_j . k_i) v_i, the tiles taken from
// the last, each flipped in time.
std::int64_t tile_tokens(std::int64_t m) { return std::max<std::int64_t>(1, kTileTokens / m) * m; }

bool per_token(const torch::Tensor& log_decay) { return log_decay.defined() && log_decay.dim() == 3; }

torch::Tensor tiled(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                    const torch::Tensor& log_decay, std::int64_t m, bool reversed) {
  TORCH_CHECK(!(reversed && per_token(log_decay)), "linear attention: no reversed pass with per-token decays");
  const auto tile = tile_tokens(m);
  const auto qs = q.split(tile, 2), ks = k.split(tile, 2), vs = v.split(tile, 2);
  const auto tiles = static_cast<std::int64_t>(qs.size());
  const auto decays = per_token(log_decay) ? log_decay.split(tile, 2) : std::vector<torch::Tensor>{};
  const ChunkDecay constant(decays.empty() ? log_decay : torch::Tensor(), m, q.options());
  std::vector<torch::Tensor> out(tiles);
  auto state = torch::zeros({q.size(0), q.size(1), q.size(3), v.size(3)}, q.options());
  for (std::int64_t step = 0; step < tiles; ++step) {
    const auto t = reversed ? tiles - 1 - step : step;
    const auto time = [&](const torch::Tensor& x) { return reversed ? x.flip(2) : x; };
    const auto decay = decays.empty() ? constant : ChunkDecay(decays[t], m, q.options());
    auto [o, next] = causal_segment(time(qs[t]), time(ks[t]), time(vs[t]), decay, m, state);
    out[t] = time(o);
    state = next;
  }
  return tiles == 1 ? out[0] : torch::cat(out, 2);
}

// t [B, h, N, x] with `pad` zero tokens at the end: they add nothing to any sum. A per-token
// log decay [B, h, N] gets zeros (decay 1) there.
torch::Tensor padded(const torch::Tensor& t, std::int64_t pad) {
  namespace F = torch::nn::functional;
  if (pad == 0 || !t.defined() || t.dim() == 1) return t;
  return F::pad(
      t, F::PadFuncOptions(t.dim() == 3 ? std::vector<std::int64_t>{0, pad} : std::vector<std::int64_t>{0, 0, 0, pad}));
}

struct ConstantDecay {  // not a tensor argument of apply: autograd leaves it alone (it may be undefined)
  torch::Tensor log;
};

struct ChunkedCausal : torch::autograd::Function<ChunkedCausal> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const ConstantDecay& decay, std::int64_t chunk) {
    ctx->save_for_backward({q, k, v});
    if (decay.log.defined()) ctx->saved_data["log_decay"] = decay.log;
    ctx->saved_data["chunk"] = chunk;
    return linear_chunked_causal(q, k, v, decay.log, chunk);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto n = saved[0].size(2), chunk = ctx->saved_data["chunk"].toInt(), pad = (chunk - n % chunk) % chunk;
    const auto q = padded(saved[0], pad), k = padded(saved[1], pad), v = padded(saved[2], pad);
    const auto d_out = padded(grads[0].contiguous(), pad);
    const auto decay = ctx->saved_data.count("log_decay") ? ctx->saved_data["log_decay"].toTensor() : torch::Tensor();
    const auto first = [n](const torch::Tensor& t) { return t.narrow(2, 0, n); };
    return {first(tiled(d_out, v, k, decay, chunk, false)), first(tiled(v, d_out, q, decay, chunk, true)),
            first(tiled(k, q, d_out, decay, chunk, true)), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor linear_chunked_causal(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const torch::Tensor& log_decay, std::int64_t chunk) {
  const auto n = q.size(2), pad = (chunk - n % chunk) % chunk;
  return tiled(padded(q, pad), padded(k, pad), padded(v, pad), padded(log_decay, pad), chunk, false).narrow(2, 0, n);
}

torch::Tensor linear_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& log_decay, bool causal, std::int64_t chunk) {
  TORCH_CHECK(chunk > 0, "linear attention: the chunk length must be positive");
  const auto decay = log_decay.defined() ? log_decay.to(q.dtype()) : log_decay;
  if (!causal && !decay.defined()) return torch::matmul(q, torch::matmul(k.transpose(-1, -2), v));  // q (K^T V)
  TORCH_CHECK(causal || !per_token(decay), "linear attention: per-token decays are causal only");
  const auto pass = [&](const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& c) {
    if (a.size(2) <= tile_tokens(chunk) || per_token(decay) || (decay.defined() && decay.requires_grad()))
      return linear_chunked_causal(a, b, c, decay, chunk);
    return ChunkedCausal::apply(a, b, c, ConstantDecay{decay}, chunk);
  };
  if (causal) return pass(q, k, v);
  // lambda^|i - j| = the causal pass + the reversed causal pass - the diagonal counted twice.
  return pass(q, k, v) + pass(q.flip(2), k.flip(2), v.flip(2)).flip(2) - (q * k).sum(-1, true) * v;
}

}  // namespace blocklab
