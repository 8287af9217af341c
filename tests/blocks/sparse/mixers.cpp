// Property tests of the sparse (routed) attention mixers (tag [sparse]): each mixer equals the
// routed core's dense oracle over the groups it chose, from its own weights; the routing is the
// paper's procedure written independently here; the limits where the routing selects everything
// are full softmax attention. And every sparse/ mixer learns to classify images in a ViT.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>

#include "blocks/attention/parts/local_core.h"
#include "blocks/attention/parts/routed_core.h"
#include "blocks/family_trains.h"
#include "blocks/probe.h"
#include "blocks/sparse/biformer.h"
#include "blocks/sparse/combiner.h"
#include "blocks/sparse/routing.h"
#include "registry/config_error.h"
#include "registry/yaml_io.h"
#include "tests/blocks/attention/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using attention_tests::max_diff;

namespace {

constexpr std::int64_t kDim = 24;

TokenMixer make(const std::string& yaml) {
  auto m = mixer_registry().create(parse_yaml(yaml, "t.yaml"), MixerArgs{kDim, 128});
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

std::int64_t tokens_of(const MixerContext& ctx) { return ctx.prefix_tokens + ctx.grid_height * ctx.grid_width; }

// BiFormer's output rebuilt from its parts: projection, the oracle over its groups, LePE as a
// depth-wise conv2d of the values' image, output projection (grids that need no padding).
torch::Tensor biformer_by_oracle(BiLevelRoutingAttentionImpl& m, const torch::Tensor& x, const MixerContext& ctx) {
  const auto [q, k, v] = m.project(x);
  torch::Tensor o;
  for (const auto& g : m.groups(q, k, ctx)) {
    const auto part = routed_attend_dense(q, k, v, g, m.routing_scale(), RoutedMerge::union_softmax);
    o = o.defined() ? o + part : part;
  }
  if (m.lepe) {
    const auto grid = ctx.grid_height * ctx.grid_width, prefix = ctx.prefix_tokens;
    const auto image =
        v.narrow(2, prefix, grid).transpose(2, 3).reshape({x.size(0), -1, ctx.grid_height, ctx.grid_width});
    const auto conv =
        torch::conv2d(image, m.lepe->weight, m.lepe->bias, 1, m.options().lepe_kernel() / 2, 1, image.size(1));
    const auto local = conv.view({x.size(0), m.heads(), m.head_dim(), grid}).transpose(2, 3);
    o = torch::cat({o.narrow(2, 0, prefix), o.narrow(2, prefix, grid) + local}, 2);
  }
  return m.merge(o, x);
}

// The region (row-major over regions of rh x rw tokens) of grid token t on a W-wide grid.
std::int64_t region_of(std::int64_t t, std::int64_t width, std::int64_t rh, std::int64_t rw, std::int64_t per_row) {
  return (t / width) / rh * per_row + (t % width) / rw;
}

}  // namespace

TEST_CASE("sparse/biformer: equals the dense oracle over its routed regions, with LePE and prefix tokens", "[sparse]") {
  torch::manual_seed(21);
  for (const auto& [yaml, ctx] : std::vector<std::pair<std::string, MixerContext>>{
           {"{type: sparse/biformer, heads: 2, regions: 3, topk: 2}", attention_tests::context(6, 9, 0)},
           {"{type: sparse/biformer, heads: 3, regions: 2, topk: 1, lepe_kernel: 3}",
            attention_tests::context(4, 4, 2)},
           {"{type: sparse/biformer, heads: 2, regions: 4, topk: 3, lepe_kernel: 0, qk_scale: head}",
            attention_tests::context(8, 4, 1)},
       }) {
    INFO(yaml << " on a " << ctx.grid_height << "x" << ctx.grid_width << " grid, prefix " << ctx.prefix_tokens);
    auto m = make(yaml);
    auto& bra = dynamic_cast<BiLevelRoutingAttentionImpl&>(*m);
    const auto x = torch::randn({2, tokens_of(ctx), kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, ctx), biformer_by_oracle(bra, x, ctx)) <= 1e-10);
  }
}

TEST_CASE("sparse/biformer: routing is the top-k of the region means, shared by the heads, k regions per query",
          "[sparse]") {
  torch::manual_seed(22);
  auto m = make("{type: sparse/biformer, heads: 2, regions: 3, topk: 2}");
  auto& bra = dynamic_cast<BiLevelRoutingAttentionImpl&>(*m);
  const auto ctx = attention_tests::context(6, 6, 0);
  const auto [q, k, v] = bra.project(torch::randn({2, 36, kDim}, torch::kFloat64));
  const auto groups = bra.groups(q, k, ctx);
  REQUIRE(groups.size() == 1);
  const auto& g = groups[0];
  CHECK(g.key_index.size(1) == 1);  // one routing for every head
  // By hand: region r holds the tokens t with region_of(t) == r; its descriptor is the mean of
  // q (k) over them with the heads' channels side by side.
  const auto qf = q.transpose(1, 2).flatten(2), kf = k.transpose(1, 2).flatten(2);  // [B, N, C]
  std::vector<std::vector<std::int64_t>> members(9);
  for (std::int64_t t = 0; t < 36; ++t) members[region_of(t, 6, 2, 2, 3)].push_back(t);
  for (std::int64_t b = 0; b < 2; ++b) {
    std::vector<torch::Tensor> qr, kr;
    for (const auto& tokens : members) {
      const auto index = torch::tensor(tokens, torch::kLong);
      qr.push_back(qf[b].index_select(0, index).mean(0));
      kr.push_back(kf[b].index_select(0, index).mean(0));
    }
    const auto affinity = torch::matmul(torch::stack(qr), torch::stack(kr).t());  // [9, 9]
    for (std::int64_t r = 0; r < 9; ++r) {
      // The group of region r: its queries are the region's tokens...
      const auto queries = g.query_index[0][0][r];
      std::set<std::int64_t> got_queries;
      for (std::int64_t i = 0; i < queries.size(0); ++i) got_queries.insert(queries[i].item<std::int64_t>());
      CHECK(got_queries == std::set<std::int64_t>(members[r].begin(), members[r].end()));
      // ...and its keys are the tokens of exactly the two regions of highest affinity.
      const auto top = std::get<1>(affinity[r].topk(2));
      std::set<std::int64_t> want, got, regions;
      for (std::int64_t j = 0; j < 2; ++j)
        for (const auto t : members[top[j].item<std::int64_t>()]) want.insert(t);
      const auto keys = g.key_index[b][0][r];
      for (std::int64_t j = 0; j < keys.size(0); ++j) {
        got.insert(keys[j].item<std::int64_t>());
        regions.insert(region_of(keys[j].item<std::int64_t>(), 6, 2, 2, 3));
      }
      CHECK(got == want);
      CHECK(regions.size() == 2);
    }
  }
}

TEST_CASE("sparse/biformer: top-k over every region, or one region, is softmax attention (+ LePE)", "[sparse]") {
  torch::manual_seed(23);
  for (const std::string yaml :
       {"{type: sparse/biformer, heads: 2, regions: 2, topk: 4, lepe_kernel: 0, qk_scale: head}",
        "{type: sparse/biformer, heads: 2, regions: 1, topk: 1, lepe_kernel: 0, qk_scale: head}",
        "{type: sparse/biformer, heads: 2, regions: 9, topk: 99, lepe_kernel: 0, qk_scale: head}"}) {
    INFO(yaml);
    auto m = make(yaml);
    auto& bra = dynamic_cast<BiLevelRoutingAttentionImpl&>(*m);
    auto dense = attention_tests::softmax_twin(bra);
    for (const auto& ctx : {attention_tests::context(6, 4, 0), attention_tests::context(4, 4, 1)}) {
      const auto x = torch::randn({2, tokens_of(ctx), kDim}, torch::kFloat64);
      CHECK(max_diff(m->forward(x, ctx), dense->forward(x, ctx)) <= 1e-10);
    }
  }
}

TEST_CASE("sparse/biformer: a grid that is not a multiple of the regions is padded and cropped", "[sparse]") {
  torch::manual_seed(24);
  auto m = make("{type: sparse/biformer, heads: 2, regions: 3, topk: 2}");
  const auto ctx = attention_tests::context(5, 7, 1), padded_ctx = attention_tests::context(6, 9, 1);
  const auto x = torch::randn({2, 1 + 35, kDim}, torch::kFloat64);
  // By hand: zeros appended to each row and as a last row, the padded grid's output cropped.
  const auto grid = x.narrow(1, 1, 35).view({2, 5, 7, kDim});
  const auto padded =
      torch::zeros({2, 6, 9, kDim}, torch::kFloat64)
          .index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, 5), torch::indexing::Slice(0, 7)}, grid);
  const auto y = m->forward(torch::cat({x.narrow(1, 0, 1), padded.flatten(1, 2)}, 1), padded_ctx);
  const auto want =
      torch::cat({y.narrow(1, 0, 1),
                  y.narrow(1, 1, 54).view({2, 6, 9, kDim}).narrow(1, 0, 5).narrow(2, 0, 7).reshape({2, 35, kDim})},
                 1);
  CHECK(max_diff(m->forward(x, ctx), want) <= 1e-12);
}

namespace {

torch::Tensor unit_rows(const torch::Tensor& x) { return x / x.norm(2, -1, true); }

// The w tokens whose unit vectors x [N, d] lie closest to the unit centroid mu [d], by hand.
std::set<std::int64_t> closest(const torch::Tensor& x, const torch::Tensor& mu, std::int64_t w) {
  const auto sim = torch::matmul(unit_rows(x), mu);
  std::vector<std::int64_t> order(x.size(0));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = std::int64_t(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t a, std::int64_t b) { return sim[a].item<double>() > sim[b].item<double>(); });
  return {order.begin(), order.begin() + w};
}

std::set<std::int64_t> as_set(const torch::Tensor& index) {
  std::set<std::int64_t> out;
  for (std::int64_t i = 0; i < index.size(0); ++i) out.insert(index[i].item<std::int64_t>());
  return out;
}

}  // namespace

TEST_CASE("sparse/routing: equals the oracle over its clusters, each the w queries and keys closest to its centroid",
          "[sparse]") {
  torch::manual_seed(31);
  auto m = make("{type: sparse/routing, heads: 2, clusters: 3}");
  auto& routing = dynamic_cast<RoutingAttentionImpl&>(*m);
  for (const auto& [ctx, tokens] : std::vector<std::pair<MixerContext, std::int64_t>>{
           {attention_tests::context(), 13}, {attention_tests::context(4, 5, 1), 21}}) {
    const auto x = torch::randn({2, tokens, kDim}, torch::kFloat64);
    const auto [q, k, v] = routing.project(x);
    const auto prefix = ctx.has_grid() ? ctx.prefix_tokens : 0, body = tokens - prefix;
    const auto groups = routing.groups(q, k, prefix);
    REQUIRE(groups.size() == (prefix > 0 ? 2u : 1u));
    const auto& g = groups[0];
    const auto w = (body + 2) / 3;
    REQUIRE(g.query_index.sizes() == torch::IntArrayRef({2, 2, 3, w}));
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t h = 0; h < 2; ++h)
        for (std::int64_t c = 0; c < 3; ++c) {
          const auto mu = routing.centroids[h][c];
          auto want_keys = closest(k[b][h].narrow(0, prefix, body), mu, w),
               want_queries = closest(q[b][h].narrow(0, prefix, body), mu, w);
          std::set<std::int64_t> shifted_keys, shifted_queries;
          for (const auto t : want_keys) shifted_keys.insert(t + prefix);
          for (const auto t : want_queries) shifted_queries.insert(t + prefix);
          for (std::int64_t p = 0; p < prefix; ++p) shifted_keys.insert(p);  // every cluster sees the prefix
          CHECK(as_set(g.query_index[b][h][c]) == shifted_queries);
          CHECK(as_set(g.key_index[b][h][c]) == shifted_keys);
        }
    torch::Tensor oracle;
    for (const auto& part : groups) {
      const auto o = routed_attend_dense(q, k, v, part, routing.scale(), RoutedMerge::mean);
      oracle = oracle.defined() ? oracle + o : o;
    }
    CHECK(max_diff(m->forward(x, ctx), routing.merge(oracle, x)) <= 1e-10);
  }
}

TEST_CASE("sparse/routing: one cluster is softmax attention (with prefix tokens too)", "[sparse]") {
  torch::manual_seed(32);
  auto m = make("{type: sparse/routing, heads: 2, clusters: 1}");
  auto dense = attention_tests::softmax_twin(dynamic_cast<RoutingAttentionImpl&>(*m));
  for (const auto& [ctx, tokens] : std::vector<std::pair<MixerContext, std::int64_t>>{
           {attention_tests::context(), 10}, {attention_tests::context(3, 3, 2), 11}}) {
    const auto x = torch::randn({2, tokens, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, ctx), dense->forward(x, ctx)) <= 1e-10);
  }
}

TEST_CASE("sparse/routing: the centroids' moving average and the commitment loss, by hand", "[sparse]") {
  torch::manual_seed(33);
  const auto ctx = attention_tests::context();
  const auto x = torch::randn({2, 9, kDim}, torch::kFloat64);
  {  // decay 1: the centroids never move
    auto m = make("{type: sparse/routing, heads: 2, clusters: 3, decay: 1.0, kmeans_init: 0}");
    auto& routing = dynamic_cast<RoutingAttentionImpl&>(*m);
    const auto before = routing.centroids.clone();
    m->train();
    m->forward(x, ctx);
    CHECK(torch::equal(routing.centroids, before));
  }
  auto m = make("{type: sparse/routing, heads: 2, clusters: 3, decay: 0.9, commitment: 0.5, kmeans_init: 0}");
  auto& routing = dynamic_cast<RoutingAttentionImpl&>(*m);
  const auto before = routing.centroids.clone();
  const auto [q, k, v] = routing.project(x);
  const auto features = unit_rows(torch::cat({q, k}, 2)).detach();  // [B, h, 2N, d]
  auto want = before.clone();
  double loss = 0.0;
  for (std::int64_t h = 0; h < 2; ++h) {
    const auto xs = features.select(1, h).reshape({-1, features.size(3)});  // [B 2N, d]
    const auto assign = torch::matmul(xs, before[h].t()).argmax(-1);
    for (std::int64_t c = 0; c < 3; ++c) {
      const auto members = (assign == c);
      if (members.any().item<bool>()) want[h][c] = 0.9 * before[h][c] + 0.1 * unit_rows(xs.index({members}).sum(0));
    }
    loss += (xs - before[h].index_select(0, assign)).pow(2).sum().item<double>();
  }
  m->train();
  m->forward(x, ctx);
  CHECK(max_diff(routing.centroids, want) <= 1e-12);
  CHECK(std::abs(routing.take_auxiliary_loss().item<double>() - 0.5 * loss / features.numel()) <= 1e-12);
  CHECK(!routing.take_auxiliary_loss().defined());  // taken once
}

TEST_CASE("sparse/routing: k-means on the first training batch; spherical k-means finds separated clusters",
          "[sparse]") {
  // Three tight bundles around orthogonal directions: from one member of each, the centroids are
  // the bundles' normalised means.
  torch::manual_seed(34);
  const auto axes = torch::eye(3, torch::kFloat64).narrow(1, 0, 3);
  const auto points = unit_rows((axes.repeat_interleave(5, 0) + 0.05 * torch::randn({15, 3}, torch::kFloat64)));
  const auto start = points.index_select(0, torch::tensor({0, 5, 10}, torch::kLong)).unsqueeze(0);
  const auto fitted = spherical_kmeans(points.unsqueeze(0), start, 4);
  for (std::int64_t c = 0; c < 3; ++c)
    CHECK(max_diff(fitted[0][c], unit_rows(points.narrow(0, 5 * c, 5).sum(0))) <= 1e-12);
  // The block: the first training forward fits its centroids (then decay 1 leaves them).
  auto m = make("{type: sparse/routing, heads: 2, clusters: 3, decay: 1.0, kmeans_init: 3}");
  auto& routing = dynamic_cast<RoutingAttentionImpl&>(*m);
  CHECK(!routing.initialised.item<bool>());
  const auto x = torch::randn({2, 9, kDim}, torch::kFloat64);
  const auto [q, k, v] = routing.project(x);
  const auto features = unit_rows(torch::cat({q, k}, 2)).detach().transpose(0, 1).flatten(1, 2);  // [h, B 2N, d]
  const auto spaced = torch::tensor({0, 12, 24}, torch::kLong);  // members i n / k_c of n = 36
  const auto want = spherical_kmeans(features, features.index_select(1, spaced), 3);
  m->train();
  m->forward(x, attention_tests::context());
  CHECK(routing.initialised.item<bool>());
  CHECK(max_diff(routing.centroids, want) <= 1e-12);
}

namespace {

// Combiner-Fixed written directly from the paper, query by query (max summaries): o_i attends
// to its segment's keys (causal: j <= i) and to the summaries of the other segments (causal:
// earlier ones) in one softmax. q, k, v [h, n, d] of one sample -> [h, n, d].
torch::Tensor combiner_by_hand(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, std::int64_t s,
                               bool causal, double scale) {
  const auto n = q.size(1), segments = (n + s - 1) / s;
  std::vector<torch::Tensor> summary_k, summary_v;
  for (std::int64_t r = 0; r < segments; ++r) {
    const auto len = std::min(s, n - r * s);
    const auto ks = k.narrow(1, r * s, len), vs = v.narrow(1, r * s, len);
    const auto q_hat = q.narrow(1, r * s, len).amax(1);  // [h, d]
    summary_k.push_back(ks.amax(1));
    const auto w = torch::softmax(torch::matmul(ks, q_hat.unsqueeze(-1)).squeeze(-1) * scale, -1);  // [h, len]
    summary_v.push_back(torch::matmul(w.unsqueeze(1), vs).squeeze(1));
  }
  auto out = torch::zeros_like(q);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto r = i / s;
    std::vector<torch::Tensor> keys, values;
    for (std::int64_t j = r * s; j < std::min(n, (r + 1) * s); ++j)
      if (!causal || j <= i) keys.push_back(k.select(1, j)), values.push_back(v.select(1, j));
    for (std::int64_t other = 0; other < segments; ++other)
      if (causal ? other < r : other != r) keys.push_back(summary_k[other]), values.push_back(summary_v[other]);
    const auto kk = torch::stack(keys, 1), vv = torch::stack(values, 1);  // [h, m, d]
    const auto w = torch::softmax(torch::matmul(kk, q.select(1, i).unsqueeze(-1)).squeeze(-1) * scale, -1);
    out.select(1, i).copy_(torch::matmul(w.unsqueeze(1), vv).squeeze(1));
  }
  return out;
}

}  // namespace

TEST_CASE("sparse/combiner: the paper's formula by hand and the local core's oracle, causal or not", "[sparse]") {
  torch::manual_seed(41);
  for (const bool causal : {false, true})
    for (const auto& [segment, tokens] : std::vector<std::pair<int, std::int64_t>>{{4, 16}, {4, 18}, {5, 7}, {3, 3}}) {
      INFO("segment " << segment << ", " << tokens << " tokens, causal " << causal);
      auto m = make("{type: sparse/combiner, heads: 2, segment: " + std::to_string(segment) + "}");
      auto& combiner = dynamic_cast<CombinerAttentionImpl&>(*m);
      const auto ctx = attention_tests::context(0, 0, 0, causal);
      const auto x = torch::randn({2, tokens, kDim}, torch::kFloat64);
      const auto [q, k, v] = combiner.project(x);
      std::vector<torch::Tensor> by_hand;
      for (std::int64_t b = 0; b < 2; ++b)
        by_hand.push_back(combiner_by_hand(q[b], k[b], v[b], segment, causal, combiner.scale()));
      const auto y = m->forward(x, ctx);
      CHECK(max_diff(y, combiner.merge(torch::stack(by_hand), x)) <= 1e-10);
      const auto [keys, values] = combiner.pattern_keys_values(ctx, q, k, v);
      CHECK(max_diff(y, combiner.merge(
                            local_attend_dense(q, keys, values, combiner.pattern(ctx, tokens), {}, combiner.scale()),
                            x)) <= 1e-10);
    }
  // A grid with prefix tokens (global) against the oracle.
  auto m = make("{type: sparse/combiner, heads: 2, segment: 5, summary: mean}");
  auto& combiner = dynamic_cast<CombinerAttentionImpl&>(*m);
  const auto ctx = attention_tests::context(4, 6, 2);
  const auto x = torch::randn({2, 26, kDim}, torch::kFloat64);
  const auto [q, k, v] = combiner.project(x);
  const auto [keys, values] = combiner.pattern_keys_values(ctx, q, k, v);
  CHECK(max_diff(m->forward(x, ctx),
                 combiner.merge(local_attend_dense(q, keys, values, combiner.pattern(ctx, 26), {}, combiner.scale()),
                                x)) <= 1e-10);
}

TEST_CASE("sparse/combiner: one segment is softmax attention; the probe's implied map gives the output", "[sparse]") {
  torch::manual_seed(42);
  auto m = make("{type: sparse/combiner, heads: 2, segment: 64}");
  auto dense = attention_tests::softmax_twin(dynamic_cast<CombinerAttentionImpl&>(*m));
  for (const bool causal : {false, true}) {
    const auto ctx = attention_tests::context(0, 0, 0, causal);
    const auto x = torch::randn({2, 12, kDim}, torch::kFloat64);
    CHECK(max_diff(m->forward(x, ctx), dense->forward(x, ctx)) <= 1e-10);
  }
  // Segments of 3 over 10 tokens: the recorded [B, h, N, N] map, applied to v, is the attention
  // output (every summary's weight spread over its segment), and its rows sum to 1.
  auto c = make("{type: sparse/combiner, heads: 2, segment: 3}");
  auto& combiner = dynamic_cast<CombinerAttentionImpl&>(*c);
  AttentionProbe probe;
  probe.enable();
  auto ctx = attention_tests::context(0, 0, 0, true);
  ctx.probe = &probe;
  const auto x = torch::randn({2, 10, kDim}, torch::kFloat64);
  const auto y = c->forward(x, ctx);
  REQUIRE(probe.records().size() == 1);
  const auto map = probe.records()[0].probs;
  const auto [q, k, v] = combiner.project(x);
  CHECK(max_diff(combiner.merge(torch::matmul(map, v), x), y) <= 1e-10);
  CHECK(max_diff(map.sum(-1), torch::ones({2, 2, 10}, torch::kFloat64)) <= 1e-12);
  CHECK(map.triu(1).abs().max().item<double>() == 0.0);  // causal
}

TEST_CASE("sparse mixers: options that cannot work fail at build time, at the option", "[sparse]") {
  try {
    make("{type: sparse/biformer, heads: 2, lepe_kernel: 4}");
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Contains("lepe_kernel must be odd"));
  }
}

TEST_CASE("wave 4: every sparse mixer learns to classify images in a ViT", "[sparse]") {
  const auto keys = family_trains::mixers_with_prefixes({"sparse/"});
  REQUIRE(!keys.empty());
  for (const std::string& key : keys) DYNAMIC_SECTION("mixer " << key) {
      family_trains::check_learns_vit(key);
    }
}

}  // namespace BLOCKLAB_TEST_FILE
