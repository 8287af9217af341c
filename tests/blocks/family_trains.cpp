#include "blocks/family_trains.h"

#include <catch2/catch.hpp>

#include "blocks/model.h"
#include "experiments/model_builder.h"
#include "registry/yaml_io.h"

namespace blocklab::family_trains {

namespace {

// The mixer as its registry example configures it (small, valid at width 32), in flow style.
std::string mixer_config(const std::string& key) {
  const std::string example = mixer_registry().info(key).example;
  const auto open = example.find('{');
  if (open == std::string::npos || example.find_first_not_of(" {}", open) == std::string::npos)
    return "{type: " + key + "}";
  return "{type: " + key + ", " + example.substr(open + 1);
}

// A 2-layer composed model of width 32 around the mixer `key` (its registry example).
Model build(const std::string& key, const std::string& pool, const std::string& stem, const std::string& head,
            const DatasetInfo& info) {
  const std::string model = "{type: model/composed, dim: 32, pool: " + pool + ", stem: " + stem +
                            ", stack: {type: stack/plain, depth: 2, drop_path: 0.0}, mixer: " + mixer_config(key) + "}";
  torch::manual_seed(4);
  Model m = composed_model(build_model(parse_yaml(model, "model"), parse_yaml(head, "head"), info));
  REQUIRE(m);
  return m;
}

// AdamW steps on loss(); returns the losses of the first and last 5 steps (means).
std::pair<double, double> train(Model& m, int steps, const std::function<torch::Tensor()>& loss) {
  const int threads = at::get_num_threads();
  at::set_num_threads(1);  // small tensors: one thread is faster, and ctest runs groups side by side
  torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(3e-3));
  std::vector<double> losses;
  m->train();
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    const auto l = loss();
    l.backward();
    opt.step();
    losses.push_back(l.item<double>());
  }
  at::set_num_threads(threads);
  const auto mean = [&](std::size_t from) {
    double s = 0;
    for (std::size_t i = from; i < from + 5; ++i) s += losses[i];
    return s / 5;
  };
  return {mean(0), mean(losses.size() - 5)};
}

}  // namespace

std::vector<std::string> mixers_with_prefixes(const std::vector<std::string>& prefixes) {
  std::vector<std::string> keys;
  for (const EntryInfo* e : mixer_registry().list())
    for (const auto& prefix : prefixes)
      if (e->key.rfind(prefix, 0) == 0) keys.push_back(e->key);
  return keys;
}

MixerCapabilities capabilities_of(const std::string& key) {
  return mixer_registry().create(parse_yaml(mixer_config(key), "mixer"), MixerArgs{32, 64})->capabilities();
}

void check_learns_lm(const std::string& key, double fraction) {
  const MixerCapabilities caps = capabilities_of(key);
  DatasetInfo info;
  info.task = "language";
  info.vocabulary = 8;
  info.length = 24;
  Model m = build(key, "none", "{type: stem/tokens, pos: learned}", "{type: linear, tie: true}", info);
  CHECK(m->recurrent() == caps.recurrent);
  // Sequences cycling through a random permutation of the 8 tokens: the next token is the
  // one that followed it 8 positions earlier (learnable only by looking back).
  torch::manual_seed(9);
  const auto batch = [&] {
    std::vector<torch::Tensor> rows;
    for (int b = 0; b < 16; ++b) rows.push_back(torch::randperm(8).repeat({3}));
    return torch::stack(rows);
  };
  const auto [first, last] = train(m, 200, [&] {
    const auto ids = batch();
    const auto logits = m->forward(ids.narrow(1, 0, 23));
    return torch::cross_entropy_loss(logits.reshape({-1, 8}), ids.narrow(1, 1, 23).reshape({-1}));
  });
  INFO("loss " << first << " -> " << last);
  CHECK(last < fraction * first);
  if (!caps.recurrent) return;
  m->to(torch::kFloat64);
  m->eval();
  torch::NoGradGuard no_grad;
  const auto ids = batch();
  const auto full = m->forward(ids);
  auto state = m->init_state(16, full.options());
  double worst = 0;
  for (std::int64_t t = 0; t < ids.size(1); ++t)
    worst = std::max(worst, (m->step(ids.select(1, t), state) - full.select(1, t)).abs().max().item<double>());
  CHECK(worst <= 1e-9);
}

void check_learns_seqcls(const std::string& key) {
  DatasetInfo info;
  info.vocabulary = 8;
  info.length = 16;
  info.num_classes = 2;
  // An encoder for the mixers without a causal form (the token stem is causal by default).
  const std::string stem = capabilities_of(key).causal ? "{type: stem/tokens, pos: learned}"
                                                       : "{type: stem/tokens, pos: learned, causal: false}";
  Model m = build(key, "mean", stem, "linear", info);
  // Sequences of 8..16 random tokens, right-padded to 16; the class: is the first token < 4?
  torch::manual_seed(11);
  const auto batch = [] {
    const auto ids = torch::randint(8, {32, 16}, torch::kLong);
    const auto lengths = torch::randint(8, 17, {32}, torch::kLong);
    return std::make_tuple(ids, lengths, (ids.select(1, 0) < 4).to(torch::kLong));
  };
  const auto [first, last] = train(m, 200, [&] {
    const auto [ids, lengths, labels] = batch();
    return torch::cross_entropy_loss(m->forward(ids, nullptr, lengths), labels);
  });
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.5 * first);
}

void check_learns_images(const std::string& model_yaml) {
  DatasetInfo info;
  info.channels = 1, info.height = 16, info.width = 16, info.num_classes = 2;
  torch::manual_seed(4);
  Model m = composed_model(build_model(parse_yaml(model_yaml, "model"), parse_yaml("linear", "head"), info));
  REQUIRE(m);
  // Class: is the bright square in the left or the right half? Its row is random; the
  // learned positions tell the halves apart. (Some mixers sit on a plateau for ~150 steps
  // before the position-content interaction forms, hence 250.)
  torch::manual_seed(10);
  const auto batch = [] {
    auto images = torch::randn({32, 1, 16, 16}) * 0.1;
    const auto labels = torch::randint(2, {32}, torch::kLong);
    for (int b = 0; b < 32; ++b) {
      const auto row = torch::randint(13, {1}).item<std::int64_t>();
      const auto col = labels[b].item<std::int64_t>() * 8 + torch::randint(5, {1}).item<std::int64_t>();
      images[b][0].narrow(0, row, 3).narrow(1, col, 3).add_(2.0);
    }
    return std::make_pair(images, labels);
  };
  const auto [first, last] = train(m, 250, [&] {
    const auto [images, labels] = batch();
    return torch::cross_entropy_loss(m->forward(images), labels);
  });
  INFO(model_yaml << ": loss " << first << " -> " << last);
  CHECK(last < 0.5 * first);
}

void check_learns_vit(const std::string& key) {
  check_learns_images(
      "{type: model/composed, dim: 32, pool: mean, stem: {type: stem/patch, patch: 4, pos: learned}, "
      "stack: {type: stack/plain, depth: 2, drop_path: 0.0}, mixer: " +
      mixer_config(key) + "}");
}

}  // namespace blocklab::family_trains
