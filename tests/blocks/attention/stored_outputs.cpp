// Stored outputs of every attention mixer and every mask (composed into attention/softmax),
// tag [variants]: fixed float64 weights and inputs, the outputs and gradients as the code of
// commit e728404 computed them (tests/fixtures/stored_outputs/). Refactors of the
// attention plumbing (projection, core, output, fused paths) must leave them unchanged:
// max |diff| <= 1e-12. Run with BLOCKLAB_UPDATE_STORED_OUTPUTS=1 to rewrite the files after an
// intended change (then say why in the commit).
//
// Each file (<case>.<layout>.pt, torch.load in Python) holds one float64 vector: the output y [2, N, 8], then d(sum y * r)/dx [2, N, 8], then
// the gradients of the parameters in name order (flattened). Weights are set by parameter name
// from an integer hash (not from the RNG), so they do not depend on construction order.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "blocks/interfaces.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

const std::string kDir = std::string(BLOCKLAB_TEST_DIR) + "/fixtures/stored_outputs/";
constexpr std::int64_t kDim = 8, kMaxTokens = 10;

// Exact rationals in [-scale, scale] from (seed, index): the same on every machine.
double fixed_value(std::uint64_t seed, std::int64_t i, double scale) {
  std::uint64_t h = seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(i) * 0xBF58476D1CE4E5B9ull;
  h ^= h >> 31;
  h *= 0x94D049BB133111EBull;
  h ^= h >> 29;
  return scale * (static_cast<double>(h % 2001) - 1000.0) / 1000.0;
}

std::uint64_t name_seed(const std::string& name) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

torch::Tensor fixed_tensor(std::uint64_t seed, at::IntArrayRef shape, double scale) {
  auto t = torch::empty(shape, torch::kFloat64);
  auto* p = t.data_ptr<double>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = fixed_value(seed, i, scale);
  return t;
}

void save(const torch::Tensor& t, const std::string& path) {
  const auto bytes = torch::pickle_save(t);
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

torch::Tensor load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return torch::pickle_load(bytes).toTensor();
}

struct Layout {
  std::string name;
  std::int64_t grid = 0, prefix = 0;  // a grid x grid patch grid after `prefix` tokens; 0: a sequence
  bool causal = false;
};

std::vector<Layout> layouts() {
  return {{"grid", 3, 1, false}, {"grid-causal", 3, 1, true}, {"seq", 0, 0, false}, {"seq-causal", 0, 0, true}};
}

struct Case {
  std::string name, yaml;
  bool sequences = true;  // runs on plain sequences (rel-pos-2d's 2-D table needs a grid)
};

std::vector<Case> cases() {
  const auto masked = [](const std::string& mask) { return "{type: attention/softmax, heads: 2, mask: " + mask + "}"; };
  return {
      {"softmax", "{type: attention/softmax, heads: 2}"},
      {"softmax-reference", "{type: attention/softmax, heads: 2, fused: false}"},
      {"sigmoid", "{type: attention/sigmoid, heads: 2}"},
      {"sigmoid-learned-qknorm", "{type: attention/sigmoid, heads: 2, bias_mode: learned, qk_norm: true}"},
      {"softplus", "{type: attention/softplus, heads: 2}"},
      {"softplus-reweight", "{type: attention/softplus, heads: 2, reweight: true, length_base: 0}"},
      {"selective", "{type: attention/selective, heads: 2, query_temperature: true, value_temperature: true}"},
      {"relative", "{type: attention/relative, heads: 2}"},
      {"relative-shared", "{type: attention/relative, heads: 2, shared_heads: true, max_relative_position: 4}"},
      {"urpe", "{type: attention/urpe, heads: 2, constant_init: false}"},
      {"urpe-no-bias", "{type: attention/urpe, heads: 2, rel_bias: false, max_relative_position: 3}"},
      {"gpsa", "{type: attention/gpsa, heads: 2}"},
      {"mask-alibi", masked("{type: mask/alibi}")},
      {"mask-alibi-1d", masked("{type: mask/alibi, space: 1d}")},
      {"mask-elm", masked("{type: mask/elm}")},
      {"mask-gmm", masked("{type: mask/gmm, kernels: 2}")},
      {"mask-rel-pos-2d", masked("{type: mask/rel-pos-2d}"), false},
      {"mask-rel-pos-1d", masked("{type: mask/rel-pos-2d, space: 1d}")},
      {"mask-retnet-decay", masked("{type: mask/retnet-decay}")},
      {"mask-retnet-decay-weights", masked("{type: mask/retnet-decay, apply: weights}")},
      {"mask-retnet-decay-rmt", masked("{type: mask/retnet-decay, schedule: rmt, bidirectional: true}")},
      {"mask-alibi-reference", "{type: attention/softmax, heads: 2, fused: false, mask: {type: mask/alibi}}"},
  };
}

// The case's output and gradients as one vector, from fixed weights and inputs.
torch::Tensor run_case(const Case& c, const Layout& l) {
  const TokenMixer m = mixer_registry().create(parse_yaml(c.yaml, "stored_outputs"), MixerArgs{kDim, kMaxTokens});
  m->to(torch::kFloat64);
  m->eval();
  std::map<std::string, torch::Tensor> params;  // sorted by name
  for (const auto& p : m->named_parameters()) params[p.key()] = p.value();
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : params) p.copy_(fixed_tensor(name_seed(name), p.sizes(), 0.5));
  }
  MixerContext ctx;
  ctx.grid_height = ctx.grid_width = l.grid;
  ctx.prefix_tokens = l.prefix;
  ctx.causal = l.causal;
  const std::int64_t n = l.grid ? l.prefix + l.grid * l.grid : 7;
  const auto x = fixed_tensor(11, {2, n, kDim}, 1.5).requires_grad_(true);
  const auto y = m->forward(x, ctx);
  (y * fixed_tensor(12, y.sizes(), 1.0)).sum().backward();
  std::vector<torch::Tensor> parts{y.detach().flatten(), x.grad().flatten()};
  for (auto& [name, p] : params)
    parts.push_back(p.grad().defined() ? p.grad().flatten() : torch::zeros_like(p).flatten());
  return torch::cat(parts);
}

}  // namespace

TEST_CASE("stored outputs: every attention mixer and mask computes what commit e728404 computed", "[variants]") {
  const bool update = std::getenv("BLOCKLAB_UPDATE_STORED_OUTPUTS") != nullptr;
  int compared = 0;
  for (const Case& c : cases())
    for (const Layout& l : layouts()) {
      if (!l.grid && !c.sequences) continue;
      const TokenMixer probe_caps = mixer_registry().create(parse_yaml(c.yaml, "caps"), MixerArgs{kDim, kMaxTokens});
      if (l.causal && !probe_caps->capabilities().causal) continue;
      const std::string file = kDir + c.name + "." + l.name + ".pt";
      INFO(file);
      const auto got = run_case(c, l);
      REQUIRE(torch::isfinite(got).all().item<bool>());
      if (update) {
        std::filesystem::create_directories(kDir);
        save(got.contiguous(), file);
      }
      const auto want = load(file);
      REQUIRE(want.scalar_type() == torch::kFloat64);
      REQUIRE(want.sizes() == got.sizes());
      const double err = (got - want).abs().max().item<double>();
      INFO("max |diff| " << err);
      CHECK(err <= 1e-12);
      ++compared;
    }
  CHECK(compared == 84);
}

}  // namespace BLOCKLAB_TEST_FILE
