// Registry-driven conformance of channel mixers, blocks, backbones and heads: each registered
// entry is built from its EntryInfo.example and checked (checks.h) for
//   channel   shape (any leading shape), grad, determinism; changing token j changes only token j
//   channel attention  on feature maps [B, C, H, W] (H != W): shape, grad, grad values,
//             determinism, batch
//   block     shape, grad, determinism, batch, causal unless it refuses causal use naming why
//             (around attention/softmax and mlp)
//   backbone  shape, grad, determinism, batch; capture records maps layer by layer and leaves the
//             features unchanged
//   head      shape ({B} + output_dims()), grad, determinism, batch; on every token [B, N, D]
//             too (grad, batch)
//   forecast/* model entries (whole-window forecasters): shape, grad, determinism, batch
#include <catch2/catch.hpp>

#include "blocks/channel_attention/channel_attention.h"
#include "blocks/interfaces.h"
#include "blocks/model.h"
#include "conformance/checks.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::conformance;

namespace {

// B samples of N = prefix + grid tokens of width C.
constexpr std::int64_t kBatch = 3, kDim = 32, kGridH = 4, kGridW = 4, kPrefix = 1;
constexpr std::int64_t kTokens = kPrefix + kGridH * kGridW;  // 17
constexpr std::int64_t kCausalToken = 8;

torch::Tensor tokens_input() { return torch::randn({kBatch, kTokens, kDim}, torch::kFloat64); }

MixerContext mixer_context(bool causal = false) {
  MixerContext ctx;
  ctx.grid_height = kGridH;
  ctx.grid_width = kGridW;
  ctx.prefix_tokens = kPrefix;
  ctx.causal = causal;
  ctx.layer = 3;
  return ctx;
}

// Whether the block throws for a causal context, with a message that says so (a refusal that
// names something else is a failure, reported by the rethrow).
bool refuses_causal(const std::function<Block()>& build, const MixerContext& causal) {
  Block b = build();
  b->eval();
  try {
    torch::NoGradGuard no_grad;
    b->forward(tokens_input(), causal);
    return false;
  } catch (const c10::Error& e) {
    if (std::string(e.what_without_backtrace()).find("causal") == std::string::npos) throw;
    return true;
  }
}

}  // namespace

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
      {
        check_shape(s, {kBatch, kTokens, kDim});
        // x [..., C]: any leading shape.
        Subject<ChannelMixer> flat{s.build, s.forward, [] { return torch::randn({5, kDim}, torch::kFloat64); }};
        check_shape(flat, {5, kDim});
      }
      check_grads(s);
      check_grad_values(s);
      check_determinism(s);
      {
        // A channel mixer never mixes tokens: changing token j changes only token j's output.
        const std::int64_t j = 5;
        const auto [y, y2] = outputs_with_perturbation(
            s, 9, [&](torch::Tensor& x) { x.select(1, j).copy_(torch::randn_like(x.select(1, j))); });
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

TEST_CASE("conformance: channel attention", "[conformance]") {
  const auto& reg = channel_attention_registry();
  CHECK(reg.size() > 0);
  const auto feature_map = [] { return torch::randn({kBatch, kDim, 5, 6}, torch::kFloat64); };
  for (const EntryInfo* e : reg.list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("channel attention " << key) {
      const ConfigNode config = example_config(*e);
      const auto build = [&]() -> ChannelAttention {
        ChannelAttention a = reg.create(config, ChannelAttentionArgs{kDim});
        a->to(torch::kFloat64);
        return a;
      };
      Subject<ChannelAttention> s{build, [](ChannelAttention& a, const torch::Tensor& x) { return a->forward(x); },
                                  feature_map};
      check_shape(s, {kBatch, kDim, 5, 6});
      check_grads(s);
      check_grad_values(s);
      check_determinism(s);
      check_batch_independence(s);
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
      const auto subject = [&](bool causal) {
        const auto ctx = mixer_context(causal);
        return Subject<Block>{build, [ctx](Block& b, const torch::Tensor& x) { return b->forward(x, ctx); },
                              tokens_input};
      };
      const auto s = subject(false);
      check_shape(s, {kBatch, kTokens, kDim});
      check_grads(s);
      check_grad_values(s);
      check_determinism(s);
      check_batch_independence(s);
      // A block with no causal form (a convolution on the grid) refuses causal use, naming why.
      if (refuses_causal(build, mixer_context(true)))
        SUCCEED("refuses causal use");
      else
        check_causal(subject(true), kCausalToken);
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
      {
        torch::manual_seed(10);
        const std::int64_t d = build()->feature_dim();
        CHECK(d > 0);
        check_shape(s, {2, d});
      }
      check_grads(s);
      check_grad_values(s);
      check_determinism(s);
      check_batch_independence(s, 1);
      {
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
  constexpr std::int64_t kOutputs = 10;
  for (const EntryInfo* e : reg.list()) {
    const std::string key = e->key;
    DYNAMIC_SECTION("head " << key) {
      const ConfigNode config = example_config(*e);
      const auto builder = [&](std::int64_t tokens) {
        return [&, tokens]() -> Head {
          Head h = reg.create(config, HeadArgs{kDim, kOutputs, tokens});
          h->to(torch::kFloat64);
          return h;
        };
      };
      const auto forward = [](Head& h, const torch::Tensor& x) { return h->forward(x); };
      // Pooled features [B, D] -> [B, output_dims...]; the outputs (classes, channels) come last.
      Subject<Head> s{builder(0), forward, [] { return torch::randn({kBatch, kDim}, torch::kFloat64); }};
      torch::manual_seed(10);
      std::vector<std::int64_t> shape = s.build()->output_dims();
      REQUIRE_FALSE(shape.empty());
      CHECK(shape.back() == kOutputs);
      shape.insert(shape.begin(), kBatch);
      check_shape(s, shape);
      check_grads(s);
      check_grad_values(s);
      check_determinism(s);
      check_batch_independence(s);
      // Every token [B, N, D] (the model's pool: none): finite, batch by batch.
      const Subject<Head> per_token{builder(kTokens), forward, tokens_input};
      check_grads(per_token);
      check_batch_independence(per_token);
    }
  }
}

// Whole-window forecasters (model entries forecast/*: series [B, L, C] -> forecasts [B, P, C]):
// shape, grad, grad values, determinism, batch (eval mode), sized by the data.
TEST_CASE("conformance: forecasters", "[conformance]") {
  constexpr std::int64_t kLength = 48, kHorizon = 12, kChannels = 3;
  ModelArgs args;
  args.inputs.channels = kChannels;
  args.inputs.length = kLength;
  args.inputs.horizon = kHorizon;
  args.outputs = kChannels;
  std::int64_t forecasters = 0;
  for (const EntryInfo* e : model_registry().list()) {
    const std::string key = e->key;
    if (key.rfind("forecast/", 0) != 0) continue;
    ++forecasters;
    DYNAMIC_SECTION("model " << key) {
      const ConfigNode config = example_config(*e);
      const auto build = [&]() -> Network {
        Network n = model_registry().create(config, args);
        n->to(torch::kFloat64);
        return n;
      };
      Subject<Network> s{build, [](Network& n, const torch::Tensor& x) { return n->forward(x); },
                         [] {
                           return torch::randn({kBatch, kLength, kChannels}, torch::kFloat64);
                         }};
      check_shape(s, {kBatch, kHorizon, kChannels});
      check_grads(s);
      check_grad_values(s, /*input_too=*/false);  // the input is data
      check_determinism(s);
      check_batch_independence(s);
    }
  }
  CHECK(forecasters >= 4);
}

}  // namespace BLOCKLAB_TEST_FILE
