// Registry-driven conformance: every registered mixer, channel mixer, block, backbone and head
// is built from its EntryInfo.example and checked for the properties every block must have.
// A new block is covered by registering it; nothing here names a block.
//
// Checks (names as used in tests/conformance_skip.txt):
//   all kinds       shape        output shape
//                   grad         every parameter (and the input) gets a finite gradient
//                   determinism  the same seed builds the same module and gives the same output
//                                (train mode, so dropout / drop_path draws are covered too)
//   mixer, block,   batch        in eval mode, changing sample j changes no other sample's output
//   backbone, head
//   mixer, block    causal       with ctx.causal (mixers: when supports_causal()), perturbing
//                                token t changes no output before t (and does change some after)
//   mixer           probe        with an enabled AttentionProbe the mixer records [B,h,N,N] with
//                                ctx.layer and its key; a disabled probe records nothing; causal
//                                maps are zero above the diagonal. Mixers that are not
//                                attention-like opt out here with a reason.
//                   probe_rows   recorded rows sum to 1 (softmax-normalised attention)
//                   probe_equal  the output with capture equals the output without, in float64
//                                and float32 (fused vs reference path)
//   channel         tokens       changing token j leaves every other token's output unchanged
//   backbone        probe        capture records maps layer by layer and leaves features unchanged
//   mask            (the mixer checks) each mask composed into attention/softmax (2 heads)
//
// Opting out: tests/conformance_skip.txt holds "kind key check reason..." lines; the reason is
// mandatory, and a line naming an unregistered entry or an unknown check fails the suite.
#include <catch2/catch.hpp>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "blocks/interfaces.h"
#include "blocks/masks/mask.h"
#include "registry/yaml_io.h"

using namespace blocklab;

namespace {

// Small shapes: B samples of N = prefix + grid tokens of width C.
constexpr std::int64_t kBatch = 3, kDim = 32, kGridH = 4, kGridW = 4, kPrefix = 1;
constexpr std::int64_t kTokens = kPrefix + kGridH * kGridW;  // 17
constexpr int kLayer = 3;
constexpr std::int64_t kCausalToken = 8;

const std::map<std::string, std::set<std::string>>& known_checks() {
  static const std::map<std::string, std::set<std::string>> checks{
      {"mixer", {"shape", "grad", "determinism", "batch", "causal", "probe", "probe_rows", "probe_equal"}},
      {"channel", {"shape", "grad", "determinism", "tokens"}},
      {"block", {"shape", "grad", "determinism", "batch", "causal"}},
      {"backbone", {"shape", "grad", "determinism", "batch", "probe"}},
      {"head", {"shape", "grad", "determinism", "batch"}},
      {"mask", {"shape", "grad", "determinism", "batch", "causal", "probe", "probe_rows", "probe_equal"}},
  };
  return checks;
}

struct Skip {
  std::string kind, key, check, reason;
  int line = 0;
};

std::vector<Skip> load_skips() {
  const std::string path = std::string(BLOCKLAB_TEST_DIR) + "/conformance_skip.txt";
  std::ifstream in(path);
  std::vector<Skip> out;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    std::istringstream words(line);
    Skip s;
    s.line = line_no;
    words >> s.kind >> s.key >> s.check;
    std::getline(words, s.reason);
    if (const auto start = s.reason.find_first_not_of(" \t"); start != std::string::npos)
      s.reason = s.reason.substr(start);
    else
      s.reason.clear();
    out.push_back(s);
  }
  return out;
}

bool skipped(const std::string& kind, const std::string& key, const std::string& check) {
  static const std::vector<Skip> skips = load_skips();
  for (const auto& s : skips)
    if (s.kind == kind && s.key == key && s.check == check) return true;
  return false;
}

ConfigNode example_config(const EntryInfo& e) {
  ConfigNode node = parse_yaml(e.example.empty() ? "{}" : e.example, e.key + " example (" + e.defined_at + ")");
  if (!node.is_map()) node = ConfigNode::map();
  node.set("type", ConfigNode::string(e.key));
  return node;
}

bool all_finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

bool close(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, rtol, atol);
}

// What the generic checks need to know about one entry.
template <class M>
struct Subject {
  std::function<M()> build;                                        // a fresh float64 module
  std::function<torch::Tensor(M&, const torch::Tensor&)> forward;  // input -> output
  std::function<torch::Tensor()> input;                            // a fresh float64 input
};

template <class M>
void check_shape(const Subject<M>& s, std::vector<std::int64_t> expected) {
  torch::manual_seed(1);
  M m = s.build();
  m->eval();
  const auto y = s.forward(m, s.input());
  CHECK(y.sizes() == torch::IntArrayRef(expected));
  CHECK(y.scalar_type() == torch::kFloat64);
  CHECK(all_finite(y));
}

template <class M>
void check_grads(const Subject<M>& s) {
  torch::manual_seed(2);
  M m = s.build();
  m->train();
  const torch::Tensor x = s.input().requires_grad_(true);
  const auto y = s.forward(m, x);
  // A random projection of the output: a plain sum is blind after a LayerNorm.
  (y * torch::randn_like(y)).sum().backward();
  for (const auto& p : m->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    INFO("parameter " << p.key());
    REQUIRE(p.value().grad().defined());
    CHECK(all_finite(p.value().grad()));
  }
  REQUIRE(x.grad().defined());
  CHECK(all_finite(x.grad()));
  CHECK(x.grad().abs().sum().item<double>() > 0.0);
}

template <class M>
void check_determinism(const Subject<M>& s) {
  const auto run = [&] {
    torch::manual_seed(3);
    M m = s.build();
    m->train();
    const auto x = s.input();
    torch::manual_seed(4);
    return s.forward(m, x);
  };
  const auto a = run(), b = run();
  CHECK(torch::equal(a, b));
}

// Changing sample `changed` must leave every other sample's output as it was (eval mode).
template <class M>
void check_batch_independence(const Subject<M>& s, std::int64_t changed = 1) {
  torch::manual_seed(5);
  M m = s.build();
  m->eval();
  torch::NoGradGuard no_grad;
  const auto x = s.input();
  auto x2 = x.clone();
  x2[changed].copy_(torch::randn_like(x2[changed]));
  const auto y = s.forward(m, x), y2 = s.forward(m, x2);
  for (std::int64_t i = 0; i < x.size(0); ++i) {
    INFO("sample " << i << " (sample " << changed << " changed)");
    if (i == changed)
      CHECK_FALSE(close(y[i], y2[i], 1e-6, 1e-9));
    else
      CHECK(close(y[i], y2[i], 1e-10, 1e-12));
  }
}

// With ctx.causal, perturbing token t changes no output before t, and some output from t on.
template <class M>
void check_causal(const Subject<M>& s) {
  torch::manual_seed(6);
  M m = s.build();
  m->eval();
  torch::NoGradGuard no_grad;
  const auto x = s.input();
  auto x2 = x.clone();
  x2.select(1, kCausalToken).add_(torch::randn_like(x2.select(1, kCausalToken)));
  const auto y = s.forward(m, x), y2 = s.forward(m, x2);
  const auto before = torch::indexing::Slice(0, kCausalToken), after = torch::indexing::Slice(kCausalToken);
  using torch::indexing::Slice;
  CHECK(close(y.index({Slice(), before}), y2.index({Slice(), before}), 1e-10, 1e-12));
  CHECK_FALSE(close(y.index({Slice(), after}), y2.index({Slice(), after}), 1e-6, 1e-9));
}

torch::Tensor tokens_input() { return torch::randn({kBatch, kTokens, kDim}, torch::kFloat64); }

MixerContext mixer_context(bool causal = false, AttentionProbe* probe = nullptr) {
  MixerContext ctx;
  ctx.grid_height = kGridH;
  ctx.grid_width = kGridW;
  ctx.prefix_tokens = kPrefix;
  ctx.causal = causal;
  ctx.probe = probe;
  ctx.layer = kLayer;
  return ctx;
}

// The recorded maps of one forward with an enabled probe (float64, eval).
void check_mixer_probe(const std::string& key, TokenMixer& m, bool causal) {
  m->eval();
  torch::NoGradGuard no_grad;
  const auto x = tokens_input();
  AttentionProbe disabled;
  m->forward(x, mixer_context(causal, &disabled));
  CHECK(disabled.records().empty());
  AttentionProbe probe;
  probe.enable();
  m->forward(x, mixer_context(causal, &probe));
  REQUIRE_FALSE(probe.records().empty());
  for (const auto& r : probe.records()) {
    CHECK(r.layer == kLayer);
    CHECK(r.mixer == key);
    REQUIRE(r.probs.dim() == 4);
    CHECK(r.probs.size(0) == kBatch);
    CHECK(r.probs.size(2) == kTokens);
    CHECK(r.probs.size(3) == kTokens);
    CHECK(all_finite(r.probs));
    if (causal) {
      INFO("causal maps must be zero above the diagonal");
      CHECK(r.probs.triu(1).abs().max().item<double>() == 0.0);
    }
  }
}

// The output with capture (reference path) equals the output without (the default path).
void check_probe_equal(const std::function<TokenMixer()>& build_float64, torch::Dtype dtype, double rtol, double atol) {
  torch::manual_seed(7);
  TokenMixer m = build_float64();
  m->to(dtype);
  m->eval();
  torch::NoGradGuard no_grad;
  const auto x = tokens_input().to(dtype);
  for (bool causal : {false, true}) {
    if (causal && !m->capabilities().causal) continue;
    INFO("dtype " << dtype << ", causal " << causal);
    AttentionProbe probe;
    probe.enable();
    const auto plain = m->forward(x, mixer_context(causal));
    const auto captured = m->forward(x, mixer_context(causal, &probe));
    CHECK(close(plain, captured, rtol, atol));
  }
}

}  // namespace

TEST_CASE("conformance: the skip list names registered entries and known checks", "[conformance]") {
  const auto& index = RegistryIndex::instance();
  for (const auto& s : load_skips()) {
    INFO("tests/conformance_skip.txt:" << s.line << ": " << s.kind << " " << s.key << " " << s.check);
    const auto checks = known_checks().find(s.kind);
    REQUIRE(checks != known_checks().end());
    const RegistryBase* reg = index.find(s.kind);
    REQUIRE(reg != nullptr);
    CHECK(reg->contains(s.key));
    CHECK(checks->second.count(s.check) == 1);
    CHECK_FALSE(s.reason.empty());
  }
}

namespace {

// The mixer checks for `config` built through the mixer registry; skips are looked up under
// (kind, key): mixers as themselves, masks as attention/softmax with the mask composed in.
void check_mixer_conformance(const std::string& kind, const std::string& key, const ConfigNode& config,
                             const std::string& recorded_key) {
  const auto& reg = mixer_registry();
  const auto build = [&]() -> TokenMixer {
    TokenMixer m = reg.create(config, MixerArgs{kDim, kTokens});
    m->to(torch::kFloat64);
    return m;
  };
  const auto ctx = mixer_context();
  Subject<TokenMixer> s{build, [ctx](TokenMixer& m, const torch::Tensor& x) { return m->forward(x, ctx); },
                        tokens_input};
  const auto skip = [&](const char* check) { return skipped(kind, key, check); };
  if (!skip("shape")) check_shape(s, {kBatch, kTokens, kDim});
  if (!skip("grad")) check_grads(s);
  if (!skip("determinism")) check_determinism(s);
  if (!skip("batch")) check_batch_independence(s);
  torch::manual_seed(8);
  TokenMixer probe_subject = build();
  const bool causal = probe_subject->capabilities().causal;
  if (causal && !skip("causal")) {
    const auto causal_ctx = mixer_context(true);
    check_causal(Subject<TokenMixer>{
        build, [causal_ctx](TokenMixer& m, const torch::Tensor& x) { return m->forward(x, causal_ctx); },
        tokens_input});
  }
  if (!skip("probe")) {
    check_mixer_probe(recorded_key, probe_subject, false);
    if (causal) check_mixer_probe(recorded_key, probe_subject, true);
  }
  if (!skip("probe_rows")) {
    AttentionProbe probe;
    probe.enable();
    torch::NoGradGuard no_grad;
    probe_subject->eval();
    probe_subject->forward(tokens_input(), mixer_context(false, &probe));
    REQUIRE_FALSE(probe.records().empty());
    for (const auto& r : probe.records()) {
      const auto rows = r.probs.sum(-1);
      CHECK(close(rows, torch::ones_like(rows), 0.0, 1e-12));
      CHECK(r.probs.min().item<double>() >= 0.0);
    }
  }
  if (!skip("probe_equal")) {
    check_probe_equal(build, torch::kFloat64, 1e-10, 1e-12);
    check_probe_equal(build, torch::kFloat32, 1e-4, 1e-5);
  }
}

}  // namespace

TEST_CASE("conformance: token mixers", "[conformance]") {
  const auto& reg = mixer_registry();
  CHECK(reg.size() > 0);
  for (const EntryInfo* e : reg.list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("mixer " << key) { check_mixer_conformance("mixer", key, example_config(*e), key); }
  }
}

// Every mask inside the reference attention (attention/softmax, 2 heads), 2-D grid context.
TEST_CASE("conformance: attention masks", "[conformance]") {
  for (const EntryInfo* e : mask_registry().list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("mask " << key) {
      ConfigNode config = ConfigNode::map();
      config.set("type", ConfigNode::string("attention/softmax"));
      config.set("heads", ConfigNode::integer(2));
      config.set("mask", example_config(*e));
      check_mixer_conformance("mask", key, config, "attention/softmax");
    }
  }
}

TEST_CASE("conformance: channel mixers", "[conformance]") {
  const auto& reg = channel_registry();
  CHECK(reg.size() > 0);
  for (const EntryInfo* e : reg.list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("channel " << key) {
      const ConfigNode config = example_config(*e);
      const auto build = [&]() -> ChannelMixer {
        ChannelMixer m = reg.create(config, kDim);
        m->to(torch::kFloat64);
        return m;
      };
      Subject<ChannelMixer> s{build, [](ChannelMixer& m, const torch::Tensor& x) { return m->forward(x); },
                              tokens_input};
      const auto skip = [&](const char* check) { return skipped("channel", key, check); };
      if (!skip("shape")) {
        check_shape(s, {kBatch, kTokens, kDim});
        // x [..., C]: any leading shape.
        Subject<ChannelMixer> flat{s.build, s.forward, [] { return torch::randn({5, kDim}, torch::kFloat64); }};
        check_shape(flat, {5, kDim});
      }
      if (!skip("grad")) check_grads(s);
      if (!skip("determinism")) check_determinism(s);
      if (!skip("tokens")) {
        // A channel mixer never mixes tokens: changing token j changes only token j's output.
        torch::manual_seed(9);
        ChannelMixer m = build();
        m->eval();
        torch::NoGradGuard no_grad;
        const auto x = tokens_input();
        auto x2 = x.clone();
        const std::int64_t j = 5;
        x2.select(1, j).copy_(torch::randn_like(x2.select(1, j)));
        const auto y = m->forward(x), y2 = m->forward(x2);
        for (std::int64_t i = 0; i < kTokens; ++i) {
          INFO("token " << i << " (token " << j << " changed)");
          if (i == j)
            CHECK_FALSE(close(y.select(1, i), y2.select(1, i), 1e-6, 1e-9));
          else
            CHECK(close(y.select(1, i), y2.select(1, i), 1e-10, 1e-12));
        }
      }
    }
  }
}

TEST_CASE("conformance: blocks", "[conformance]") {
  const auto& reg = block_registry();
  CHECK(reg.size() > 0);
  // Every block is built around the reference mixer and channel mixer.
  ConfigNode mixer = ConfigNode::map();
  mixer.set("type", ConfigNode::string("attention/softmax"));
  mixer.set("heads", ConfigNode::integer(2));
  const ConfigNode channel = ConfigNode::string("mlp");
  for (const EntryInfo* e : reg.list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("block " << key) {
      const ConfigNode config = example_config(*e);
      const auto build = [&]() -> Block {
        Block b = reg.create(config, BlockArgs{kDim, kTokens, mixer, channel, 0.1});
        b->to(torch::kFloat64);
        return b;
      };
      const auto skip = [&](const char* check) { return skipped("block", key, check); };
      const auto subject = [&](bool causal) {
        const auto ctx = mixer_context(causal);
        return Subject<Block>{build, [ctx](Block& b, const torch::Tensor& x) { return b->forward(x, ctx); },
                              tokens_input};
      };
      const auto s = subject(false);
      if (!skip("shape")) check_shape(s, {kBatch, kTokens, kDim});
      if (!skip("grad")) check_grads(s);
      if (!skip("determinism")) check_determinism(s);
      if (!skip("batch")) check_batch_independence(s);
      if (!skip("causal")) check_causal(subject(true));
    }
  }
}

TEST_CASE("conformance: backbones", "[conformance]") {
  const auto& reg = backbone_registry();
  CHECK(reg.size() > 0);
  const BackboneArgs args{1, 28, 28};
  const auto images = [] { return torch::randn({2, 1, 28, 28}, torch::kFloat64); };
  for (const EntryInfo* e : reg.list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("backbone " << key) {
      const ConfigNode config = example_config(*e);
      const auto build = [&]() -> Backbone {
        Backbone b = reg.create(config, args);
        b->to(torch::kFloat64);
        return b;
      };
      Subject<Backbone> s{build, [](Backbone& b, const torch::Tensor& x) { return b->forward(x); }, images};
      const auto skip = [&](const char* check) { return skipped("backbone", key, check); };
      if (!skip("shape")) {
        torch::manual_seed(10);
        const std::int64_t d = build()->feature_dim();
        CHECK(d > 0);
        check_shape(s, {2, d});
      }
      if (!skip("grad")) check_grads(s);
      if (!skip("determinism")) check_determinism(s);
      if (!skip("batch")) check_batch_independence(s, 1);
      if (!skip("probe")) {
        for (torch::Dtype dtype : {torch::kFloat64, torch::kFloat32}) {
          INFO("dtype " << dtype);
          torch::manual_seed(11);
          Backbone b = build();
          b->to(dtype);
          b->eval();
          torch::NoGradGuard no_grad;
          const auto x = images().to(dtype);
          AttentionProbe probe;
          probe.enable();
          const auto plain = b->forward(x);
          const auto captured = b->forward(x, &probe);
          CHECK(
              close(plain, captured, dtype == torch::kFloat64 ? 1e-10 : 1e-4, dtype == torch::kFloat64 ? 1e-12 : 1e-5));
          REQUIRE_FALSE(probe.records().empty());
          CHECK(probe.records().front().layer == 0);
          for (std::size_t i = 1; i < probe.records().size(); ++i)
            CHECK(probe.records()[i].layer >= probe.records()[i - 1].layer);
          for (const auto& r : probe.records()) CHECK(r.probs.size(0) == 2);
        }
      }
    }
  }
}

TEST_CASE("conformance: heads", "[conformance]") {
  const auto& reg = head_registry();
  CHECK(reg.size() > 0);
  for (const EntryInfo* e : reg.list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("head " << key) {
      const ConfigNode config = example_config(*e);
      const auto build = [&]() -> Head {
        Head h = reg.create(config, kDim, 10);
        h->to(torch::kFloat64);
        return h;
      };
      Subject<Head> s{build, [](Head& h, const torch::Tensor& x) { return h->forward(x); },
                      [] {
                        return torch::randn({kBatch, kDim}, torch::kFloat64);
                      }};
      const auto skip = [&](const char* check) { return skipped("head", key, check); };
      if (!skip("shape")) check_shape(s, {kBatch, 10});
      if (!skip("grad")) check_grads(s);
      if (!skip("determinism")) check_determinism(s);
      if (!skip("batch")) check_batch_independence(s);
    }
  }
}
