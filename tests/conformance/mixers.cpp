// Registry-driven conformance of token mixers, driven by their capabilities: every registered
// mixer, and every mask composed into attention/softmax, is built from its EntryInfo.example and
// checked for what its MixerCapabilities promise. A new mixer is covered by registering it;
// nothing here names a block, and there is no skip list.
//
//   all mixers    shape, grad, grad values, determinism, batch (checks.h) at 17 tokens (1 prefix + 4x4 grid);
//                 shape at 1, 17 and 70 (grid) or 73 (plain) tokens (so chunk and window boundaries are crossed), on
//                 a grid and, unless needs_grid, as a plain sequence
//   causal        no output depends on a later token, at every length > 1
//   weights       (normalised or unnormalised: P ⊙ C may be negative) an enabled probe records [B,h,N,N] with the layer
//                 and the key, a disabled one nothing; causal maps are zero above the diagonal;
//                 the output with capture (reference path) equals the output without (fused
//                 path) at every length, float64 and float32. normalised: non-negative, rows sum to 1.
//                 none: the probe records nothing.
//   recurrent     init_state + step token by token equals the causal parallel form (float64,
//                 max abs error <= 1e-9) at every length; the state's size does not grow
//   variable_lengths  padding after lengths[b] never changes the outputs of valid tokens
#include <catch2/catch.hpp>

#include "blocks/interfaces.h"
#include "blocks/masks/mask.h"
#include "conformance/checks.h"
#include "conformance/decay_recurrence.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::conformance;

namespace {

constexpr std::int64_t kBatch = 3, kDim = 32, kLongest = 73;
constexpr int kLayer = 3;

// The tokens a mixer sees: prefix tokens, then a grid (0 x 0: a plain sequence of `plain`).
struct Layout {
  std::int64_t prefix = 0, grid_h = 0, grid_w = 0, plain = 0;
  std::int64_t tokens() const { return grid_h > 0 ? prefix + grid_h * grid_w : plain; }
  MixerContext context(bool causal = false, AttentionProbe* probe = nullptr) const {
    MixerContext ctx;
    ctx.grid_height = grid_h;
    ctx.grid_width = grid_w;
    ctx.prefix_tokens = prefix;
    ctx.causal = causal;
    ctx.probe = probe;
    ctx.layer = kLayer;
    return ctx;
  }
  torch::Tensor input() const { return torch::randn({kBatch, tokens(), kDim}, torch::kFloat64); }
};
std::ostream& operator<<(std::ostream& os, const Layout& l) {
  if (l.grid_h == 0) return os << l.plain << " tokens (plain sequence)";
  return os << l.tokens() << " tokens (" << l.prefix << " prefix + " << l.grid_h << "x" << l.grid_w << " grid)";
}

const Layout kMain{1, 4, 4, 0};
// 1, 17 and 70 tokens (6 prefix tokens: a class token and 5 registers, so 8x8 tables fit).
const std::vector<Layout> kGridLayouts{{0, 1, 1, 0}, kMain, {6, 8, 8, 0}};
const std::vector<Layout> kPlainLayouts{{0, 0, 0, 1}, {0, 0, 0, 17}, {0, 0, 0, kLongest}};

using Build = std::function<TokenMixer()>;

Subject<TokenMixer> subject(const Build& build, const Layout& layout, bool causal) {
  const auto ctx = layout.context(causal);
  return {build, [ctx](TokenMixer& m, const torch::Tensor& x) { return m->forward(x, ctx); },
          [layout] { return layout.input(); }};
}

void check_records(const std::string& key, TokenMixer& m, const Layout& layout, bool causal) {
  m->eval();
  torch::NoGradGuard no_grad;
  const auto x = layout.input();
  AttentionProbe disabled;
  m->forward(x, layout.context(causal, &disabled));
  CHECK(disabled.records().empty());
  AttentionProbe probe;
  probe.enable();
  m->forward(x, layout.context(causal, &probe));
  REQUIRE_FALSE(probe.records().empty());
  const auto n = layout.tokens();
  for (const auto& r : probe.records()) {
    CHECK(r.layer == kLayer);
    CHECK(r.mixer == key);
    REQUIRE(r.probs.dim() == 4);
    CHECK(r.probs.sizes() == torch::IntArrayRef({kBatch, r.probs.size(1), n, n}));
    CHECK(all_finite(r.probs));
    if (causal) {
      INFO("causal maps must be zero above the diagonal");
      CHECK(r.probs.triu(1).abs().max().item<double>() == 0.0);
    }
    if (m->capabilities().weights == MixerCapabilities::Weights::normalised) {
      INFO("normalised weights: non-negative, rows sum to 1");
      CHECK(r.probs.min().item<double>() >= 0.0);
      const auto rows = r.probs.sum(-1);
      CHECK(close(rows, torch::ones_like(rows), 0.0, 1e-12));
    }
  }
}

void check_no_records(TokenMixer& m, const Layout& layout) {
  m->eval();
  torch::NoGradGuard no_grad;
  AttentionProbe probe;
  probe.enable();
  m->forward(layout.input(), layout.context(false, &probe));
  CHECK(probe.records().empty());
}

// The output with capture (the reference path) equals the output without (the default path).
void check_capture_changes_nothing(const Build& build, const Layout& layout, bool causal, torch::Dtype dtype) {
  torch::manual_seed(7);
  TokenMixer m = build();
  m->to(dtype);
  m->eval();
  torch::NoGradGuard no_grad;
  const auto x = layout.input().to(dtype);
  AttentionProbe probe;
  probe.enable();
  INFO("dtype " << dtype << ", causal " << causal);
  const bool f64 = dtype == torch::kFloat64;
  CHECK(close(m->forward(x, layout.context(causal)), m->forward(x, layout.context(causal, &probe)),
              f64 ? 1e-10 : 1e-4, f64 ? 1e-12 : 1e-5));
}

// Max abs error between stepping token by token and the causal parallel form (float64); checks
// on the way that the state keeps its size and counts the tokens.
double recurrent_error(TokenMixer& m, const Layout& layout) {
  m->eval();
  torch::NoGradGuard no_grad;
  const auto x = layout.input();
  const auto parallel = m->forward(x, layout.context(true));
  const MixerContext step_ctx = Layout{0, 0, 0, 1}.context();
  MixerState state = m->init_state(kBatch, x.options());
  CHECK(state.position == 0);
  const auto size = state.numel();
  std::vector<torch::Tensor> outputs;
  for (std::int64_t t = 0; t < x.size(1); ++t) {
    MixerStep s = m->step(x.select(1, t), state, step_ctx);
    REQUIRE(s.output.sizes() == torch::IntArrayRef({kBatch, kDim}));
    outputs.push_back(s.output);
    state = std::move(s.state);
    CHECK(state.numel() == size);
  }
  CHECK(state.position == x.size(1));
  return (torch::stack(outputs, 1) - parallel).abs().max().item<double>();
}

void check_recurrent(const Build& build, const Layout& layout) {
  torch::manual_seed(12);
  TokenMixer m = build();
  const double err = recurrent_error(m, layout);
  INFO("max abs error of the recurrent form: " << err);
  CHECK(err <= 1e-9);
}

// Right padding: randomising tokens at or after lengths[b] changes no valid token's output.
void check_variable_lengths(const Build& build, const Layout& layout) {
  const auto n = layout.tokens();
  if (n < 2) return;
  torch::manual_seed(13);
  TokenMixer m = build();
  m->eval();
  torch::NoGradGuard no_grad;
  const auto lengths = torch::tensor({n, n / 2, std::int64_t{1}}, torch::kLong);
  auto ctx = layout.context();
  ctx.lengths = lengths;
  const auto x = layout.input();
  auto padded = x.clone();
  const auto valid = torch::arange(n).unsqueeze(0) < lengths.unsqueeze(1);  // [B, N]
  padded.masked_scatter_(~valid.unsqueeze(-1).expand_as(x), torch::randn_like(x) * 10);
  const auto y = m->forward(x, ctx), y2 = m->forward(padded, ctx);
  const auto keep = valid.unsqueeze(-1).expand_as(y);
  CHECK(close(y.masked_select(keep), y2.masked_select(keep), 1e-10, 1e-12));
}

// Everything the capabilities promise, at every length and layout.
void check_mixer(const std::string& recorded_key, const Build& build) {
  torch::manual_seed(8);
  TokenMixer probe_subject = build();
  const MixerCapabilities caps = probe_subject->capabilities();
  const auto main = subject(build, kMain, false);
  check_shape(main, {kBatch, kMain.tokens(), kDim});
  check_grads(main);
  check_grad_values(main);
  check_determinism(main);
  check_batch_independence(main);
  std::vector<Layout> layouts = kGridLayouts;
  if (!caps.needs_grid) layouts.insert(layouts.end(), kPlainLayouts.begin(), kPlainLayouts.end());
  for (const Layout& layout : layouts) {
    INFO(layout);
    check_shape(subject(build, layout, false), {kBatch, layout.tokens(), kDim});
    const auto n = layout.tokens();
    if (caps.causal && n > 1) check_causal(subject(build, layout, true), n / 2);
    if (caps.records_weights()) {
      for (bool causal : {false, true}) {
        if (causal && !caps.causal) continue;
        check_records(recorded_key, probe_subject, layout, causal);
        check_capture_changes_nothing(build, layout, causal, torch::kFloat64);
        check_capture_changes_nothing(build, layout, causal, torch::kFloat32);
      }
    } else {
      check_no_records(probe_subject, layout);
    }
    if (caps.recurrent) check_recurrent(build, layout);
    if (caps.variable_lengths) check_variable_lengths(build, layout);
  }
}

Build registry_build(const ConfigNode& config) {
  return [config]() -> TokenMixer {
    TokenMixer m = mixer_registry().create(config, MixerArgs{kDim, kLongest});
    m->to(torch::kFloat64);
    return m;
  };
}

}  // namespace

TEST_CASE("conformance: token mixers", "[conformance]") {
  const auto& reg = mixer_registry();
  CHECK(reg.size() > 0);
  for (const EntryInfo* e : reg.list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("mixer " << key) { check_mixer(key, registry_build(example_config(*e))); }
  }
}

// Every mask inside the reference attention (attention/softmax, 2 heads).
TEST_CASE("conformance: attention masks", "[conformance]") {
  for (const EntryInfo* e : mask_registry().list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("mask " << key) {
      ConfigNode config = ConfigNode::map();
      config.set("type", ConfigNode::string("attention/softmax"));
      config.set("heads", ConfigNode::integer(2));
      config.set("mask", example_config(*e));
      check_mixer("attention/softmax", registry_build(config));
    }
  }
}

// The recurrent checks themselves, on a test-only recurrent mixer (conformance/decay_recurrence.h).
TEST_CASE("conformance: a recurrent mixer steps like its parallel form", "[conformance]") {
  const Build build = [] {
    TokenMixer m = std::make_shared<DecayRecurrenceImpl>(kDim);
    m->to(torch::kFloat64);
    return m;
  };
  check_mixer("test/decay-recurrence", build);
}

TEST_CASE("conformance: the recurrent check catches a step that differs from the parallel form", "[conformance]") {
  // A mixer whose step forgets its state: stepping no longer equals the parallel form.
  struct Forgetful : DecayRecurrenceImpl {
    using DecayRecurrenceImpl::DecayRecurrenceImpl;
    MixerStep step(const torch::Tensor& x_t, const MixerState& state, const MixerContext& ctx) override {
      MixerStep s = DecayRecurrenceImpl::step(x_t, init_state(x_t.size(0), x_t.options()), ctx);
      s.state.position = state.position + 1;
      return s;
    }
  };
  torch::manual_seed(12);
  TokenMixer m = std::make_shared<Forgetful>(kDim);
  m->to(torch::kFloat64);
  CHECK(recurrent_error(m, kMain) > 1e-3);
}

TEST_CASE("conformance: a mixer without a recurrent form refuses to step, naming why", "[conformance]") {
  TokenMixer m = registry_build(parse_yaml("{type: attention/softmax, heads: 2}", "test"))();
  CHECK_FALSE(m->capabilities().recurrent);
  CHECK_THROWS_WITH(m->init_state(2, torch::kFloat64), Catch::Contains("no recurrent form"));
}

TEST_CASE("conformance: describe shows a mixer's capabilities", "[conformance]") {
  const auto facts = [](const std::string& key) {
    const auto lines = mixer_registry().described_facts(mixer_registry().info(key));
    REQUIRE(lines.size() == 1);
    return lines.front();
  };
  CHECK(facts("attention/softmax") ==
        "capabilities: causal yes, recurrent no, attention weights normalised, variable lengths yes, needs a grid no");
  CHECK(facts("attention/gpsa").find("causal no") != std::string::npos);
  CHECK(facts("attention/sigmoid").find("attention weights unnormalised") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
