// The neural long-term memory (LMM) of Titans: an MLP whose weights are the recurrent state,
// written at test time by gradient steps on an associative loss, with momentum and forgetting.
//
// Paper: "Titans: Learning to Memorize at Test Time", Behrouz, Zhong, Mirrokni, 2024,
// arXiv:2501.00663, §3.1 (eqs. 8-16), §3.2 (parallel training, eqs. 16-18), §4.4. No official
// code; lucidrains/titans-pytorch (unofficial) read for defaults (memory depth 2, expansion 4,
// max_lr 0.1, the depthwise conv and l2-normalised q, k).
//
// Per head h (width d): a memory M_W: R^d -> R^d, an MLP of depth L (L = 1: linear, M(k) = k W_1;
// L >= 2: M(k) = silu(... silu(k W_1) ...) W_L, hidden width expansion x d, no biases). Its
// weights W = (W_1..W_L) [B, h, d_in, d_out] start at learned W_0 (shared by the batch).
//   q_t, k_t, v_t = silu(DWConv(x W_Q|K|V)), q and k l2-normalised per head        (§4.4)
//   loss(W; x_t) = || M_W(k_t) - v_t ||^2 / d                                       (eq. 12)
//   theta_t = max_lr sigmoid(x_t w_theta), eta_t = sigmoid(x_t w_eta), alpha_t = sigmoid(x_t w_alpha)   per head
// (The loss is the mean over the head's d features, as titans-pytorch's MSE, so max_lr = 0.1 is
// a step of the same size at every width: with the sum, a chunk of 16 steps at 0.1 made the
// memory diverge within the first 256 tokens of a width-128 LM. Written as theta_t / d on the
// gradient of the sum; memory_chunk takes that theta.)
//   S_t = eta_t S_{t-1} - theta_t grad loss(W'; x_t),  W_t = (1 - alpha_t) W_{t-1} + S_t   (eqs. 13-14)
//   y_t = M_{W_t}(q_t)                                                              (eq. 15)
// (Initialisation, ours: W_0 ~ N(0, 1/d_in); the alpha logits' bias -5, so that forgetting starts
// weak; the paper gives none.)
// Chunked training form (§3.2, mini-batch gradient descent): the tokens of a chunk of b take
// their gradients at the weights W' of the chunk's start; the recurrences of S and W inside the
// chunk are then linear and are written in closed form with the products
//   P(t, s) = prod_{s<j<=t} eta_j,  Q(t, s) = prod_{s<j<=t} (1 - alpha_j):
//   S_t = P(t,0) S_0 - sum_{s<=t} theta_s P(t,s) g_s
//   W_t = Q(t,0) W_0 + (sum_{r<=t} Q(t,r) P(r,0)) S_0 - sum_{s<=t} C(t,s) g_s,  C = (Q P) diag(theta).
// Each g_s is an outer product per layer (g_s = a_s^T delta_s: the layer's input and the loss's
// gradient at its output), so the chunk-end weights are matmuls (A^T diag(c) Delta) and the
// outputs at every token's own weights W_t need no per-token copy of W (TTT's dual form):
//   x_t W_t = Q(t,0) x_t W_0 + R(t) x_t S_0 - sum_s C(t,s) (x_t . a_s) delta_s.
// Chunk 1 is the per-token recurrence (online gradient descent). The step (the recurrent
// protocol) keeps the chunk's start weights W' beside the running W and S, so stepping equals
// the chunked form at every chunk size.
#pragma once

#include <vector>

#include "blocks/common/ssm_parts.h"

namespace blocklab {

// The memory's recurrent state: weights W and momentum S per layer, [B, h, d_in, d_out] each.
struct MemoryWeights {
  std::vector<torch::Tensor> w, s;
};

// The data-dependent scalars of a token span, [B, h, n] each: theta_t, log eta_t, log(1 - alpha_t).
struct MemoryGates {
  torch::Tensor theta, log_eta, log_keep;
  MemoryGates narrow(std::int64_t from, std::int64_t length) const {
    return {theta.narrow(-1, from, length), log_eta.narrow(-1, from, length), log_keep.narrow(-1, from, length)};
  }
};

// M_W(x) for x [B, h, n, d] and weights [B, h, d_in, d_out] per layer (silu between layers).
torch::Tensor memory_apply(const std::vector<torch::Tensor>& w, const torch::Tensor& x);

// The per-token gradients of ||M_W(k_s) - v_s||^2 as outer products: for each layer l, the inputs
// a_l [B, h, n, d_in] and the output gradients delta_l [B, h, n, d_out], g_s,l = a_l[s]^T delta_l[s].
struct MemoryGradients {
  std::vector<torch::Tensor> inputs, deltas;
};
MemoryGradients memory_gradients(const std::vector<torch::Tensor>& w, const torch::Tensor& k, const torch::Tensor& v);

// One chunk of the update: gradients of keys k, values v [B, h, n, d] at `at` (the chunk's start
// weights); `start` the weights and momentum before the chunk (equal to `at` in the chunked
// forward; the running state while stepping). Returns the state after the chunk and, when
// queries q [B, h, n, d] are given, y_t = M_{W_t}(q_t) at every token's weights [B, h, n, d].
struct MemoryChunk {
  MemoryWeights state;
  torch::Tensor outputs;
};
MemoryChunk memory_chunk(const std::vector<torch::Tensor>& at, const MemoryWeights& start, const torch::Tensor& k,
                         const torch::Tensor& v, const torch::Tensor& q, const MemoryGates& gates);

// What the update needs from the gates alone (no state), for gates [..., n]: P(t, 0), Q(t, 0),
// R(t) = sum_r Q(t,r) P(r,0) [..., n], C(t, s) [..., n, n], theta_s P(n, s) [..., n]. Computed
// for all whole chunks at once ([B, h, chunks, b]); select(2, i) takes chunk i.
struct ChunkCoefficients {
  torch::Tensor P0, Q0, R, C, theta_P_last;
  ChunkCoefficients select(std::int64_t dim, std::int64_t index) const;
};
ChunkCoefficients chunk_coefficients(const MemoryGates& gates);
MemoryChunk memory_chunk(const std::vector<torch::Tensor>& at, const MemoryWeights& start, const torch::Tensor& k,
                         const torch::Tensor& v, const torch::Tensor& q, const ChunkCoefficients& coefficients);

struct NeuralMemoryOptions {
  TORCH_ARG(std::int64_t, heads) = 4;
  TORCH_ARG(std::int64_t, depth) = 2;      // layers L of the memory MLP (1 = linear memory)
  TORCH_ARG(std::int64_t, expansion) = 4;  // hidden width / head width (depth >= 2)
  TORCH_ARG(std::int64_t, chunk) = 16;     // tokens per chunk of the parallel form (1 = per token)
  TORCH_ARG(double, max_lr) = 0.1;         // theta_t = max_lr sigmoid(.)
  TORCH_ARG(std::int64_t, conv) = 4;       // taps of the causal depthwise conv after W_Q, W_K, W_V
};

// The LMM as a module: x [B, n, C] -> the memory's read-outs [B, n, C] (heads merged; no W_O).
class NeuralMemoryImpl : public torch::nn::Module {
 public:
  NeuralMemoryImpl(std::int64_t dim, const NeuralMemoryOptions& options = {});

  // What the memory reads and writes for a token span: q, k, v [B, h, n, d] and the gates.
  struct Terms {
    torch::Tensor q, k, v;
    MemoryGates gates;
    torch::Tensor window;  // the conv's last inputs [B, 3C, taps - 1], to continue the span
  };
  // The span x [B, n, C] continuing a sequence whose conv window is `window` (undefined = start).
  Terms terms(const torch::Tensor& x, const torch::Tensor& window = {});

  // The initial state for a batch: W_0 expanded, momentum 0.
  MemoryWeights initial(std::int64_t batch) const;
  // The whole chunked form over x [B, n, C] from `state` (in place): y_t = M_{W_t}(q_t), [B, n, C].
  torch::Tensor forward(const torch::Tensor& x, MemoryWeights& state, torch::Tensor& window);
  torch::Tensor forward(const torch::Tensor& x);

  // Read-out of queries [B, h, n, d] at fixed weights (no update), heads merged [B, n, C].
  torch::Tensor read(const std::vector<torch::Tensor>& w, const torch::Tensor& q) const;
  torch::Tensor merge(const torch::Tensor& heads) const;  // [B, h, n, d] -> [B, n, C]

  // The recurrent state as tensors: conv window, then W' (the chunk's start), W, S per layer.
  std::vector<torch::Tensor> init_state(std::int64_t batch, const torch::TensorOptions& options) const;
  // One token x_t [B, C] at `position` -> (y_t [B, C], next state).
  std::pair<torch::Tensor, std::vector<torch::Tensor>> step(const torch::Tensor& x_t,
                                                            const std::vector<torch::Tensor>& state,
                                                            std::int64_t position);

  std::int64_t heads() const { return heads_; }
  std::int64_t head_dim() const { return head_dim_; }
  std::int64_t chunk() const { return chunk_; }

  torch::nn::Linear qkv{nullptr};    // C -> 3C: W_Q, W_K, W_V (no bias)
  ShortConv conv{nullptr};           // depthwise causal conv over the 3C channels
  torch::nn::Linear gates{nullptr};  // C -> 3h: theta, eta, alpha logits per head
  std::vector<torch::Tensor> w0;     // W_0 per layer [h, d_in, d_out]

 private:
  std::int64_t heads_, head_dim_, chunk_;
  double max_lr_;
};
TORCH_MODULE(NeuralMemory);

}  // namespace blocklab
