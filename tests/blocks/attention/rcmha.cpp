// Property tests of attention/rcmha (tag [variants]): causal depth-wise convolutions on q, k, v
// (Primer's MDHA) and Transformer-XL's relative logits, each against a formula written out here.
#include "blocks/family_trains.h"
#include "tests/blocks/attention/helpers.h"

#include <vector>

#include "blocks/attention/rcmha.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::attention_tests;

namespace {

// Transformer-XL's sinusoid r_p of width c (even here): sin(p w_k) for k < c/2, then cos(p w_k),
// w_k = 10000^(-2k/c).
std::vector<double> sinusoid_by_hand(double p, std::int64_t c) {
  std::vector<double> r(static_cast<std::size_t>(c));
  const auto half = c / 2;
  for (std::int64_t k = 0; k < half; ++k) {
    const double w = std::pow(10000.0, -2.0 * static_cast<double>(k) / static_cast<double>(c));
    r[static_cast<std::size_t>(k)] = std::sin(p * w);
    r[static_cast<std::size_t>(k + half)] = std::cos(p * w);
  }
  return r;
}

// W_R r_p for head `head`: [d] as a vector.
std::vector<double> relative_key_by_hand(const RcmhaImpl& m, double p, std::int64_t head) {
  const auto c = m.dim(), d = m.head_dim();
  const auto r = sinusoid_by_hand(p, c);
  const auto w = m.rel_proj->weight.accessor<double, 2>();  // [h d, C]
  std::vector<double> out(static_cast<std::size_t>(d), 0.0);
  for (std::int64_t e = 0; e < d; ++e)
    for (std::int64_t k = 0; k < c; ++k)
      out[static_cast<std::size_t>(e)] += w[head * d + e][k] * r[static_cast<std::size_t>(k)];
  return out;
}

// The whole block by hand, float64, scalar loops: projection, causal depth-wise convolutions
// per head channel (key/value head g = head / (h / kv)), XL scores, mask, softmax, A v~, W_o.
torch::Tensor rcmha_by_hand(const RcmhaImpl& m, const torch::Tensor& x, bool causal) {
  torch::NoGradGuard no_grad;
  const auto batch = x.size(0), n = x.size(1), h = m.heads(), d = m.head_dim();
  const auto kv = m.k_conv.size(0), taps = m.q_conv.size(2), group = h / kv;
  const auto y = torch::linear(x, m.qkv->weight, m.qkv->bias).contiguous();  // [B, N, (h + 2 kv) d]
  const auto ya = y.accessor<double, 3>();
  // z~[b][head][i][e] for the slice starting at column `from` with kernels w [g, d, K], bias [g, d].
  const auto convolve = [&](std::int64_t from, const torch::Tensor& w, const torch::Tensor& bias, std::int64_t per) {
    auto out = torch::zeros({batch, h, n, d}, torch::kFloat64);
    auto oa = out.accessor<double, 4>();
    const auto wa = w.accessor<double, 3>();
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t head = 0; head < h; ++head) {
        const auto g = head / per;  // the kernel (and projection head) serving this head
        for (std::int64_t i = 0; i < n; ++i)
          for (std::int64_t e = 0; e < d; ++e) {
            double s = bias.defined() ? bias[g][e].item<double>() : 0.0;
            for (std::int64_t t = 0; t < taps; ++t) {
              const auto src = i - (taps - 1) + t;
              if (src >= 0) s += wa[g][e][t] * ya[b][src][from + g * d + e];
            }
            oa[b][head][i][e] = s;
          }
      }
    return out;
  };
  const auto q = convolve(0, m.q_conv, m.q_conv_bias, 1);
  const auto k = convolve(h * d, m.k_conv, m.k_conv_bias, group);
  const auto v = convolve((h + kv) * d, m.v_conv, m.v_conv_bias, group);
  const auto qa = q.accessor<double, 4>(), ka = k.accessor<double, 4>(), va = v.accessor<double, 4>();
  const auto ua = m.rel_bias_u.accessor<double, 2>(), vra = m.rel_bias_v.accessor<double, 2>();
  auto o = torch::zeros({batch, n, h * d}, torch::kFloat64);
  auto oa = o.accessor<double, 3>();
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t head = 0; head < h; ++head)
      for (std::int64_t i = 0; i < n; ++i) {
        std::vector<double> s(static_cast<std::size_t>(n), -std::numeric_limits<double>::infinity());
        double top = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j < n; ++j) {
          if (causal && j > i) continue;
          const auto rk = relative_key_by_hand(m, static_cast<double>(i - j), head);
          double logit = 0.0;
          for (std::int64_t e = 0; e < d; ++e)
            logit += (qa[b][head][i][e] + ua[head][e]) * ka[b][head][j][e] +
                     (qa[b][head][i][e] + vra[head][e]) * rk[static_cast<std::size_t>(e)];
          s[static_cast<std::size_t>(j)] = logit / std::sqrt(static_cast<double>(d));
          top = std::max(top, s[static_cast<std::size_t>(j)]);
        }
        double total = 0.0;
        for (auto& z : s) total += (z = std::exp(z - top));
        for (std::int64_t j = 0; j < n; ++j)
          for (std::int64_t e = 0; e < d; ++e)
            oa[b][i][head * d + e] += s[static_cast<std::size_t>(j)] / total * va[b][head][j][e];
      }
  return torch::linear(o, m.proj->weight, m.proj->bias);
}

// Plain multi-head softmax attention by hand with the block's q/k/v and output weights.
torch::Tensor mhsa_by_hand(const RcmhaImpl& m, const torch::Tensor& x, bool causal) {
  torch::NoGradGuard no_grad;
  const auto batch = x.size(0), n = x.size(1), h = m.heads(), d = m.head_dim();
  const auto y = torch::linear(x, m.qkv->weight, m.qkv->bias);
  const auto heads_of = [&](std::int64_t part) {
    return y.narrow(-1, part * h * d, h * d).reshape({batch, n, h, d}).permute({0, 2, 1, 3});
  };
  auto s = heads_of(0).matmul(heads_of(1).transpose(-2, -1)) / std::sqrt(static_cast<double>(d));
  if (causal) s = s.masked_fill(torch::ones({n, n}, torch::kBool).triu(1), -std::numeric_limits<double>::infinity());
  const auto o = torch::softmax(s, -1).matmul(heads_of(2)).permute({0, 2, 1, 3}).reshape({batch, n, h * d});
  return torch::linear(o, m.proj->weight, m.proj->bias);
}

Rcmha rcmha_f64(std::int64_t dim, const RcmhaOptions& options) {
  Rcmha m(dim, options);
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

}  // namespace

TEST_CASE("rcmha: identity conv taps, W_R = 0 and u = v_r = 0 give standard multi-head softmax attention",
          "[variants]") {
  torch::manual_seed(41);
  auto m = rcmha_f64(16, RcmhaOptions().heads(4).conv_init("identity"));
  // Identity init: the current token's tap is 1, every other tap and the biases 0; u = v_r = 0.
  CHECK(close(m->q_conv.select(2, 2), torch::ones({4, 4}, torch::kFloat64)));
  CHECK(m->q_conv.narrow(2, 0, 2).abs().max().item<double>() == 0.0);
  CHECK(m->v_conv_bias.abs().max().item<double>() == 0.0);
  CHECK(m->rel_bias_u.abs().max().item<double>() == 0.0);
  auto ref = softmax_twin(*m);
  const auto x = randn({2, 9, 16});
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto ctx = context(0, 0, 0, causal);
    // W_R != 0: the relative term changes the output...
    CHECK_FALSE(close(m->forward(x, ctx), mhsa_by_hand(*m, x, causal), 1e-6, 1e-9));
    torch::NoGradGuard no_grad;
    const auto saved = m->rel_proj->weight.clone();
    m->rel_proj->weight.zero_();
    // ... W_R = 0: exactly softmax attention, by hand and the library's.
    CHECK(close(m->forward(x, ctx), mhsa_by_hand(*m, x, causal)));
    CHECK(close(m->forward(x, ctx), ref->forward(x, ctx)));
    // A non-identity tap breaks it again.
    m->k_conv.select(2, 1).fill_(0.3);
    CHECK_FALSE(close(m->forward(x, ctx), mhsa_by_hand(*m, x, causal), 1e-6, 1e-9));
    m->k_conv.select(2, 1).zero_();
    m->rel_proj->weight.copy_(saved);
  }
}

TEST_CASE("rcmha: causal, no output depends on a later token, through the attention or the convolutions",
          "[variants]") {
  torch::manual_seed(42);
  auto m = rcmha_f64(16, RcmhaOptions().heads(2).conv_kernel(3));
  randomise_for_by_hand(*m);
  const std::int64_t n = 9;
  const auto x = randn({2, n, 16});
  torch::NoGradGuard no_grad;
  const auto causal = context(0, 0, 0, true);
  const auto y = m->forward(x, causal);
  for (std::int64_t t : {0, 3, 7}) {
    INFO("tokens after " << t << " perturbed");
    auto x2 = x.clone();
    x2.narrow(1, t + 1, n - t - 1).add_(randn({2, n - t - 1, 16}));
    const auto y2 = m->forward(x2, causal);
    CHECK(close(y.narrow(1, 0, t + 1), y2.narrow(1, 0, t + 1)));
    CHECK_FALSE(close(y.narrow(1, t + 1, n - t - 1), y2.narrow(1, t + 1, n - t - 1), 1e-6, 1e-9));
    // The convolutions are left-padded in both modes: q~, k~, v~ at i see tokens <= i only.
    const auto [q, k, v] = m->project(x);
    const auto [q2, k2, v2] = m->project(x2);
    const auto a = m->convolve(q, k, v), b = m->convolve(q2, k2, v2);
    for (std::size_t s = 0; s < 3; ++s) {
      CHECK(close(a[s].narrow(2, 0, t + 1), b[s].narrow(2, 0, t + 1)));
      CHECK_FALSE(close(a[s].narrow(2, t + 1, 1), b[s].narrow(2, t + 1, 1), 1e-6, 1e-9));
    }
  }
  // Perturbing token t alone moves the convolved q, k, v at t, t+1, t+2 (K = 3) and no further.
  auto x3 = x.clone();
  x3.select(1, 2).add_(1.0);
  const auto [q, k, v] = m->project(x);
  const auto [q3, k3, v3] = m->project(x3);
  const auto a = m->convolve(q, k, v), b = m->convolve(q3, k3, v3);
  for (std::size_t s = 0; s < 3; ++s) {
    for (std::int64_t i : {2, 3, 4}) CHECK_FALSE(close(a[s].select(2, i), b[s].select(2, i), 1e-6, 1e-9));
    CHECK(close(a[s].narrow(2, 5, n - 5), b[s].narrow(2, 5, n - 5)));
  }
}

TEST_CASE("rcmha: the relative term depends on i - j only and equals (q + v_r) . W_R r_{i-j}", "[variants]") {
  torch::manual_seed(43);
  auto m = rcmha_f64(8, RcmhaOptions().heads(2));
  randomise_for_by_hand(*m);
  const std::int64_t n = 7;
  torch::NoGradGuard no_grad;
  // The same query vector at every position: S_rel is Toeplitz, in both modes.
  const auto same = randn({1, 2, 1, 4}).expand({1, 2, n, 4}).contiguous();
  const auto full = m->relative_logits(same, false), causal = m->relative_logits(same, true);
  REQUIRE(full.sizes() == torch::IntArrayRef({1, 2, n, n}));
  CHECK(close(full.narrow(2, 1, n - 1).narrow(3, 1, n - 1), full.narrow(2, 0, n - 1).narrow(3, 0, n - 1)));
  const auto lower = torch::ones({n, n}, torch::kBool).tril();
  CHECK(close(causal.masked_fill(~lower, 0.0), full.masked_fill(~lower, 0.0)));
  // Sinusoids tell the directions apart: S_rel[i, j] != S_rel[j, i].
  CHECK_FALSE(close(full, full.transpose(-2, -1), 1e-6, 1e-9));
  // Each entry is the formula: (q + v_r) . W_R r_{i-j}, r written out.
  const auto qa = same.accessor<double, 4>();
  const auto vra = m->rel_bias_v.accessor<double, 2>();
  for (std::int64_t head = 0; head < 2; ++head)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        const auto rk = relative_key_by_hand(*m, static_cast<double>(i - j), head);
        double expected = 0.0;
        for (std::int64_t e = 0; e < 4; ++e)
          expected += (qa[0][head][i][e] + vra[head][e]) * rk[static_cast<std::size_t>(e)];
        CHECK(full[0][head][i][j].item<double>() == Approx(expected).epsilon(1e-12).margin(1e-12));
        if (j <= i) CHECK(causal[0][head][i][j].item<double>() == Approx(expected).epsilon(1e-12).margin(1e-12));
      }
}

TEST_CASE("rcmha: forward equals the formula written out (per-head kernels, grouped key/value heads, both modes)",
          "[variants]") {
  torch::manual_seed(44);
  struct Case {
    RcmhaOptions options;
    const char* name;
  };
  for (const auto& c : {Case{RcmhaOptions().heads(2), "heads 2, K 3, bias"},
                        Case{RcmhaOptions().heads(2).kv_heads(1).conv_kernel(2).conv_bias(false).conv_init("identity"),
                             "heads 2, kv_heads 1, K 2, no bias"},
                        Case{RcmhaOptions().heads(4).conv_kernel(5).qkv_bias(false), "heads 4, K 5 > N"}}) {
    auto m = rcmha_f64(8, c.options);
    randomise_for_by_hand(*m);
    const auto x = randn({2, 4, 8});
    for (bool causal : {false, true}) {
      INFO(c.name << ", causal " << causal);
      torch::NoGradGuard no_grad;
      const auto ctx = context(0, 0, 0, causal);
      const auto y = m->forward(x, ctx);
      CHECK(close(y, rcmha_by_hand(*m, x, causal)));
      // The probe's weights are the softmax rows (normalised), zero above the diagonal when causal.
      const auto [q, k, v] = m->project(x);
      const auto [qc, kc, vc] = m->convolve(q, k, v);
      const auto w = m->weights(qc, kc, ctx);
      CHECK(close(w.sum(-1), torch::ones({2, m->heads(), 4}, torch::kFloat64)));
      if (causal) CHECK(w.triu(1).abs().max().item<double>() == 0.0);
    }
  }
}

TEST_CASE("rcmha: parameter count MHSA + 3 C K (+ 3 C) + C^2 + 2 C; init; bad options are config errors",
          "[variants]") {
  const auto mhsa = mhsa_count(32, true);
  const auto m = mixer_registry().create(yaml("{type: attention/rcmha, heads: 4}"), MixerArgs{32, 17});
  CHECK(parameter_count(*m) == mhsa + 3 * 32 * 3 + 3 * 32 + 32 * 32 + 2 * 32);
  const auto plain = mixer_registry().create(
      yaml("{type: attention/rcmha, heads: 4, conv_kernel: 5, conv_bias: false}"), MixerArgs{32, 17});
  CHECK(parameter_count(*plain) == mhsa + 3 * 32 * 5 + 32 * 32 + 2 * 32);
  // Grouped key/value heads: qkv 32 -> (4 + 2 * 2) 8, kernels and biases on (4 + 2 * 2) 8 channels.
  const auto grouped =
      mixer_registry().create(yaml("{type: attention/rcmha, heads: 4, kv_heads: 2}"), MixerArgs{32, 17});
  CHECK(parameter_count(*grouped) == (32 * 64 + 64) + (32 * 32 + 32) + 64 * 3 + 64 + 32 * 32 + 2 * 32);
  // The default init is PyTorch's depth-wise Conv1d init: U(-1/sqrt(K), 1/sqrt(K)), not the identity.
  const auto* impl = dynamic_cast<RcmhaImpl*>(m.get());
  REQUIRE(impl != nullptr);
  CHECK(impl->q_conv.abs().max().item<double>() <= 1.0 / std::sqrt(3.0) + 1e-6);
  CHECK(impl->k_conv_bias.abs().max().item<double>() <= 1.0 / std::sqrt(3.0) + 1e-6);
  CHECK(impl->v_conv.std().item<double>() > 0.1);
  CHECK(impl->capabilities().causal);
  CHECK(impl->capabilities().weights == MixerCapabilities::Weights::normalised);
  const auto no_decay = no_weight_decay_names(*m);
  CHECK(no_decay.count("rel_bias_u") == 1);
  CHECK(no_decay.count("q_conv_bias") == 1);
  CHECK(no_decay.count("rel_proj.weight") == 0);
  const auto bad = [](const std::string& text) { return mixer_registry().create(yaml(text), MixerArgs{32, 17}); };
  CHECK_THROWS_AS(bad("{type: attention/rcmha, heads: 3}"), ConfigError);
  CHECK_THROWS_AS(bad("{type: attention/rcmha, conv_kernel: 0}"), ConfigError);
  CHECK_THROWS_AS(bad("{type: attention/rcmha, conv_init: centred}"), ConfigError);
  CHECK_THROWS_AS(bad("{type: attention/rcmha, kv_heads: 3}"), ConfigError);
  CHECK_THROWS_AS(bad("{type: attention/rcmha, kernel: 3}"), ConfigError);
}

TEST_CASE("attention/rcmha: learns in a causal LM and in a ViT", "[trains]") {
  SECTION("causal LM") { family_trains::check_learns_lm("attention/rcmha"); }
  SECTION("ViT") { family_trains::check_learns_vit("attention/rcmha"); }
}

}  // namespace BLOCKLAB_TEST_FILE
