// The model interface (blocks/model.h): the vit preset equals the wave-1 ViT bit for bit, per-layer
// overrides (ranges, every k-th, named, from config groups), their errors, the token stem with a
// tied language-model head.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include "blocks/backbones/prenorm_block.h"
#include "blocks/common/multi_head.h"
#include "blocks/heads/linear.h"
#include "blocks/model.h"
#include "blocks/stacks/plain.h"
#include "blocks/stacks/stages.h"
#include "blocks/stems/series.h"
#include "blocks/stems/tokens.h"
#include "experiments/experiment.h"
#include "experiments/model_builder.h"
#include "golden.h"
#include "process_support.h"
#include "registry/compose.h"
#include "registry/override.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

ConfigNode yaml(const std::string& text) { return parse_yaml(text, "test.yaml"); }

DatasetInfo fmnist_shape() {
  DatasetInfo info;
  info.channels = 1, info.height = 28, info.width = 28, info.num_classes = 10;
  return info;
}

Model build(const std::string& model, const std::string& head = "linear") {
  torch::manual_seed(5);
  return composed_model(build_model(yaml(model), yaml(head), fmnist_shape()));
}

// The mixer of layer i of a model built with a plain stack.
MultiHeadAttentionImpl& attention_of(ModelImpl& m, std::size_t i) {
  auto& stack = dynamic_cast<PlainStackImpl&>(m.stack());
  auto* block = dynamic_cast<PrenormBlockImpl*>(stack.blocks.at(i).get());
  REQUIRE(block);
  auto* attention = dynamic_cast<MultiHeadAttentionImpl*>(block->mixer.get());
  REQUIRE(attention);
  return *attention;
}

const std::string kVit =
    "{type: vit, dim: 16, depth: 4, patch: 7, pool: mean, drop_path: 0.0, "
    "mixer: {type: attention/softmax, heads: 4}, channel: {type: mlp, ratio: 2}";

}  // namespace

TEST_CASE("the vit preset equals the wave-1 ViT backbone + head: same parameters in the same order, same outputs",
          "[model]") {
  for (const std::string pool : {"cls", "mean"}) {
    INFO("pool " << pool);
    const std::string cfg = "{type: vit, dim: 16, depth: 2, patch: 7, pool: " + pool + "}";
    torch::manual_seed(5);
    const Backbone backbone = backbone_registry().create(yaml(cfg), BackboneArgs{1, 28, 28});
    const Head head = head_registry().create(yaml("linear"), HeadArgs{backbone->feature_dim(), 10});
    const Model model = build(cfg);
    std::vector<torch::Tensor> old_params;
    for (const auto& p : backbone->parameters()) old_params.push_back(p);
    for (const auto& p : head->parameters()) old_params.push_back(p);
    const auto new_params = model->parameters();
    REQUIRE(new_params.size() == old_params.size());
    for (std::size_t i = 0; i < new_params.size(); ++i) CHECK(torch::equal(new_params[i], old_params[i]));
    backbone->eval(), head->eval(), model->eval();
    const torch::Tensor images = torch::randn({3, 1, 28, 28});
    CHECK(torch::equal(model->forward(images), head->forward(backbone->forward(images))));
  }
}

TEST_CASE("model/composed from explicit parts equals the vit preset", "[model]") {
  const Model preset = build(kVit + "}");
  const Model composed = build(
      "{type: model/composed, dim: 16, pool: mean, stem: {type: stem/patch, patch: 7, class_token: false}, "
      "stack: {type: stack/plain, depth: 4, drop_path: 0.0}, mixer: {type: attention/softmax, heads: 4}, "
      "channel: {type: mlp, ratio: 2}}");
  const auto a = preset->named_parameters(), b = composed->named_parameters();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].key() == b[i].key());
    CHECK(torch::equal(a[i].value(), b[i].value()));
  }
}

TEST_CASE("per-layer overrides: ranges, lists, every k-th layer, options without type change the default", "[model]") {
  const Model m = build(kVit +
                        ", layers: {late: {at: 2-3, mixer: {type: attention/sigmoid, heads: 2}}, "
                        "odd: {every: 2, offset: 1, mixer: {heads: 1}}, first: {at: \"0\", mixer: {heads: 8}}}}");
  CHECK(attention_of(*m, 0).heads() == 8);  // first: heads of the default softmax changed
  CHECK(attention_of(*m, 1).heads() == 1);  // odd
  CHECK(attention_of(*m, 2).heads() == 2);  // late: replaced by sigmoid with 2 heads
  CHECK(attention_of(*m, 3).heads() == 1);  // late, then odd changes its heads
  CHECK(m->stack().layer_name(0) == "model.blocks.0 (attention/softmax)");
  CHECK(m->stack().layer_name(2) == "model.blocks.2 (attention/sigmoid)");
  CHECK(m->stack().layer_name(3) == "model.blocks.3 (attention/sigmoid)");

  // The probe records each layer with its own id and head count.
  AttentionProbe probe;
  probe.enable();
  m->eval();
  torch::NoGradGuard no_grad;
  m->forward(torch::randn({2, 1, 28, 28}), &probe);
  REQUIRE(probe.records().size() == 4);
  const std::int64_t heads[] = {8, 1, 2, 1};
  for (int l = 0; l < 4; ++l) {
    CHECK(probe.records()[static_cast<std::size_t>(l)].layer == l);
    CHECK(probe.records()[static_cast<std::size_t>(l)].probs.size(1) == heads[l]);
  }
  CHECK(probe.records()[2].mixer == "attention/sigmoid");
}

TEST_CASE("a layer override with a type replaces the mixer: nothing of the default is inherited", "[model]") {
  // attention/gpsa has no `fused`: inheriting the default's would be an unknown-key error.
  const Model m = build("{type: vit, dim: 16, depth: 2, patch: 7, mixer: {type: attention/softmax, heads: 2, "
                        "fused: false}, layers: {top: {at: 1, mixer: {type: attention/gpsa}}}}");
  CHECK(attention_of(*m, 1).heads() == 4);  // gpsa's own default, not the softmax's 2
  CHECK(attention_of(*m, 0).heads() == 2);
}

TEST_CASE("layer-override errors are ConfigErrors naming the override", "[model]") {
  using testing::error_text;
  const auto fails = [&](const std::string& layers) {
    return error_text([&] { build(kVit + ", layers: " + layers + "}"); });
  };
  std::string e = fails("{late: {at: 2-5, mixer: {heads: 2}}}");
  CHECK(e.find("model.layers.late.at") != std::string::npos);
  CHECK(e.find("layer 5 is beyond the stack's depth 4 (layers 0..3)") != std::string::npos);
  CHECK(e.find("test.yaml:1") != std::string::npos);
  e = fails("{late: {at: 2-3, mixr: {heads: 2}}}");
  CHECK(e.find("model.layers.late.mixr: unknown key 'mixr'") != std::string::npos);
  CHECK(e.find("did you mean 'mixer'?") != std::string::npos);
  e = fails("{late: {mixer: {heads: 2}}}");
  CHECK(e.find("an override needs `at` (layers), `every` (every k-th layer) or `stage`") != std::string::npos);
  e = fails("{late: {at: two, mixer: {heads: 2}}}");
  CHECK(e.find("'two' is not a layer or a range of layers") != std::string::npos);
  // A rule between values in one layer: heads must divide the width, located at the override.
  e = fails("{late: {at: 2-3, mixer: {heads: 3}}}");
  CHECK(e.find("model.layers.late.mixer.heads: layer 2: heads must divide the embedding width") != std::string::npos);
  // A mixer option the override's mixer does not have.
  e = fails("{late: {at: 3, mixer: {type: attention/gpsa, fused: false}}}");
  CHECK(e.find("model.layers.late.mixer.fused: layer 3: unknown key 'fused'") != std::string::npos);
}

TEST_CASE("switching model/mixer never inherits the options of the mixer it replaces", "[model]") {
  // A copy of experiments/conf with a mixer option that has no `heads`.
  testing::TempDir tmp;
  const fs::path conf = tmp.path / "conf";
  fs::copy(fs::path(BLOCKLAB_TEST_DIR) / "../experiments/conf", conf, fs::copy_options::recursive);
  std::ofstream(conf / "model/mixer/no_heads.yaml") << "type: mixer/no-heads\nwidth: 3\n";
  const auto mixer_of = [&](const std::string& experiment, std::vector<std::string> overrides, const std::string& at) {
    ComposeRequest req;
    req.config_dir = conf.string();
    req.config_name = experiment;
    req.overrides = parse_overrides(overrides);
    const ConfigNode config = compose(req).config;
    const ConfigNode* mixer = config.find_path(at);
    REQUIRE(mixer);
    return *mixer;
  };
  ConfigNode m = mixer_of("vit_fmnist", {}, "model.mixer");
  CHECK(m.at("type").text() == "attention/softmax");
  CHECK(m.at("heads").as_int() == 4);
  m = mixer_of("vit_fmnist", {"model/mixer=no_heads"}, "model.mixer");
  CHECK(m.at("type").text() == "mixer/no-heads");
  CHECK_FALSE(m.has("heads"));
  m = mixer_of("fmnist_masks", {"model/mixer=no_heads"}, "model.mixer");
  CHECK_FALSE(m.has("heads"));
  // A per-layer mixer filled from the group: the hybrid's late layers.
  m = mixer_of("vit_fmnist_hybrid", {}, "model.layers.late.mixer");
  CHECK(m.at("type").text() == "attention/sigmoid");
  CHECK(m.at("heads").as_int() == 2);
  m = mixer_of("vit_fmnist_hybrid", {"model/mixer@model.layers.late.mixer=no_heads"}, "model.layers.late.mixer");
  CHECK(m.at("type").text() == "mixer/no-heads");
  CHECK(m.at("heads").as_int() == 2);  // the experiment's own line sets it: that one is explicit
  CHECK(mixer_of("vit_fmnist_hybrid", {}, "model.mixer").at("type").text() == "attention/softmax");
}

TEST_CASE("stem/tokens short_conv: each position mixes itself and the k-1 tokens before it", "[model]") {
  torch::manual_seed(2);
  StemArgs args;
  args.dim = 8;
  args.inputs.vocabulary = 11;
  args.inputs.length = 12;
  TokenStem plain(args), conv(args, TokenStemOptions().short_conv(3));
  plain->init_weights();
  conv->init_weights();
  CHECK(plain->can_step());
  CHECK_FALSE(conv->can_step());  // the step would need the previous tokens: full forward instead
  torch::NoGradGuard no_grad;
  conv->embed->weight.copy_(plain->embed->weight);
  conv->positions.pos_embed.copy_(plain->positions.pos_embed);
  const torch::Tensor ids = torch::randint(0, 11, {2, 10}, torch::kLong);
  const torch::Tensor z = conv->forward(ids).x;
  // Zero kernel and bias: exactly the plain stem.
  const torch::Tensor kernel = conv->conv->weight.clone(), bias = conv->conv->bias.clone();
  conv->conv->weight.zero_();
  conv->conv->bias.zero_();
  CHECK(torch::equal(conv->forward(ids).x, plain->forward(ids).x));
  conv->conv->weight.copy_(kernel);
  conv->conv->bias.copy_(bias);
  // Changing token 4 moves positions 4, 5, 6 (k = 3) and nothing else.
  torch::Tensor changed = ids.clone();
  changed.select(1, 4).copy_((ids.select(1, 4) + 1).remainder(11));
  const torch::Tensor moved = (conv->forward(changed).x - z).abs().amax({0, 2});
  for (std::int64_t n = 0; n < 10; ++n) {
    INFO("position " << n);
    CHECK((moved[n].item<float>() > 0) == (n >= 4 && n <= 6));
  }
  // Position n = z0[n] + b + sum_j w_j z0[n-j], checked by hand at n = 5 for channel 0.
  const torch::Tensor z0 = plain->forward(ids).x;
  const torch::Tensor w = kernel[0][0];  // [k]: w[k-1] multiplies z0[n], w[0] z0[n-2]
  const float expect =
      (z0[0][5][0] + bias[0] + w[2] * z0[0][5][0] + w[1] * z0[0][4][0] + w[0] * z0[0][3][0]).item<float>();
  CHECK(z[0][5][0].item<float>() == Approx(expect).epsilon(1e-5));
}

TEST_CASE("stem/tokens with a tied linear head: a causal language model over token ids", "[model]") {
  const std::string lm =
      "{type: model/composed, dim: 16, pool: none, stem: {type: stem/tokens, vocabulary: 11, "
      "length: 9}, stack: {type: stack/plain, depth: 2, drop_path: 0.0}, "
      "mixer: {type: attention/softmax, heads: 2}}";
  torch::manual_seed(1);
  ModelArgs args;
  args.outputs = 11;
  args.head = yaml("{type: linear, tie: true}");
  const Model m = composed_model(model_registry().create(yaml(lm), args));
  m->eval();
  CHECK(m->stem().layout().causal);
  // The head's weight is the stem's embedding: one tensor, trained once.
  const auto* head = dynamic_cast<const LinearHeadImpl*>(&m->head());
  REQUIRE(head);
  CHECK(head->tied.is_same(m->stem().embedding()));
  CHECK(m->head().named_parameters().keys() == std::vector<std::string>{"bias"});
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, 11, {2, 7}, torch::kLong);
  const torch::Tensor y = m->forward(ids);
  CHECK(y.sizes() == torch::IntArrayRef({2, 7, 11}));
  // Causal: a different last token changes no earlier prediction.
  torch::Tensor changed = ids.clone();
  changed.select(1, 6).copy_((ids.select(1, 6) + 1).remainder(11));
  const torch::Tensor y2 = m->forward(changed);
  CHECK(torch::allclose(y.slice(1, 0, 6), y2.slice(1, 0, 6)));
  CHECK_FALSE(torch::allclose(y.select(1, 6), y2.select(1, 6)));

  // Tying needs a stem with an embedding.
  const std::string e = testing::error_text([&] { build(kVit + "}", "{type: linear, tie: true}"); });
  CHECK(e.find("head.tie: the head ties its weight to the stem's token embedding, but the stem has none") !=
        std::string::npos);
}

TEST_CASE("stem/series: one token per step, or patches of steps (PatchTST) with token lengths", "[model]") {
  const StemArgs args{8, ModelInputs{3, 0, 0, 16, 0}};
  torch::manual_seed(2);
  SeriesStem per_step(args, SeriesStemOptions());
  CHECK(per_step->forward(torch::randn({2, 16, 3})).x.sizes() == torch::IntArrayRef({2, 16, 8}));

  SeriesStem patched(args, SeriesStemOptions().patch(4).stride(2));
  CHECK(patched->tokens() == 7);
  const torch::Tensor x = torch::randn({2, 16, 3});
  const Tokens t = patched->forward(x, torch::tensor({16, 9}, torch::kLong));
  CHECK(t.x.sizes() == torch::IntArrayRef({2, 7, 8}));
  CHECK(torch::equal(t.layout.lengths, torch::tensor({7, 3}, torch::kLong)));  // (9 - 4) / 2 + 1 = 3
  // Token 1 is steps 2..5, all channels, time-major.
  const torch::Tensor by_hand =
      patched->proj->forward(x.slice(1, 2, 6).reshape({2, 12})) + patched->positions.pos_embed[0][1];
  CHECK(torch::allclose(t.x.select(1, 1), by_hand));

  const std::string e =
      testing::error_text([&] { stem_registry().create(yaml("{type: stem/series, patch: 20}"), args); });
  CHECK(e.find("test.yaml:1: patch: patch 20 is longer than the series (16 steps)") != std::string::npos);
}

TEST_CASE("stack/stages: per-stage depth, width and grid, patch merging between stages; rules at the option",
          "[model]") {
  const std::string stem = "stem: {type: stem/patch, patch: 7, class_token: false}";
  const auto staged = [&](const std::string& stack, const std::string& mixer = "{type: attention/softmax, heads: 2}") {
    return "{type: model/composed, dim: 16, pool: mean, " + stem + ", stack: " + stack + ", mixer: " + mixer + "}";
  };
  const Model m = build(staged("{type: stack/stages, depths: [1, 2], drop_path: 0.0, "
                               "layers: {deep: {stage: 1, mixer: {heads: 4}}}}"));
  CHECK(m->stack().depth() == 3);
  CHECK(m->stack().out_dim() == 32);  // the stem's width, doubled for stage 1
  CHECK(m->stack().layer_name(2) == "model.blocks.2 (stage 1, attention/softmax)");
  AttentionProbe probe;
  probe.enable();
  m->eval();
  {
    torch::NoGradGuard no_grad;
    CHECK(m->forward(torch::randn({2, 1, 28, 28}), &probe).sizes() == torch::IntArrayRef({2, 10}));
  }
  REQUIRE(probe.records().size() == 3);
  CHECK(probe.records()[0].probs.sizes() == torch::IntArrayRef({2, 2, 16, 16}));  // 4x4 grid, 2 heads
  CHECK(probe.records()[1].probs.sizes() == torch::IntArrayRef({2, 4, 4, 4}));    // 2x2 grid after merging
  CHECK(probe.records()[2].layer == 2);

  // Swin's patch merging concatenates each 2x2 group as (0,0), (1,0), (0,1), (1,1).
  Downsample merge("merge", 1, 1);
  {
    torch::NoGradGuard no_grad;
    merge->norm->weight.fill_(1.0), merge->norm->bias.zero_();
    merge->reduction->weight.copy_(torch::tensor({{1.0f, 10.0f, 100.0f, 1000.0f}}));
  }
  const torch::Tensor grid = torch::tensor({0.0f, 1.0f, 2.0f, 3.0f}).reshape({1, 4, 1});  // row-major 2x2
  const torch::Tensor normed = torch::layer_norm(torch::tensor({0.0f, 2.0f, 1.0f, 3.0f}), {4});
  CHECK(torch::allclose(merge->forward(grid, 2, 2).flatten(),
                        (normed * torch::tensor({1.0f, 10.0f, 100.0f, 1000.0f})).sum().reshape({1})));

  using testing::error_text;
  std::string e = error_text([&] { build(staged("{type: stack/stages, depths: [1, 1, 1, 1]}")); });
  CHECK(e.find("4 stages halve the token grid 3 times, but the stem's grid 4x4 is not divisible by 8") !=
        std::string::npos);
  e = error_text([&] { build(staged("{type: stack/stages, layers: {x: {stage: 2, mixer: {heads: 1}}}}")); });
  CHECK(e.find("model.stack.layers.x.stage: stage 2 does not exist: the stack has 2 stages (0..1)") != std::string::npos);
  e = error_text([&] {
    build(staged("{type: stack/stages, dims: [16, 24], layers: {deep: {stage: 1, mixer: {heads: 16}}}}"));
  });
  CHECK(e.find("model.stack.layers.deep.mixer.heads: layer 2: heads must divide the embedding width: dim 24") !=
        std::string::npos);
  e = error_text([&] {
    build("{type: model/composed, dim: 16, pool: mean, stem: {type: stem/patch, patch: 7}, stack: {type: stack/stages}}");
  });
  CHECK(e.find("stack/stages needs tokens on a grid without class tokens") != std::string::npos);
}

TEST_CASE("stack/stages: ViT-ResNAS's residual spatial reduction, by hand, on an odd grid", "[model]") {
  // x' = Conv3x3/2(LN(x)) + E'_pos + pad(AvgPool2x2/2(x)) (catalog 002 B-19), 3x3 -> 2x2, width 2 -> 3.
  Downsample down("residual", 2, 3, 4);
  down->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : down->parameters()) p.normal_(0.0, 0.5);
  }
  const torch::Tensor x = torch::randn({2, 9, 2}, torch::kFloat64);  // a 3x3 grid, row-major
  const torch::Tensor got = down->forward(x, 3, 3);
  REQUIRE(got.sizes() == torch::IntArrayRef({2, 4, 3}));
  CHECK(down->half_grid(3) == 2);
  torch::NoGradGuard no_grad;
  const auto mean = x.mean(-1, true), var = (x - mean).pow(2).mean(-1, true);
  const auto normed = (x - mean) / (var + 1e-6).sqrt() * down->norm->weight + down->norm->bias;
  const auto w = down->conv->weight;  // [3, 2, 3, 3]
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t oi = 0; oi < 2; ++oi)
      for (std::int64_t oj = 0; oj < 2; ++oj) {
        torch::Tensor conv = down->conv->bias.clone(), pooled = torch::zeros({2}, torch::kFloat64);
        double covered = 0;
        for (std::int64_t di = 0; di < 3; ++di)  // stride 2, padding 1
          for (std::int64_t dj = 0; dj < 3; ++dj) {
            const std::int64_t i = 2 * oi + di - 1, j = 2 * oj + dj - 1;
            if (i >= 0 && i < 3 && j >= 0 && j < 3) conv += w.select(3, dj).select(2, di).matmul(normed[b][3 * i + j]);
          }
        for (std::int64_t i = 2 * oi; i < std::min<std::int64_t>(2 * oi + 2, 3); ++i)  // the window's part on the grid
          for (std::int64_t j = 2 * oj; j < std::min<std::int64_t>(2 * oj + 2, 3); ++j)
            pooled += x[b][3 * i + j], ++covered;
        const auto expected =
            conv + down->pos_embed[0][2 * oi + oj] + torch::cat({pooled / covered, torch::zeros({1}, torch::kFloat64)});
        CHECK((got[b][2 * oi + oj] - expected).abs().max().item<double>() < 1e-12);
      }
  // In a model: any grid (7x7 -> 4x4 -> 2x2), positions without weight decay; widths must not shrink.
  const Model m = build(
      "{type: model/composed, dim: 8, pool: mean, stem: {type: stem/patch, patch: 4, class_token: "
      "false}, stack: {type: stack/stages, depths: [1, 1, 1], dims: [8, 8, 12], downsample: residual}, "
      "mixer: {type: attention/softmax, heads: 2}}");
  CHECK(m->stack().out_tokens() == 4);
  CHECK(m->forward(torch::randn({2, 1, 28, 28})).sizes() == torch::IntArrayRef({2, 10}));
  CHECK(no_weight_decay_names(*m).count("stack.downsample.1.pos_embed") == 1);
  const std::string e = testing::error_text([&] {
    build(
        "{type: model/composed, dim: 8, pool: mean, stem: {type: stem/patch, patch: 4, class_token: false}, "
        "stack: {type: stack/stages, dims: [8, 4], downsample: residual}}");
  });
  CHECK(e.find("residual spatial reduction pads the width, it cannot narrow it (stage 1: 8 -> 4)") !=
        std::string::npos);
}

TEST_CASE("a model keeps the initialisation of blocks that bring their own; timm's init covers the rest", "[model]") {
  // Mamba's step sizes and Titans' forgetting gate as their papers' code sets them, not zeroed by
  // the model's timm init (softplus(0) = 0.69 would forget within a few tokens); softmax layers
  // still get trunc-normal(0.02) weights.
  const Model m = build(kVit +
                        ", layers: {ssm: {at: \"0\", mixer: {type: ssm/mamba}}, "
                        "memory: {at: \"1\", mixer: {type: memory/titans, heads: 2, segment: 4}}}}");
  std::map<std::string, torch::Tensor> p;
  for (const auto& item : m->named_parameters()) p[item.key()] = item.value().detach();
  const auto dt = torch::softplus(p.at("stack.blocks.0.mixer.dt_proj.bias"));
  CHECK(dt.min().item<double>() >= 1e-3 * (1 - 1e-5));
  CHECK(dt.max().item<double>() <= 0.1 * (1 + 1e-5));
  CHECK(p.at("stack.blocks.0.mixer.in_proj.weight").std().item<double>() > 0.1);  // kaiming uniform, 1 / sqrt(3 C)
  const auto gates = p.at("stack.blocks.1.mixer.memory.gates.bias");
  CHECK(torch::all(gates.narrow(0, 4, 2) == -5).item<bool>());  // alpha = sigmoid(-5): weak forgetting
  const auto qkv = p.at("stack.blocks.2.mixer.qkv.weight");
  CHECK(std::abs(qkv.std().item<double>() - 0.02) < 0.003);
  CHECK(torch::all(p.at("stack.blocks.2.mixer.qkv.bias") == 0).item<bool>());
}

}  // namespace BLOCKLAB_TEST_FILE
