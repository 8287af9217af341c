// task lm (experiments/tasks/lm.h), the recurrent path through a model (ModelImpl::step) and
// generation (experiments/generation.h, `blocklab generate`): bits per character computed
// right, stepping equals the full forward, greedy text the same both ways, sampling seeded.
#include <catch2/catch.hpp>

#include <cmath>

#include "blocks/model.h"
#include "experiments/generation.h"
#include "experiments/model_builder.h"
#include "experiments/tasks/lm.h"
#include "registry/yaml_io.h"
#include "tests/conformance/decay_recurrence.h"
#include "tests/tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::testing;

namespace {

// The test-only recurrent mixer as a registry entry, so a composed model can use it
// ("test/" keys are outside the census).
BLOCKLAB_REGISTER(mixer_registry(),
                  EntryInfo{"test/decay-recurrence", "test-only recurrent mixer (tests/conformance/decay_recurrence.h)",
                            "none (a test fixture: a per-channel decaying sum)",
                            "y_t = sum_{j <= t} a^(t - j) W x_j; recurrent: h_t = a h_{t-1} + W x_t", Schema{}, "{}",
                            __FILE__},
                  [](const ConfigNode&, const MixerArgs& args) -> TokenMixer {
                    return std::make_shared<conformance::DecayRecurrenceImpl>(args.dim);
                  });

constexpr std::int64_t kVocabulary = 11, kLength = 9;

// A tiny LM (two blocks, tied head) with `mixer` in every layer, in float64.
Model tiny_lm(const std::string& mixer, const std::string& pos = "learned") {
  DatasetInfo info;
  info.task = "language";
  info.vocabulary = kVocabulary;
  info.length = kLength;
  torch::manual_seed(3);
  const ConfigNode model =
      parse_yaml("{type: model/composed, dim: 16, pool: none, stem: {type: stem/tokens, pos: " + pos +
                     "}, stack: {type: stack/plain, depth: 2, drop_path: 0.0}, mixer: " + mixer + "}",
                 "model");
  Model m = composed_model(build_model(model, parse_yaml("{type: linear, tie: true}", "head"), info));
  REQUIRE(m);
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

const std::string kRecurrent = "{type: test/decay-recurrence}";
const std::string kSoftmax = "{type: attention/softmax, heads: 2}";

}  // namespace

TEST_CASE("lm: bits per character are the loss over ln 2; uniform logits score log2(V); padding is not scored",
          "[lm]") {
  const std::int64_t v = 64;
  torch::manual_seed(0);
  torch::Tensor targets = torch::randint(v, {3, 10}, torch::kLong);
  targets.index_put_({2, torch::indexing::Slice(6)}, kIgnoreTarget);
  const TokenLoss uniform = token_loss(torch::zeros({3, 10, v}), targets);
  CHECK(uniform.tokens == 26);
  CHECK(uniform.bits() == Approx(6.0).epsilon(1e-12));
  CHECK(uniform.perplexity() == Approx(64.0).epsilon(1e-12));
  // A model sure of every scored target: 0 bits, whatever it says at padded positions.
  torch::Tensor sure = torch::zeros({3, 10, v});
  sure.scatter_(2, targets.clamp_min(0).unsqueeze(2), 100.0);
  CHECK(token_loss(sure, targets).bits() < 1e-6);
  // Sums over batches add up to the loss of the whole.
  TokenLoss parts = token_loss(torch::zeros({1, 10, v}), targets.slice(0, 0, 1));
  parts += token_loss(torch::zeros({2, 10, v}), targets.slice(0, 1));
  CHECK(parts.tokens == uniform.tokens);
  CHECK(parts.loss() == Approx(uniform.loss()).epsilon(1e-12));
}

TEST_CASE("lm: stepping a recurrent LM token by token gives the full forward's logits", "[lm]") {
  Model m = tiny_lm(kRecurrent);
  REQUIRE(m->recurrent());
  torch::manual_seed(1);
  const torch::Tensor ids = torch::randint(kVocabulary, {3, kLength}, torch::kLong);
  torch::NoGradGuard no_grad;
  const torch::Tensor full = m->forward(ids);  // [3, N, V]
  ModelImpl::State state = m->init_state(3, full.options());
  double worst = 0;
  for (std::int64_t t = 0; t < kLength; ++t) {
    const torch::Tensor step = m->step(ids.select(1, t), state);
    worst = std::max(worst, (step - full.select(1, t)).abs().max().item<double>());
  }
  INFO("max abs difference " << worst);
  CHECK(worst <= 1e-9);
  CHECK(state.position == kLength);
  CHECK_THROWS_WITH(m->step(ids.select(1, 0), state), Catch::Contains("beyond the learned position table"));
}

TEST_CASE("lm: greedy generation gives the same text by stepping and by the full forward", "[lm]") {
  Model m = tiny_lm(kRecurrent);
  const std::vector<std::int64_t> prompt{1, 2, 3};
  SamplingOptions greedy;
  greedy.tokens = kLength - 3;
  greedy.temperature = 0.0;
  const Generated stepped = generate_tokens(*m, prompt, kLength, greedy, GenerationPath::step);
  const Generated full = generate_tokens(*m, prompt, kLength, greedy, GenerationPath::full);
  CHECK(stepped.stepped);
  CHECK_FALSE(full.stepped);
  CHECK(stepped.ids.size() == static_cast<std::size_t>(greedy.tokens));
  CHECK(stepped.ids == full.ids);
  CHECK(generate_tokens(*m, prompt, kLength, greedy).stepped);  // automatic: recurrent, fits the positions
  // top_k = 1 is greedy too.
  SamplingOptions top1 = greedy;
  top1.temperature = 1.0;
  top1.top_k = 1;
  CHECK(generate_tokens(*m, prompt, kLength, top1).ids == stepped.ids);
  // Past the learned position table the full forward slides over the last `context` tokens.
  SamplingOptions longer = greedy;
  longer.tokens = 20;
  CHECK_FALSE(steps_for(*m, 23));
  CHECK(generate_tokens(*m, prompt, kLength, longer).ids.size() == 20);
  // Without a position table a recurrent model steps for any length.
  Model unbounded = tiny_lm(kRecurrent, "none");
  CHECK(steps_for(*unbounded, 1000));
  CHECK(generate_tokens(*unbounded, prompt, kLength, longer).stepped);
}

TEST_CASE("lm: softmax attention LMs use the full forward; sampling is seeded", "[lm]") {
  Model m = tiny_lm(kSoftmax);
  CHECK_FALSE(m->recurrent());
  CHECK_FALSE(steps_for(*m, 4));
  SamplingOptions o;
  o.tokens = 40;
  o.temperature = 1.0;
  o.seed = 5;
  const Generated a = generate_tokens(*m, {4}, kLength, o);
  CHECK_FALSE(a.stepped);
  CHECK(generate_tokens(*m, {4}, kLength, o).ids == a.ids);
  o.seed = 6;
  CHECK(generate_tokens(*m, {4}, kLength, o).ids != a.ids);
  CHECK_THROWS_WITH(m->init_state(1, torch::kFloat64), Catch::Contains("no recurrent form"));
}

TEST_CASE("lm: a tiny lm_kjv run scores bits per character, and generate prints the requested characters", "[lm]") {
  TempDir tmp;
  std::vector<std::string> args = {"run", "lm_kjv", "-q", "output_dir=" + (tmp.path / "out").string()};
  args.insert(args.end(), tiny_lm_overrides().begin(), tiny_lm_overrides().end());
  REQUIRE(run_blocklab(args, tmp.path / "run.log") == 0);
  const fs::path dir = run_dir(tmp.path / "out", "lm_kjv");
  const std::string metrics = slurp(dir / "metrics.jsonl");
  CHECK(metrics.find("\"test/bpc\": ") != std::string::npos);
  CHECK(metrics.find("\"val/bpc\": ") != std::string::npos);
  CHECK(metrics.find("\"tokens_per_s\": ") != std::string::npos);
  const double bpc = std::stod(summary_field(dir, "best/val_bpc"));
  CHECK(bpc > 1.0);
  CHECK(bpc < std::log2(63.0));  // better than uniform over the 63 characters after 48 steps

  const std::string generate = "generate " + dir.string() + " --prompt 'In the beginning' --tokens 120";
  const CommandResult a = blocklab_command(generate + " --seed 3");
  INFO(a.err);
  REQUIRE(a.status == 0);
  CHECK(a.out.size() == std::string("In the beginning").size() + 120 + 1);
  CHECK(a.out.rfind("In the beginning", 0) == 0);
  CHECK(a.err.find("full forward") != std::string::npos);
  CHECK(blocklab_command(generate + " --seed 3").out == a.out);
  CHECK(blocklab_command(generate + " --seed 4").out != a.out);
  const CommandResult unknown = blocklab_command("generate " + dir.string() + " --prompt 'Psalm 23#'");
  CHECK(unknown.status == 2);
  CHECK(unknown.err.find("outside the model's vocabulary: '2', '3', '#'") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
