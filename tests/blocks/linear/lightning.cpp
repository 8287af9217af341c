// linear/lightning and the TransNormerLLM parts (tag [linear]): the tnl mixer from its weights,
// LRPE's relative positions, the decay schedules and their plumbing through the stack,
// SRMSNorm, the SGLU channel mixer and the parameter counts of catalog_002 B-03/B-04.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/backbones/prenorm_block.h"
#include "blocks/channel/glu.h"
#include "blocks/common/srms_norm.h"
#include "blocks/linear/lightning.h"
#include "blocks/masks/alibi.h"
#include "blocks/model.h"
#include "blocks/stacks/plain.h"
#include "experiments/model_builder.h"
#include "registry/yaml_io.h"
#include "tests/blocks/linear/helpers.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::linear_tests;

namespace {

MixerContext causal() {
  MixerContext ctx;
  ctx.causal = true;
  return ctx;
}

}  // namespace

TEST_CASE("linear/lightning tnl: (u ⊙ SRMSNorm(decayed silu linear attention)) W_o from its weights", "[linear]") {
  torch::manual_seed(1);
  const std::int64_t c = 16, h = 2, n = 11;
  Lightning m(c, LightningOptions().heads(h).chunk(4), /*layer=*/1, /*layers=*/3);
  m->to(torch::kFloat64);
  const auto x = torch::randn({2, n, c}, torch::kFloat64);
  const auto y = torch::linear(x, m->qkv->weight);
  const auto heads = [&](const torch::Tensor& t) { return t.view({2, n, h, c / h}).transpose(1, 2); };
  const auto q = torch::silu(heads(y.narrow(-1, 0, c))), k = torch::silu(heads(y.narrow(-1, c, c)));
  const auto v = heads(y.narrow(-1, 2 * c, c));
  const auto slopes = alibi_slopes(h);
  auto o = torch::zeros_like(v);
  for (std::int64_t head = 0; head < h; ++head) {
    const double s = slopes[head] * (1.0 - 1.0 / 2.0 + 1e-5);  // layer 1 of 3
    auto d = torch::zeros({n, n}, torch::kFloat64);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j) d[i][j] = std::exp(-s * static_cast<double>(i - j));
    o.select(1, head).copy_(
        (q.select(1, head).matmul(k.select(1, head).transpose(-1, -2)) * d).matmul(v.select(1, head)));
  }
  const auto merged = o.transpose(1, 2).reshape({2, n, c});
  const auto normed = merged / (merged.pow(2).mean(-1, true) + 1e-6).sqrt();
  const auto expected = torch::linear(torch::linear(x, m->u->weight) * normed, m->out->weight);
  CHECK(max_diff(m->forward(x, causal()), expected) <= 1e-10);
  MixerContext not_causal;
  CHECK(max_diff(m->forward(x, not_causal), expected) <= 1e-10);  // causal only
}

TEST_CASE("linear/lightning: LRPE and the decay depend on positions only through n - m", "[linear]") {
  torch::manual_seed(2);
  for (const std::string variant : {"tnl", "tnl2"}) {
    INFO("variant " << variant);
    Lightning m(16, LightningOptions().heads(2).lrpe(true).variant(variant));
    m->to(torch::kFloat64);
    const auto x = torch::randn({2, 9, 16}, torch::kFloat64);
    auto shifted = causal();
    shifted.positions = torch::arange(9, torch::kLong) + 37;
    const auto a = m->forward(x, causal()), b = m->forward(x, shifted);
    CHECK(max_diff(a, b) <= 1e-10);
    // ... while an absolute change of positions (not a shift) does change the output.
    auto scrambled = causal();
    scrambled.positions = torch::arange(9, torch::kLong) * 3;
    CHECK(max_diff(a, m->forward(x, scrambled)) > 1e-4);
  }
}

TEST_CASE("linear/lightning: decay schedules, per layer through the stack", "[linear]") {
  const auto slopes = alibi_slopes(4);  // 2^-2, 2^-4, 2^-6, 2^-8
  CHECK(slopes[0] == 0.25);
  const auto first = lightning_decay_rates(4, 0, 3, "alibi_layerwise");
  const auto last = lightning_decay_rates(4, 2, 3, "alibi_layerwise");
  for (int i = 0; i < 4; ++i) {
    CHECK(first[i] == Approx(slopes[i] * (1 + 1e-5)).epsilon(1e-14));
    CHECK(last[i] == Approx(slopes[i] * 1e-5).epsilon(1e-9));  // the last layer barely decays
  }
  CHECK(lightning_decay_rates(4, 1, 4, "paper_text")[3] == Approx(8.0 * 0.75));
  CHECK(lightning_decay_rates(4, 0, 1, "none").empty());
  // The stack hands each block its index: layer l of a 3-layer stack decays by its own rates.
  DatasetInfo info;
  info.task = "language";
  info.vocabulary = 5;
  info.length = 8;
  const Model model = composed_model(build_model(
      parse_yaml("{type: model/composed, dim: 16, pool: none, stem: {type: stem/tokens}, stack: {type: stack/plain, "
                 "depth: 3}, mixer: {type: linear/lightning, heads: 4}}",
                 "m"),
      parse_yaml("linear", "h"), info));
  for (std::int64_t l = 0; l < 3; ++l) {
    const auto decay = model->named_buffers()["stack.blocks." + std::to_string(l) + ".mixer.log_decay"];
    REQUIRE(decay.defined());
    CHECK(-decay[0].item<double>() == Approx(lightning_decay_rates(4, l, 3, "alibi_layerwise")[0]));
  }
}

TEST_CASE("TransNormerLLM parts: SRMSNorm gives RMS 1; SGLU is bilinear; the srms prenorm block", "[linear]") {
  torch::manual_seed(3);
  const auto x = torch::randn({3, 5, 16}, torch::kFloat64) * 4;
  const auto rms = srms_norm(x).pow(2).mean(-1).sqrt();
  CHECK(max_diff(rms, torch::ones_like(rms)) <= 1e-6);
  CHECK(srms_norm(x.to(torch::kBFloat16)).scalar_type() == torch::kBFloat16);
  Glu sglu(16, GluOptions().ratio(2).activation("none").bias(false));
  sglu->to(torch::kFloat64);
  const auto w = sglu->fc1->weight;  // [W1; W3]
  const auto expected =
      torch::linear(torch::linear(x, w.narrow(0, 0, 32)) * torch::linear(x, w.narrow(0, 32, 32)), sglu->fc2->weight);
  CHECK(max_diff(sglu->forward(x), expected) <= 1e-12);
  CHECK(count(*sglu) == 3 * 16 * 32);  // 3 D F, no biases
  const auto block =
      block_registry().create(parse_yaml("{type: prenorm, norm: srms}", "b"),
                              BlockArgs{16, 8, parse_yaml("{type: linear/lightning, heads: 2}", "m"),
                                        parse_yaml("{type: glu, activation: none, bias: false, ratio: 2}", "c"), 0.0});
  auto* prenorm = dynamic_cast<PrenormBlockImpl*>(block.get());
  REQUIRE(prenorm);
  CHECK_FALSE(prenorm->norm1);  // SRMSNorm has no parameters
  block->to(torch::kFloat64);
  const auto h = x + prenorm->mixer->forward(srms_norm(x), causal());
  CHECK(max_diff(block->forward(x, causal()), h + prenorm->channel->forward(srms_norm(h))) <= 1e-12);
}

TEST_CASE("linear/lightning: parameter counts (catalog_002 B-03: 4DE + ED (+E with LRPE); B-04: 4D^2 + 2Dd)",
          "[linear]") {
  const std::int64_t d = 32;
  Lightning tnl(d, LightningOptions().heads(4));
  CHECK(count(*tnl) == 5 * d * d);
  Lightning with_lrpe(d, LightningOptions().heads(4).lrpe(true));
  CHECK(count(*with_lrpe) == 5 * d * d + d);
  Lightning tnl2(d, LightningOptions().heads(4).variant("tnl2"));
  CHECK(count(*tnl2) == 4 * d * d + 2 * d * (d / 4) + 2 * d);  // + the LayerNorm's weight and bias
}

}  // namespace BLOCKLAB_TEST_FILE
