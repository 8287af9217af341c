#include "blocks/memory/titans.h"

#include <array>
#include <cmath>
#include <limits>

#include "blocks/common/init.h"
#include "blocks/common/multi_head.h"

namespace blocklab {

namespace {

torch::Tensor rms_normalise(const torch::Tensor& x) { return x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-6); }

// [n, n] bool: token i sees token j <= i (the causal block of a mask).
torch::Tensor lower_triangle(std::int64_t n, const torch::Device& device) {
  return torch::ones({n, n}, torch::TensorOptions().dtype(torch::kBool).device(device)).tril();
}

}  // namespace

TitansImpl::TitansImpl(std::int64_t dim, const TitansOptions& o)
    : variant_(o.variant()), heads_(o.heads()), segment_(o.segment()), window_(o.window()) {
  const auto memory_options = NeuralMemoryOptions()
                                  .heads(o.heads())
                                  .depth(o.memory_depth())
                                  .expansion(o.memory_expansion())
                                  .chunk(o.chunk())
                                  .max_lr(o.max_lr())
                                  .conv(o.conv());
  memory = register_module("memory", NeuralMemory(dim, memory_options));
  if (variant_ != "lmm") {
    attn_qkv = register_module("attn_qkv", torch::nn::Linear(dim, 3 * dim));
    attn_proj = register_module("attn_proj", torch::nn::Linear(dim, dim));
    if (o.persistent() > 0)
      persistent = register_parameter("persistent", trunc_normal_(torch::empty({o.persistent(), dim}), 0.02));
  }
  if (variant_ == "mac" || variant_ == "mag") {
    gate_y = register_parameter("gate_y", torch::ones({dim}));
    gate_m = register_parameter("gate_m", torch::ones({dim}));
  }
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

std::vector<std::string> TitansImpl::no_weight_decay() const {
  if (!persistent.defined()) return {};
  return {"persistent"};
}

MixerCapabilities TitansImpl::capabilities() const {
  MixerCapabilities c;
  c.causal = true;
  c.recurrent = true;         // every variant steps like its forward
  c.variable_lengths = true;  // causal: padding after a token never reaches it
  return c;
}

torch::Tensor TitansImpl::with_persistent(const torch::Tensor& x) const {
  if (!persistent.defined()) return x;
  return torch::cat({persistent.unsqueeze(0).expand({x.size(0), persistent.size(0), x.size(2)}), x}, 1);
}

torch::Tensor TitansImpl::gate(const torch::Tensor& y, const torch::Tensor& m) const {
  return rms_normalise(y) * gate_y * torch::sigmoid(rms_normalise(m) * gate_m);
}

torch::Tensor TitansImpl::attention(const torch::Tensor& xs, std::int64_t queries, const torch::Tensor& allowed) {
  const auto b = xs.size(0), n = xs.size(1), d = xs.size(2) / heads_;
  const auto qkv = attn_qkv->forward(xs).view({b, n, 3, heads_, d}).permute({2, 0, 3, 1, 4});  // [3, B, h, n, d]
  const auto q = qkv[0].narrow(2, n - queries, queries);
  const auto scores = torch::matmul(q, qkv[1].transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
  const auto p = torch::softmax(scores.masked_fill(~allowed, -std::numeric_limits<double>::infinity()), -1);
  const auto o = torch::matmul(p, qkv[2]);  // [B, h, queries, d]
  return attn_proj->forward(o.transpose(1, 2).reshape({b, queries, heads_ * d}));
}

torch::Tensor TitansImpl::sliding_window(const torch::Tensor& xs) {
  // Banded: the tokens in blocks of w = window; a block's queries see the persistent tokens, the
  // previous block and their own block, masked to the last `window` tokens: O(N w), not O(N^2).
  const auto b = xs.size(0), d = xs.size(2) / heads_;
  const auto n_p = persistent.defined() ? persistent.size(0) : 0, n = xs.size(1) - n_p;
  const auto w = std::min(window_, n), blocks = (n + w - 1) / w, pad = blocks * w - n;
  const auto qkv = attn_qkv->forward(xs).view({b, n_p + n, 3, heads_, d}).permute({2, 0, 3, 1, 4});  // [3, B, h, L, d]
  const auto blocked = [&](const torch::Tensor& t) {  // [B, h, n, d] -> [B, h, blocks, w, d], zero-padded
    return torch::constant_pad_nd(t.narrow(2, n_p, n), {0, 0, 0, pad}).view({b, heads_, blocks, w, d});
  };
  const auto with_previous = [&](const torch::Tensor& t) {  // [B, h, blocks, 2w, d]: previous block, own block
    const auto previous = torch::cat({torch::zeros_like(t.narrow(2, 0, 1)), t.narrow(2, 0, blocks - 1)}, 2);
    return torch::cat({previous, t}, 3);
  };
  const auto q = blocked(qkv[0]), k = with_previous(blocked(qkv[1])), v = with_previous(blocked(qkv[2]));
  const auto k_p = qkv[1].narrow(2, 0, n_p).unsqueeze(2), v_p = qkv[2].narrow(2, 0, n_p).unsqueeze(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const auto scores =
      torch::cat({torch::matmul(q, k_p.transpose(-1, -2)), torch::matmul(q, k.transpose(-1, -2))}, -1) * scale;
  // Query a of block i sees key c of block i - 1 when c > a (within the window), of block i when c <= a.
  const auto options = torch::TensorOptions(torch::kLong).device(xs.device());
  const auto a = torch::arange(w, options).unsqueeze(1), c = torch::arange(w, options).unsqueeze(0);
  const auto first = torch::arange(blocks, options).view({blocks, 1, 1}) == 0;
  const auto local = torch::cat({(c > a).unsqueeze(0) & ~first, (c <= a).unsqueeze(0).expand({blocks, w, w})}, -1);
  const auto allowed =
      torch::cat({torch::ones({blocks, w, n_p}, local.options()), local}, -1);  // [blocks, w, n_p + 2w]
  const auto p = torch::softmax(scores.masked_fill(~allowed, -std::numeric_limits<double>::infinity()), -1);
  const auto o = torch::matmul(p.narrow(-1, 0, n_p), v_p) + torch::matmul(p.narrow(-1, n_p, 2 * w), v);
  const auto merged = o.view({b, heads_, blocks * w, d}).narrow(2, 0, n).transpose(1, 2).reshape({b, n, heads_ * d});
  return attn_proj->forward(merged);
}

torch::Tensor TitansImpl::sliding_window_dense(const torch::Tensor& xs) {
  const auto n_p = persistent.defined() ? persistent.size(0) : 0, n = xs.size(1) - n_p;
  const auto i = torch::arange(n, torch::TensorOptions(torch::kLong).device(xs.device())).unsqueeze(1);
  const auto j = i.t();
  const auto band = (j <= i) & (j > i - window_);  // the last `window` tokens, itself included
  return attention(xs, n, torch::cat({torch::ones({n, n_p}, band.options()), band}, 1));
}

torch::Tensor TitansImpl::mac(const torch::Tensor& x) {
  MemoryWeights state = memory->initial(x.size(0));
  const auto queries = memory->terms(x).q;  // the read-out queries q(S_i) of every segment at once
  torch::Tensor window;                     // the memory's conv runs on through the attention outputs y
  std::vector<torch::Tensor> outputs;
  for (std::int64_t from = 0; from < x.size(1); from += segment_) {
    const auto s = std::min(segment_, x.size(1) - from);
    const auto segment = x.narrow(1, from, s);
    const auto h = memory->read(state.w, queries.narrow(2, from, s));  // h = M*_{i-1}(q(S_i)), eq. 21
    const auto context = torch::cat({with_persistent(h), segment}, 1);
    const auto n_p = context.size(1) - 2 * s;
    const auto causal = lower_triangle(s, x.device());
    const auto allowed = torch::cat({torch::ones({s, n_p}, causal.options()), causal, causal}, 1);
    const auto y = attention(context, s, allowed);  // eqs. 22-23
    const auto written = memory->terms(y, window);
    window = written.window;
    MemoryChunk c = memory_chunk(state.w, state, written.k, written.v, written.q, written.gates);
    state = std::move(c.state);                            // eq. 24
    outputs.push_back(gate(y, memory->merge(c.outputs)));  // o = y ⊗ M*_t(y), eq. 25
  }
  return torch::cat(outputs, 1);
}

torch::Tensor TitansImpl::forward(const torch::Tensor& x, const MixerContext&) {
  if (variant_ == "lmm") return proj->forward(memory->forward(x));
  if (variant_ == "mac") return proj->forward(mac(x));
  const auto xs = with_persistent(x);
  const auto n_p = xs.size(1) - x.size(1);
  const auto m = memory->forward(xs);
  if (variant_ == "mag") return proj->forward(gate(sliding_window(xs), m.narrow(1, n_p, x.size(1))));
  return proj->forward(sliding_window(m));  // mal
}

// The recurrent forms. The state's tensors, by variant (L = memory layers; h, d: heads, head width):
//   lmm       the memory's state (NeuralMemoryImpl::init_state: conv window, W', W, S)
//   mag, mal  the memory's state after the persistent tokens, then the attention's keys and values of
//             the persistent tokens [B, h, N_p, d] (mal: of the memory's read-outs at them) and of the
//             last window - 1 tokens [B, h, window - 1, d], oldest first
//   mac       the memory's conv windows of the x and y streams, W' (the segment's start), W, S, then the
//             attention's keys and values of the segment's h and S tokens so far [B, h, segment, d]
MixerState TitansImpl::init_state(std::int64_t batch, const torch::TensorOptions& options) {
  auto memory_state = memory->init_state(batch, options);
  if (variant_ == "lmm") return MixerState{memory_state, 0};
  const auto d = head_dim();
  const auto empty = [&](std::int64_t n) { return torch::zeros({batch, heads_, n, d}, options); };
  if (variant_ == "mac") {
    std::vector<torch::Tensor> state{memory_state.front(), memory_state.front()};
    state.insert(state.end(), memory_state.begin() + 1, memory_state.end());
    for (int i = 0; i < 4; ++i) state.push_back(empty(segment_));
    return MixerState{state, 0};
  }
  // mag, mal: the memory reads and writes the persistent tokens first.
  const auto n_p = persistent.defined() ? persistent.size(0) : 0;
  std::vector<torch::Tensor> read_outs;
  for (std::int64_t i = 0; i < n_p; ++i) {
    auto [y, next] = memory->step(persistent[i].to(options).expand({batch, persistent.size(1)}), memory_state, i);
    read_outs.push_back(y);
    memory_state = std::move(next);
  }
  std::vector<torch::Tensor> state = memory_state;
  if (n_p > 0) {
    const auto sources = variant_ == "mag" ? persistent.to(options).expand({batch, n_p, persistent.size(1)})
                                           : torch::stack(read_outs, 1);
    const auto kv = attn_qkv->forward(sources).view({batch, n_p, 3, heads_, d}).permute({2, 0, 3, 1, 4});
    state.push_back(kv[1]);
    state.push_back(kv[2]);
  } else {
    state.push_back(empty(0));
    state.push_back(empty(0));
  }
  state.push_back(empty(window_ - 1));
  state.push_back(empty(window_ - 1));
  return MixerState{state, 0};
}

std::array<torch::Tensor, 3> TitansImpl::token_qkv(const torch::Tensor& t) {
  const auto qkv = attn_qkv->forward(t).view({t.size(0), 3, heads_, head_dim()});
  return {qkv.select(1, 0), qkv.select(1, 1), qkv.select(1, 2)};
}

torch::Tensor TitansImpl::attend_one(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                                     const torch::Tensor& valid) {
  const auto scores = torch::matmul(keys, q.unsqueeze(-1)).squeeze(-1) / std::sqrt(static_cast<double>(head_dim()));
  const auto p = torch::softmax(scores.masked_fill(~valid, -std::numeric_limits<double>::infinity()), -1);
  const auto o = torch::matmul(p.unsqueeze(-2), values).squeeze(-2);  // [B, h, d]
  return attn_proj->forward(o.reshape({q.size(0), heads_ * head_dim()}));
}

MixerStep TitansImpl::step(const torch::Tensor& x_t, const MixerState& state, const MixerContext&) {
  const auto& t = state.tensors;
  if (variant_ == "lmm") {
    auto [y, next] = memory->step(x_t, t, state.position);
    return MixerStep{proj->forward(y), MixerState{std::move(next), state.position + 1}};
  }
  return variant_ == "mac" ? mac_step(x_t, state) : window_step(x_t, state);
}

MixerStep TitansImpl::window_step(const torch::Tensor& x_t, const MixerState& state) {
  const auto& t = state.tensors;
  const auto memory_size = static_cast<std::int64_t>(t.size()) - 4;
  const std::vector<torch::Tensor> memory_state(t.begin(), t.begin() + memory_size);
  const auto &k_p = t[memory_size], &v_p = t[memory_size + 1], &k_cache = t[memory_size + 2],
             &v_cache = t[memory_size + 3];
  const auto n_p = k_p.size(2), cached = window_ - 1;
  auto [m, next] = memory->step(x_t, memory_state, n_p + state.position);
  const auto [q, k, v] = token_qkv(variant_ == "mag" ? x_t : m);
  // The window: the persistent tokens, the cached tokens that exist (the first `position` are missing), x_t.
  const auto options = torch::TensorOptions(torch::kLong).device(x_t.device());
  const auto valid = torch::cat({torch::ones({n_p}, options), torch::arange(cached, options) >= cached - state.position,
                                 torch::ones({1}, options)}) > 0;
  const auto y = attend_one(q, torch::cat({k_p, k_cache, k.unsqueeze(2)}, 2),
                            torch::cat({v_p, v_cache, v.unsqueeze(2)}, 2), valid);
  const auto shift = [&](const torch::Tensor& cache, const torch::Tensor& latest) {
    return cached == 0 ? cache : torch::cat({cache.narrow(2, 1, cached - 1), latest.unsqueeze(2)}, 2);
  };
  next.insert(next.end(), {k_p, v_p, shift(k_cache, k), shift(v_cache, v)});
  const auto o = variant_ == "mag" ? gate(y, m) : y;
  return MixerStep{proj->forward(o), MixerState{std::move(next), state.position + 1}};
}

MixerStep TitansImpl::mac_step(const torch::Tensor& x_t, const MixerState& state) {
  const auto& t = state.tensors;
  const auto layers = static_cast<std::int64_t>(memory->w0.size());
  const auto part = [&](std::int64_t from, std::int64_t n) {
    return std::vector<torch::Tensor>(t.begin() + from, t.begin() + from + n);
  };
  const auto at = part(2, layers), w = part(2 + layers, layers), s = part(2 + 2 * layers, layers);
  const auto caches = part(2 + 3 * layers, 4);  // keys, values of h; keys, values of S
  const auto j = state.position % segment_, b = x_t.size(0);
  const auto read_terms = memory->terms(x_t.unsqueeze(1), t[0]);
  const auto h = memory->read(at, read_terms.q).squeeze(1);  // h_t = M*_{i-1}(q(x_t))
  const auto [q, k_x, v_x] = token_qkv(x_t);
  const auto [q_h, k_h, v_h] = token_qkv(h);
  const auto put = [&](const torch::Tensor& cache, const torch::Tensor& latest) {
    return torch::cat({cache.narrow(2, 0, j), latest.unsqueeze(2), cache.narrow(2, j + 1, segment_ - j - 1)}, 2);
  };
  const std::vector<torch::Tensor> next_caches{put(caches[0], k_h), put(caches[1], v_h), put(caches[2], k_x),
                                               put(caches[3], v_x)};
  auto keys = torch::cat({next_caches[0], next_caches[2]}, 2), values = torch::cat({next_caches[1], next_caches[3]}, 2);
  const auto options = torch::TensorOptions(torch::kLong).device(x_t.device());
  const auto seen = torch::arange(segment_, options) <= j;  // the segment's tokens up to x_t
  auto valid = torch::cat({seen, seen});
  if (persistent.defined()) {
    const auto kv =
        attn_qkv->forward(persistent).view({persistent.size(0), 3, heads_, head_dim()}).permute({1, 2, 0, 3});
    keys = torch::cat({kv[1].unsqueeze(0).expand({b, heads_, persistent.size(0), head_dim()}), keys}, 2);
    values = torch::cat({kv[2].unsqueeze(0).expand({b, heads_, persistent.size(0), head_dim()}), values}, 2);
    valid = torch::cat({torch::ones({persistent.size(0)}, valid.options()), valid});
  }
  const auto y = attend_one(q, keys, values, valid);
  const auto write_terms = memory->terms(y.unsqueeze(1), t[1]);
  MemoryChunk c = memory_chunk(at, {w, s}, write_terms.k, write_terms.v, write_terms.q, write_terms.gates);
  std::vector<torch::Tensor> next{read_terms.window, write_terms.window};
  const bool segment_ends = j == segment_ - 1;  // the next segment reads and takes gradients at W
  for (const auto& weights : segment_ends ? c.state.w : at) next.push_back(weights);
  next.insert(next.end(), c.state.w.begin(), c.state.w.end());
  next.insert(next.end(), c.state.s.begin(), c.state.s.end());
  next.insert(next.end(), next_caches.begin(), next_caches.end());
  const auto o = gate(y, memory->merge(c.outputs).squeeze(1));
  return MixerStep{proj->forward(o), MixerState{std::move(next), state.position + 1}};
}

const OptionsSchema<TitansOptions>& titans_schema() {
  static const auto schema = [] {
    OptionsSchema<TitansOptions> s;
    s.choice(
        "variant", {"mac", "mag", "mal", "lmm"},
        "how attention and the memory combine: mac (memory as a context of segment attention), mag (memory gating "
        "sliding-window attention), mal (memory layer, then sliding-window attention), lmm (the memory alone) "
        "(default mac)",
        [](TitansOptions& o, const std::string& v) { o.variant(v); },
        [](const TitansOptions& o) { return o.variant(); });
    BLOCKLAB_OPTION(s, heads, "heads h of the memory and of the attention (default 4); dim must be divisible by h")
        .min = 1;
    BLOCKLAB_OPTION(s, memory_depth, "layers L_M of the memory MLP; 1 = a linear memory (default 2)").min = 1;
    BLOCKLAB_OPTION(s, memory_expansion, "hidden width of the memory MLP / head width, for depth >= 2 (default 4)")
        .min = 1;
    BLOCKLAB_OPTION(s, chunk,
                    "tokens per chunk of the memory's parallel form: gradients at the chunk's start weights; 1 = "
                    "per-token online gradient descent (default 16; mac uses its segments)")
        .min = 1;
    BLOCKLAB_OPTION(s, segment,
                    "mac: tokens per segment of attention and per memory update (default 32, the segment of "
                    "lucidrains/titans-pytorch's train_mac.py; the paper states none)")
        .min = 1;
    BLOCKLAB_OPTION(s, window, "mag, mal: tokens of the sliding-window attention, itself included (default 32)").min =
        1;
    BLOCKLAB_OPTION(s, persistent, "learned persistent memory tokens N_p before the sequence (default 4)").min = 0;
    BLOCKLAB_OPTION(s, max_lr,
                    "largest memory learning rate: theta_t = max_lr sigmoid(x_t w_theta), on the loss averaged over "
                    "the head's features (default 0.1)")
        .min = 0.0;
    BLOCKLAB_OPTION(s, conv,
                    "taps of the causal depthwise conv after the memory's q, k, v projections; 1 = pointwise "
                    "(default 4)")
        .min = 1;
    return s;
  }();
  return schema;
}

namespace {

BLOCKLAB_REGISTER(mixer_registry(),
                  BLOCKLAB_ENTRY(TitansImpl::kKey)
                      .summary("Titans: attention with a neural long-term memory (an MLP written at test time by "
                               "gradient steps with momentum and forgetting) as context, gate or layer")
                      .paper("Titans: Learning to Memorize at Test Time (Behrouz et al., 2024), arXiv:2501.00663")
                      .equation("S_t = eta_t S_{t-1} - theta_t grad ||M_{W'}(k_t) - v_t||^2, W_t = (1 - alpha_t) "
                                "W_{t-1} + S_t, y_t = M_{W_t}(q_t); mac/mag/mal combine it with attention")
                      .schema(titans_schema().schema())
                      .example("{variant: mac, heads: 4, memory_expansion: 2, persistent: 2}"),
                  [](const ConfigNode& params, const MixerArgs& args) -> TokenMixer {
                    const auto options = bind_options(titans_schema(), params);
                    check_heads(args.dim, options.heads(), params);
                    return std::make_shared<TitansImpl>(args.dim, options);
                  });

}  // namespace
}  // namespace blocklab
