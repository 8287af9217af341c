// Property tests of the attention variants built on MultiHeadAttentionImpl (tag [variants]):
// each variant against its paper's closed form, a naive loop, or the plain softmax attention it
// reduces to; and the shared relative-position primitives. Float64 throughout.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "blocks/attention/gpsa.h"
#include "blocks/attention/relative.h"
#include "blocks/attention/selective.h"
#include "blocks/attention/sigmoid.h"
#include "blocks/attention/softmax.h"
#include "blocks/attention/softplus.h"
#include "blocks/attention/urpe.h"
#include "blocks/common/relative_positions.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"

using namespace blocklab;

namespace {

bool close(const torch::Tensor& a, const torch::Tensor& b, double rtol = 1e-10, double atol = 1e-12) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, rtol, atol);
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

ConfigNode yaml(const std::string& text) { return parse_yaml(text, "test"); }

std::int64_t parameter_count(const torch::nn::Module& m) {
  std::int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// MHSA parameters of width C: qkv C -> 3C (+ bias), proj C -> C with bias.
std::int64_t mhsa_count(std::int64_t c, bool qkv_bias) { return 3 * c * c + (qkv_bias ? 3 * c : 0) + c * c + c; }

// Copies the q/k/v and output projections of `from` into `to` (same width, same qkv_bias).
void copy_projections(const MultiHeadAttentionImpl& from, MultiHeadAttentionImpl& to) {
  torch::NoGradGuard no_grad;
  to.qkv->weight.copy_(from.qkv->weight);
  if (from.qkv->bias.defined()) to.qkv->bias.copy_(from.qkv->bias);
  to.proj->weight.copy_(from.proj->weight);
  to.proj->bias.copy_(from.proj->bias);
}

SoftmaxAttention reference_softmax(std::int64_t dim, std::int64_t heads, bool qkv_bias) {
  SoftmaxAttention ref(dim, SoftmaxAttentionOptions().heads(heads).qkv_bias(qkv_bias).fused(false));
  ref->to(torch::kFloat64);
  ref->eval();
  return ref;
}

MixerContext context(std::int64_t grid_h = 0, std::int64_t grid_w = 0, std::int64_t prefix = 0, bool causal = false) {
  MixerContext ctx;
  ctx.grid_height = grid_h;
  ctx.grid_width = grid_w;
  ctx.prefix_tokens = prefix;
  ctx.causal = causal;
  return ctx;
}

torch::Tensor randn(std::vector<std::int64_t> shape) { return torch::randn(shape, torch::kFloat64); }

// o [B, h, N, d] -> the output projection of the heads concatenated, by hand.
torch::Tensor merge_by_hand(const MultiHeadAttentionImpl& m, const torch::Tensor& o) {
  const auto b = o.size(0), n = o.size(2);
  return torch::linear(o.transpose(1, 2).reshape({b, n, m.dim()}), m.proj->weight, m.proj->bias);
}

// Row entropies of weights [..., N] (0 log 0 = 0).
torch::Tensor entropy(const torch::Tensor& w) {
  return -(w * torch::where(w > 0, w.log(), torch::zeros_like(w))).sum(-1);
}

}  // namespace

// ---- shared primitives ------------------------------------------------------------------------

TEST_CASE("relative positions: the causal and bidirectional skews equal the explicit gather", "[variants]") {
  torch::manual_seed(1);
  for (std::int64_t l : {1, 2, 5, 8}) {
    INFO("L = " << l);
    const auto causal_in = randn({2, 3, l, l});
    const auto causal_out = skew_causal(causal_in);
    REQUIRE(causal_out.sizes() == causal_in.sizes());
    const auto both_in = randn({2, 3, l, 2 * l - 1});
    const auto both_out = skew_bidirectional(both_in);
    REQUIRE(both_out.sizes() == causal_in.sizes());
    for (std::int64_t i = 0; i < l; ++i)
      for (std::int64_t j = 0; j < l; ++j) {
        CHECK(torch::equal(both_out.select(2, i).select(2, j), both_in.select(2, i).select(2, l - 1 + j - i)));
        if (j <= i)
          CHECK(torch::equal(causal_out.select(2, i).select(2, j), causal_in.select(2, i).select(2, l - 1 + j - i)));
      }
  }
}

TEST_CASE("relative positions: index clamps j - i, windows slice or zero-pad, grid offsets are key minus query",
          "[variants]") {
  const auto idx = relative_index(6, 3, torch::kCPU);
  for (std::int64_t i = 0; i < 6; ++i)
    for (std::int64_t j = 0; j < 6; ++j)
      CHECK(idx[i][j].item<std::int64_t>() == std::clamp<std::int64_t>(j - i, -2, 2) + 2);
  // A table of 2M-1 = 5 offsets: n = 2 keeps the middle 3 rows, n = 4 pads one zero row each side.
  const auto table = torch::arange(1, 6, torch::kFloat64).view({1, 5, 1});
  CHECK(torch::equal(relative_window(table, 2, 1).flatten(), torch::tensor({2.0, 3.0, 4.0}, torch::kFloat64)));
  CHECK(torch::equal(relative_window(table, 4, 1).flatten(),
                     torch::tensor({0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0}, torch::kFloat64)));
  const auto r = grid_offsets(2, 3, torch::kFloat64);  // tokens (y, x): 0 (0,0) ... 5 (1,2)
  REQUIRE(r.sizes() == torch::IntArrayRef({6, 6, 3}));
  // Query 1 = (0, 1), key 5 = (1, 2): dx = 1, dy = 1, d^2 = 2.
  CHECK(torch::equal(r[1][5], torch::tensor({1.0, 1.0, 2.0}, torch::kFloat64)));
  CHECK(torch::equal(r[5][1], torch::tensor({-1.0, -1.0, 2.0}, torch::kFloat64)));
}

// ---- attention/relative -----------------------------------------------------------------------

TEST_CASE("relative: skewed S_rel equals the naive q_i . E_{j-i}, causal and not, short and long sequences",
          "[variants]") {
  torch::manual_seed(2);
  struct Case {
    std::int64_t tokens, max_rel;
    bool shared;
  };
  for (const auto c : {Case{7, 7, false}, Case{7, 4, false}, Case{5, 9, true}, Case{1, 3, false}}) {
    RelativeAttention m(12,
                        RelativeAttentionOptions().heads(3).max_relative_position(c.max_rel).shared_heads(c.shared));
    m->to(torch::kFloat64);
    const auto q = randn({2, 3, c.tokens, 4});
    const auto e = m->rel_embeddings;
    REQUIRE(e.sizes() == torch::IntArrayRef({c.shared ? 1 : 3, 2 * c.max_rel - 1, 4}));
    for (bool causal : {false, true}) {
      INFO("N " << c.tokens << ", M " << c.max_rel << ", shared " << c.shared << ", causal " << causal);
      const auto s = m->relative_logits(q, causal);
      REQUIRE(s.sizes() == torch::IntArrayRef({2, 3, c.tokens, c.tokens}));
      auto naive = torch::zeros_like(s);
      for (std::int64_t h = 0; h < 3; ++h)
        for (std::int64_t i = 0; i < c.tokens; ++i)
          for (std::int64_t j = 0; j < c.tokens; ++j) {
            const auto offset = j - i;
            if (std::abs(offset) > c.max_rel - 1) continue;  // beyond the table: zero embedding
            const auto row = e[c.shared ? 0 : h][offset + c.max_rel - 1];
            naive.select(1, h).select(1, i).select(1, j).copy_(q.select(1, h).select(1, i).matmul(row));
          }
      const auto keep = causal ? torch::ones({c.tokens, c.tokens}, torch::kBool).tril()
                               : torch::ones({c.tokens, c.tokens}, torch::kBool);
      CHECK(max_diff(s.masked_fill(~keep, 0.0), naive.masked_fill(~keep, 0.0)) < 1e-12);
    }
  }
}

TEST_CASE("relative: with E_r = 0 the block equals softmax attention with the same weights", "[variants]") {
  torch::manual_seed(3);
  RelativeAttention m(16, RelativeAttentionOptions().heads(4).max_relative_position(9));
  m->to(torch::kFloat64);
  m->eval();
  auto ref = reference_softmax(16, 4, true);
  copy_projections(*m, *ref);
  const auto x = randn({2, 9, 16});
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto ctx = context(0, 0, 0, causal);
    // Learned embeddings change the output...
    CHECK_FALSE(close(m->forward(x, ctx), ref->forward(x, ctx), 1e-6, 1e-9));
    // ... and zero embeddings give plain softmax attention.
    torch::NoGradGuard no_grad;
    const auto saved = m->rel_embeddings.clone();
    m->rel_embeddings.zero_();
    CHECK(close(m->forward(x, ctx), ref->forward(x, ctx)));
    m->rel_embeddings.copy_(saved);
  }
}

TEST_CASE("relative: the logits are translation invariant in the relative term; forward is the explicit formula",
          "[variants]") {
  torch::manual_seed(4);
  RelativeAttention m(8, RelativeAttentionOptions().heads(2).max_relative_position(6));
  m->to(torch::kFloat64);
  m->eval();
  const auto x = randn({1, 6, 8});
  const auto [q, k, v] = m->project(x);
  for (bool causal : {false, true}) {
    const auto ctx = context(0, 0, 0, causal);
    const auto qs = q * (1.0 / std::sqrt(4.0));
    auto s = qs.matmul(k.transpose(-2, -1)) + m->relative_logits(qs, causal);
    if (causal) s = s.masked_fill(torch::ones({6, 6}, torch::kBool).triu(1), -std::numeric_limits<double>::infinity());
    CHECK(close(m->forward(x, ctx), merge_by_hand(*m, torch::softmax(s, -1).matmul(v))));
  }
  // The same query vector at every position: S_rel depends on j - i only (Toeplitz).
  const auto same = q.select(2, 0).unsqueeze(2).expand({1, 2, 6, 4}).contiguous();
  const auto s = m->relative_logits(same, false);
  CHECK(close(s.narrow(2, 1, 5).narrow(3, 1, 5), s.narrow(2, 0, 5).narrow(3, 0, 5)));
}

TEST_CASE("relative: parameter count; max_relative_position defaults to the longest sequence", "[variants]") {
  const auto m = mixer_registry().create(yaml("{type: attention/relative, heads: 4}"), MixerArgs{32, 17});
  CHECK(parameter_count(*m) == mhsa_count(32, true) + 4 * (2 * 17 - 1) * 8);
  const auto shared = mixer_registry().create(
      yaml("{type: attention/relative, heads: 4, shared_heads: true, max_relative_position: 5}"), MixerArgs{32, 17});
  CHECK(parameter_count(*shared) == mhsa_count(32, true) + (2 * 5 - 1) * 8);
  CHECK_THROWS_AS(mixer_registry().create(yaml("{type: attention/relative}"), MixerArgs{32, 0}), ConfigError);
}

// ---- attention/gpsa ---------------------------------------------------------------------------

TEST_CASE("gpsa: with the gate fully to content it equals softmax attention with the same q/k/v weights",
          "[variants]") {
  torch::manual_seed(5);
  Gpsa m(16, GpsaOptions().heads(4));
  m->to(torch::kFloat64);
  m->eval();
  auto ref = reference_softmax(16, 4, false);
  copy_projections(*m, *ref);
  for (std::int64_t prefix : {0, 1}) {
    INFO("prefix " << prefix);
    const auto x = randn({2, prefix + 9, 16});
    const auto ctx = context(3, 3, prefix);
    CHECK_FALSE(close(m->forward(x, ctx), ref->forward(x, ctx), 1e-6, 1e-9));  // lambda = 1: positional share
    torch::NoGradGuard no_grad;
    const auto saved = m->gating.clone();
    m->gating.fill_(-1e4);  // sigma(lambda) = 0 exactly
    CHECK(close(m->forward(x, ctx), ref->forward(x, ctx)));
    m->gating.copy_(saved);
  }
}

TEST_CASE("gpsa: with the gate fully to position the grid tokens ignore the q/k weights; prefix tokens do not",
          "[variants]") {
  torch::manual_seed(6);
  Gpsa m(16, GpsaOptions().heads(4));
  m->to(torch::kFloat64);
  m->eval();
  torch::NoGradGuard no_grad;
  m->gating.fill_(1e4);  // sigma(lambda) = 1 exactly
  const auto x = randn({2, 1 + 9, 16});
  const auto ctx = context(3, 3, 1);
  const auto before = m->forward(x, ctx);
  m->qkv->weight.narrow(0, 0, 32).normal_();  // new W_q, W_k
  const auto after = m->forward(x, ctx);
  CHECK(close(before.narrow(1, 1, 9), after.narrow(1, 1, 9)));
  CHECK_FALSE(close(before.narrow(1, 0, 1), after.narrow(1, 0, 1), 1e-6, 1e-9));  // the class token: content only
}

TEST_CASE("gpsa: with the local init each head's positional attention peaks at its own offset", "[variants]") {
  torch::manual_seed(7);
  Gpsa m(18, GpsaOptions().heads(9));  // a 3 x 3 layout of heads, centre 1
  m->to(torch::kFloat64);
  // W_v = I (standalone construction; see gpsa.h for vit).
  CHECK(torch::equal(m->qkv->weight.narrow(0, 36, 18), torch::eye(18, torch::kFloat64)));
  const auto p = m->positional_weights(25, context(5, 5));
  REQUIRE(p.sizes() == torch::IntArrayRef({9, 25, 25}));
  const std::int64_t query = 2 * 5 + 2;  // the centre of the 5 x 5 grid
  for (std::int64_t h1 = 0; h1 < 3; ++h1)
    for (std::int64_t h2 = 0; h2 < 3; ++h2) {
      const auto head = h1 + 3 * h2;
      const auto key = p[head][query].argmax().item<std::int64_t>();
      INFO("head " << head);
      CHECK(key % 5 - 2 == h2 - 1);  // dx
      CHECK(key / 5 - 2 == h1 - 1);  // dy
      // exp(-|delta - D|^2) up to normalisation: the peak is e times each 4-neighbour of it.
      CHECK(p[head][query][key].item<double>() / p[head][query][key + 5].item<double>() ==
            Approx(std::exp(1.0)).epsilon(1e-12));
    }
  // Without the local init the heads are not peaked at their offsets.
  Gpsa plain(18, GpsaOptions().heads(9).local_init(false));
  CHECK(plain->pos_weight.abs().max().item<double>() < 0.1);
}

TEST_CASE("gpsa: rows sum to 1; prefix rows are content attention; prefix keys get no positional weight",
          "[variants]") {
  torch::manual_seed(8);
  Gpsa m(16, GpsaOptions().heads(4));
  m->to(torch::kFloat64);
  const auto x = randn({2, 2 + 12, 16});
  const auto ctx = context(3, 4, 2);
  const auto [q, k, v] = m->project(x);
  const auto w = m->weights(q, k, ctx);
  CHECK(close(w.sum(-1), torch::ones({2, 4, 14}, torch::kFloat64)));
  CHECK(w.min().item<double>() >= 0.0);
  const auto content = torch::softmax(q.matmul(k.transpose(-2, -1)) / 2.0, -1);
  CHECK(close(w.narrow(2, 0, 2), content.narrow(2, 0, 2)));
  CHECK_FALSE(close(w.narrow(2, 2, 12), content.narrow(2, 2, 12), 1e-6, 1e-9));
  const auto p = m->positional_weights(14, ctx);
  CHECK(p.narrow(1, 0, 2).abs().max().item<double>() == 0.0);
  CHECK(p.narrow(2, 0, 2).abs().max().item<double>() == 0.0);
  CHECK(close(p.narrow(1, 2, 12).sum(-1), torch::ones({4, 12}, torch::kFloat64)));
  // The gated mix of the two, explicitly.
  const auto g = torch::sigmoid(m->gating).view({1, 4, 1, 1});
  CHECK(close(w.narrow(2, 2, 12), ((1 - g) * content + g * p).narrow(2, 2, 12)));
}

TEST_CASE("gpsa: not causal; a plain sequence is a 1 x N grid; a mismatched grid is an error", "[variants]") {
  torch::manual_seed(9);
  Gpsa m(8, GpsaOptions().heads(2));
  m->to(torch::kFloat64);
  CHECK_FALSE(m->capabilities().causal);
  const auto x = randn({1, 6, 8});
  CHECK_THROWS(m->forward(x, context(0, 0, 0, true)));
  CHECK(close(m->forward(x, context()), m->forward(x, context(1, 6))));
  CHECK_THROWS(m->forward(x, context(2, 2)));
}

// ---- attention/sigmoid ------------------------------------------------------------------------

TEST_CASE("sigmoid: weights are sigmoid(s - ln N) elementwise and the output is the explicit formula", "[variants]") {
  torch::manual_seed(10);
  SigmoidAttention m(16, SigmoidAttentionOptions().heads(2));
  m->to(torch::kFloat64);
  m->eval();
  const auto x = randn({2, 7, 16});
  const auto [q, k, v] = m->project(x);
  const auto s = q.matmul(k.transpose(-2, -1)) / std::sqrt(8.0);
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto ctx = context(0, 0, 0, causal);
    auto expected = torch::sigmoid(s - std::log(7.0));
    if (causal) expected = expected.masked_fill(torch::ones({7, 7}, torch::kBool).triu(1), 0.0);
    const auto w = m->weights(q, k, ctx);
    CHECK(close(w, expected));
    if (causal) CHECK(w.triu(1).abs().max().item<double>() == 0.0);  // masked entries exactly 0
    CHECK(close(m->forward(x, ctx), merge_by_hand(*m, expected.matmul(v))));
  }
}

TEST_CASE("sigmoid: with zero logits every row sums to n / (n + 1), i.e. b = -ln n", "[variants]") {
  for (std::int64_t n : {5, 16}) {
    SigmoidAttention m(8, SigmoidAttentionOptions().heads(2));
    m->to(torch::kFloat64);
    {
      torch::NoGradGuard no_grad;
      m->qkv->weight.zero_();
      m->qkv->bias.zero_();
    }
    const auto x = randn({1, n, 8});
    const auto [q, k, v] = m->project(x);
    const auto rows = m->weights(q, k, context()).sum(-1);
    const double expected = static_cast<double>(n) / static_cast<double>(n + 1);
    CHECK(close(rows, torch::full_like(rows, expected)));
  }
}

TEST_CASE("sigmoid: constant and learned biases; qk_norm normalises q and k per head", "[variants]") {
  torch::manual_seed(11);
  const auto constant = mixer_registry().create(
      yaml("{type: attention/sigmoid, heads: 2, bias_mode: constant, bias: -3.5}"), MixerArgs{8, 10});
  CHECK(parameter_count(*constant) == mhsa_count(8, true));
  CHECK(std::dynamic_pointer_cast<SigmoidAttentionImpl>(constant)->logit_bias(10).item<double>() == -3.5);
  const auto learned =
      mixer_registry().create(yaml("{type: attention/sigmoid, heads: 2, bias_mode: learned}"), MixerArgs{8, 10});
  const auto* impl = dynamic_cast<SigmoidAttentionImpl*>(learned.get());
  REQUIRE(impl != nullptr);
  REQUIRE(impl->learned_bias.defined());
  CHECK(impl->learned_bias.item<double>() == Approx(-std::log(10.0)));
  CHECK(parameter_count(*learned) == mhsa_count(8, true) + 1);
  SigmoidAttention normed(8, SigmoidAttentionOptions().heads(2).qk_norm(true));
  normed->to(torch::kFloat64);
  CHECK(parameter_count(*normed) == mhsa_count(8, true) + 4 * 4);
  const auto x = randn({1, 5, 8});
  const auto [q, k, v] = normed->project(x);
  const auto ln = [](const torch::Tensor& t) { return torch::layer_norm(t, {4}, {}, {}, 1e-6); };
  const auto s = ln(q).matmul(ln(k).transpose(-2, -1)) / 2.0;
  CHECK(close(normed->weights(q, k, context()), torch::sigmoid(s - std::log(5.0))));
  CHECK_THROWS_AS(mixer_registry().create(yaml("{type: attention/sigmoid, bias_mode: zero}"), MixerArgs{8, 10}),
                  ConfigError);
}

// ---- attention/softplus -----------------------------------------------------------------------

TEST_CASE("softplus: LSSA closed form on a tiny input, causal and not", "[variants]") {
  // One head of width 1 (scale 1): s_ij = q_i k_j.
  SoftplusAttention m(1, SoftplusAttentionOptions().heads(1));
  m->to(torch::kFloat64);
  const double qv[3] = {1.0, -2.0, 0.5}, kv[3] = {0.5, 1.0, -2.0};
  const auto q = torch::tensor({qv[0], qv[1], qv[2]}, torch::kFloat64).view({1, 1, 3, 1});
  const auto k = torch::tensor({kv[0], kv[1], kv[2]}, torch::kFloat64).view({1, 1, 3, 1});
  const auto softplus = [](double z) { return std::log1p(std::exp(z)); };
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto w = m->weights(q, k, context(0, 0, 0, causal));
    for (int i = 0; i < 3; ++i) {
      const int n = causal ? i + 1 : 3;
      const double kappa = std::log(static_cast<double>(n)) / std::log(512.0);
      double total = 0.0;
      for (int j = 0; j < n; ++j) total += softplus(kappa * qv[i] * kv[j]);
      for (int j = 0; j < 3; ++j) {
        const double expected = j < n ? softplus(kappa * qv[i] * kv[j]) / total : 0.0;
        CHECK(w[0][0][i][j].item<double>() == Approx(expected).epsilon(1e-13).margin(1e-15));
      }
    }
  }
  // The length scale is 1 when n equals the base: plain softplus, l1-normalised.
  SoftplusAttention at_base(1, SoftplusAttentionOptions().heads(1).length_base(3.0));
  at_base->to(torch::kFloat64);
  const auto s = torch::tensor({{0.3, -1.0, 2.0}}, torch::kFloat64);
  const auto plain = torch::softplus(s) / torch::softplus(s).sum(-1, true);
  CHECK(close(at_base->normalise_logits(s), plain));
}

TEST_CASE("softplus: LSSAR re-weighting closed form, argmax kept, rows sum to 1, large p one-hot, uniform rows kept",
          "[variants]") {
  torch::manual_seed(12);
  SoftplusAttention lssa(8, SoftplusAttentionOptions().heads(2));
  SoftplusAttention lssar(8, SoftplusAttentionOptions().heads(2).reweight(true).power(3.0));
  const auto s = randn({2, 2, 6, 6}) * 3.0;
  const auto a = lssa->normalise_logits(s);
  const auto r = lssar->normalise_logits(s);
  const auto sharpened = torch::relu(6.0 * a - 1.0).pow(3.0);
  CHECK(close(r, sharpened / sharpened.sum(-1, true)));
  CHECK(close(r.sum(-1), torch::ones({2, 2, 6}, torch::kFloat64)));
  CHECK(torch::equal(r.argmax(-1), a.argmax(-1)));
  // A large power tends to one-hot at the argmax (rows with clear maxima).
  SoftplusAttention steep(8, SoftplusAttentionOptions().heads(2).reweight(true).power(200.0));
  const auto rows =
      torch::tensor({{2.0, 1.0, 0.0, -1.0}, {0.5, 3.0, 0.1, 0.2}, {-2.0, -1.0, -3.0, 1.5}}, torch::kFloat64);
  const auto one_hot = torch::one_hot(rows.argmax(-1), 4).to(torch::kFloat64);
  CHECK(max_diff(steep->normalise_logits(rows), one_hot) < 1e-6);
  CHECK(max_diff(lssar->normalise_logits(rows), one_hot) > 1e-3);
  // A uniform row (equal logits) has nothing above 1/n: it keeps A, with finite gradients.
  const auto flat = torch::zeros({1, 4}, torch::kFloat64).requires_grad_(true);
  const auto kept = lssar->normalise_logits(flat);
  CHECK(close(kept, torch::full({1, 4}, 0.25, torch::kFloat64)));
  (kept * torch::randn_like(kept)).sum().backward();
  CHECK(torch::isfinite(flat.grad()).all().item<bool>());
}

TEST_CASE("softplus: length_base 0 is the longest sequence; invalid bases are config errors", "[variants]") {
  const auto m = mixer_registry().create(yaml("{type: attention/softplus, heads: 2, length_base: 0}"), MixerArgs{8, 5});
  const auto* impl = dynamic_cast<SoftplusAttentionImpl*>(m.get());
  REQUIRE(impl != nullptr);
  CHECK(impl->options().length_base() == 5.0);
  CHECK(parameter_count(*m) == mhsa_count(8, true));
  CHECK_THROWS_AS(mixer_registry().create(yaml("{type: attention/softplus, length_base: 1}"), MixerArgs{8, 5}),
                  ConfigError);
  CHECK_THROWS_AS(mixer_registry().create(yaml("{type: attention/softplus, length_base: 0}"), MixerArgs{8, 0}),
                  ConfigError);
}

// ---- attention/selective ----------------------------------------------------------------------

TEST_CASE("selective: with beta -> +inf (temperature 1) it equals softmax attention with the same weights",
          "[variants]") {
  torch::manual_seed(13);
  SelectiveAttention m(16, SelectiveAttentionOptions().heads(4).query_temperature(true).value_temperature(true));
  m->to(torch::kFloat64);
  m->eval();
  auto ref = reference_softmax(16, 4, true);
  copy_projections(*m, *ref);
  const auto x = randn({2, 9, 16});
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto ctx = context(0, 0, 0, causal);
    CHECK_FALSE(close(m->forward(x, ctx), ref->forward(x, ctx), 1e-6, 1e-9));  // beta = 1.5: tau > 1
    torch::NoGradGuard no_grad;
    m->beta.fill_(10.0);  // exp(-exp(10)) = 0 in float64; the token gates start at zero
    CHECK(close(m->forward(x, ctx), ref->forward(x, ctx)));
    m->beta.fill_(1.5);
  }
}

TEST_CASE("selective: tau_1 = 1, tau grows with the position, and every row is sharper than vanilla", "[variants]") {
  torch::manual_seed(14);
  SelectiveAttention m(16, SelectiveAttentionOptions().heads(4).beta(0.0));
  m->to(torch::kFloat64);
  const auto x = randn({2, 12, 16});
  const auto [q, k, v] = m->project(x);
  const auto tau = m->query_temperatures(q, true).flatten();
  CHECK(tau[0].item<double>() == 1.0);
  CHECK((tau.narrow(0, 1, 11) > tau.narrow(0, 0, 11)).all().item<bool>());
  for (std::int64_t i = 0; i < 12; ++i)
    CHECK(tau[i].item<double>() == Approx(1.0 + std::exp(-1.0) * std::log(static_cast<double>(i + 1))));
  // Non-causal: every query sees N keys.
  CHECK(close(m->query_temperatures(q, false).flatten(),
              torch::full({12}, 1.0 + std::exp(-1.0) * std::log(12.0), torch::kFloat64)));
  for (bool causal : {false, true}) {
    const auto ctx = context(0, 0, 0, causal);
    auto s = q.matmul(k.transpose(-2, -1)) / 2.0;
    if (causal)
      s = s.masked_fill(torch::ones({12, 12}, torch::kBool).triu(1), -std::numeric_limits<double>::infinity());
    const auto vanilla = torch::softmax(s, -1), selective = m->weights(q, k, ctx);
    CHECK((entropy(selective) <= entropy(vanilla) + 1e-12).all().item<bool>());
    if (causal) CHECK(close(selective.select(2, 0), vanilla.select(2, 0)));  // tau_1 = 1
    const auto expected_tau = m->query_temperatures(q, causal);
    CHECK(close(selective, torch::softmax(s * expected_tau, -1)));
  }
}

TEST_CASE("selective: token-aware query and value temperatures follow their formulas", "[variants]") {
  torch::manual_seed(15);
  SelectiveAttention m(16, SelectiveAttentionOptions().heads(4).query_temperature(true).value_temperature(true));
  m->to(torch::kFloat64);
  m->eval();
  CHECK(parameter_count(*m) == mhsa_count(16, true) + 1 + 2 * 4 * 4);
  {
    torch::NoGradGuard no_grad;
    m->query_gate.normal_();
    m->value_gate.normal_();
  }
  const auto x = randn({2, 7, 16});
  const auto [q, k, v] = m->project(x);
  const auto pos = 1.0 + std::exp(-std::exp(1.5)) * std::log(7.0);
  const auto tau = pos + torch::tanh((q * m->query_gate.view({1, 4, 1, 4})).sum(-1, true));
  const auto w = torch::softmax(q.matmul(k.transpose(-2, -1)) * tau / 2.0, -1);
  const auto scaled_v = v * (1.0 + torch::tanh((v * m->value_gate.view({1, 4, 1, 4})).sum(-1, true)));
  torch::NoGradGuard no_grad;
  CHECK(close(m->weights(q, k, context()), w));
  CHECK(close(m->forward(x, context()), merge_by_hand(*m, w.matmul(scaled_v))));
}

// ---- attention/urpe ---------------------------------------------------------------------------

TEST_CASE("urpe: with C = 1 it equals RPE softmax attention; in general the weights are softmax(s + B) ⊙ C",
          "[variants]") {
  torch::manual_seed(16);
  UrpeAttention m(16, UrpeAttentionOptions().heads(4).max_relative_position(5));
  m->to(torch::kFloat64);
  m->eval();
  const std::int64_t n = 8;  // longer than M: offsets beyond +-4 are clipped
  const auto x = randn({2, n, 16});
  const auto [q, k, v] = m->project(x);
  auto b = torch::zeros({4, n, n}, torch::kFloat64), c = torch::zeros({4, n, n}, torch::kFloat64);
  const auto fill = [&](torch::Tensor& out, const torch::Tensor& table) {
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        out.select(1, i).select(1, j).copy_(table.select(1, std::clamp<std::int64_t>(j - i, -4, 4) + 4));
  };
  fill(b, m->bias_table.detach());
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const auto ctx = context(0, 0, 0, causal);
    auto s = q.matmul(k.transpose(-2, -1)) / 2.0 + b;
    if (causal) s = s.masked_fill(torch::ones({n, n}, torch::kBool).triu(1), -std::numeric_limits<double>::infinity());
    const auto rpe = torch::softmax(s, -1);
    torch::NoGradGuard no_grad;
    CHECK(close(m->forward(x, ctx), merge_by_hand(*m, rpe.matmul(v))));  // constant init: C = 1
    m->toeplitz_table.normal_();
    fill(c, m->toeplitz_table);
    CHECK(close(m->weights(q, k, ctx), rpe * c));
    CHECK(close(m->forward(x, ctx), merge_by_hand(*m, (rpe * c).matmul(v))));
    m->toeplitz_table.fill_(1.0);
  }
}

TEST_CASE("urpe: C is Toeplitz; C = 0 leaves only the output bias; parameter count", "[variants]") {
  torch::manual_seed(17);
  UrpeAttention m(8, UrpeAttentionOptions().heads(2).max_relative_position(4).constant_init(false));
  m->to(torch::kFloat64);
  const auto c = m->multiplier(9);
  REQUIRE(c.sizes() == torch::IntArrayRef({2, 9, 9}));
  CHECK(torch::equal(c.narrow(1, 1, 8).narrow(2, 1, 8), c.narrow(1, 0, 8).narrow(2, 0, 8)));  // depends on j - i
  CHECK(torch::equal(c[0][0][8], m->toeplitz_table[0][6]));                                   // offset 8 clipped to 3
  CHECK(torch::equal(c[1][8][0], m->toeplitz_table[1][0]));                                   // offset -8 clipped to -3
  CHECK(m->toeplitz_table.abs().max().item<double>() < 0.2);                                  // N(0, 0.02)
  {
    torch::NoGradGuard no_grad;
    m->toeplitz_table.zero_();
  }
  const auto x = randn({2, 5, 8});
  CHECK(close(m->forward(x, context()), m->proj->bias.expand({2, 5, 8})));
  CHECK(parameter_count(*m) == mhsa_count(8, true) + 2 * 2 * (2 * 4 - 1));
  const auto no_bias =
      mixer_registry().create(yaml("{type: attention/urpe, heads: 2, rel_bias: false}"), MixerArgs{8, 17});
  CHECK(parameter_count(*no_bias) == mhsa_count(8, true) + 2 * (2 * 17 - 1));
}
