// Attention maps: probe capture on a whole ViT (fused vs reference), effective mixing
// matrices, rollout, head statistics and token-to-grid reshaping with class/register tokens.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "analysis/attention_maps.h"
#include "analysis/npy.h"
#include "process_support.h"
#include "registry/yaml_io.h"
#include "tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

Backbone tiny_vit(const std::string& pool) {
  const ConfigNode cfg = parse_yaml("type: vit\npatch: 7\ndim: 16\ndepth: 2\npool: " + pool +
                                        "\nmixer: {type: attention/softmax, heads: 2}\nchannel: {type: mlp, ratio: 2}\n",
                                    "test");
  torch::manual_seed(3);
  auto vit = backbone_registry().create(cfg, BackboneArgs{1, 28, 28});
  vit->eval();
  return vit;
}

// y = A x W: a linear token mixer whose Jacobian blocks are A_ij W^T, so the effective mixing
// matrix is |A_ij| ||W||_F.
class LinearMixer : public TokenMixerImpl {
 public:
  LinearMixer(torch::Tensor a, torch::Tensor w) : a_(std::move(a)), w_(std::move(w)) {}
  torch::Tensor forward(const torch::Tensor& x, const MixerContext&) override {
    return torch::matmul(torch::matmul(a_, x), w_);
  }

 private:
  torch::Tensor a_, w_;
};

}  // namespace

TEST_CASE("the probe captures every layer of a ViT; rows sum to 1; output equals the fused path", "[attn]") {
  for (const std::string pool : {"cls", "mean"}) {
    Backbone vit = tiny_vit(pool);
    const torch::Tensor images = torch::randn({3, 1, 28, 28});
    torch::NoGradGuard no_grad;
    const torch::Tensor fused = vit->forward(images);
    AttentionProbe probe;
    probe.enable();
    probe.keep_mixer_calls();
    const torch::Tensor captured = vit->forward(images, &probe);
    CHECK(torch::allclose(captured, fused, 1e-5, 1e-6));
    const std::int64_t n = (pool == "cls" ? 1 : 0) + 16;
    REQUIRE(probe.records().size() == 2);
    REQUIRE(probe.mixer_calls().size() == 2);
    for (std::size_t l = 0; l < 2; ++l) {
      const auto& r = probe.records()[l];
      CHECK(r.layer == static_cast<int>(l));
      CHECK(r.mixer == "attention/softmax");
      CHECK(r.probs.sizes() == torch::IntArrayRef({3, 2, n, n}));
      CHECK(torch::allclose(r.probs.sum(-1), torch::ones({3, 2, n}), 1e-5, 1e-6));
      CHECK(probe.mixer_calls()[l].input.sizes() == torch::IntArrayRef({3, n, 16}));
      CHECK(probe.mixer_calls()[l].context.prefix_tokens == n - 16);
      CHECK(probe.mixer_calls()[l].context.layer == static_cast<int>(l));
      CHECK(probe.mixer_calls()[l].context.probe == nullptr);
    }
  }
}

TEST_CASE("mixing matrix of a linear mixer is |A| times ||W||", "[attn]") {
  torch::manual_seed(1);
  const torch::Tensor a = torch::randn({5, 5}, torch::kFloat64), w = torch::randn({3, 3}, torch::kFloat64);
  LinearMixer mixer(a, w);
  const torch::Tensor m = mixing_matrix(mixer, torch::randn({1, 5, 3}, torch::kFloat64), MixerContext{});
  CHECK(torch::allclose(m, a.abs() * w.norm(), 1e-9, 1e-12));
  const torch::Tensor rows = normalize_rows(m);
  CHECK(torch::allclose(rows.sum(-1), torch::ones({5}, torch::kFloat64)));
}

TEST_CASE("mixing matrix of causal attention has no weight on future tokens", "[attn]") {
  torch::manual_seed(2);
  auto mixer = mixer_registry().create(parse_yaml("{type: attention/softmax, heads: 2}", "test"), MixerArgs{8, 6});
  mixer->eval();
  MixerContext ctx;
  ctx.causal = true;
  const torch::Tensor m = mixing_matrix(*mixer, torch::randn({1, 6, 8}), ctx);
  CHECK(torch::triu(m, 1).abs().max().item<double>() == 0.0);
  CHECK(torch::diagonal(m).min().item<double>() > 0.0);
}

TEST_CASE("rollout of identity attention is the identity; rollout rows sum to 1", "[attn]") {
  const torch::Tensor eye = torch::eye(5, torch::kFloat64).expand({3, 5, 5});
  CHECK(torch::allclose(attention_rollout(eye), torch::eye(5, torch::kFloat64)));
  const torch::Tensor uniform = torch::full({2, 4, 4}, 0.25, torch::kFloat64);
  const torch::Tensor r = attention_rollout(uniform);
  CHECK(torch::allclose(r.sum(-1), torch::ones({4}, torch::kFloat64)));
  // One layer of uniform attention: 0.5 * uniform + 0.5 * I.
  const torch::Tensor one = attention_rollout(uniform.slice(0, 0, 1));
  CHECK(torch::allclose(one, 0.125 * torch::ones({4, 4}, torch::kFloat64) + 0.5 * torch::eye(4, torch::kFloat64)));
}

TEST_CASE("token maps: class and register tokens are dropped when reshaping to the grid", "[attn]") {
  // Two prefix tokens (class + one register), then a 2 x 3 grid.
  const std::int64_t prefix = 2, h = 2, w = 3, n = prefix + h * w;
  torch::Tensor m = torch::zeros({n, n}, torch::kFloat64);
  for (std::int64_t j = 0; j < n; ++j) m[0][j] = static_cast<double>(j);  // class row: value = token index
  const torch::Tensor grid = attention_to_grid(m, prefix, h, w);
  REQUIRE(grid.sizes() == torch::IntArrayRef({h, w}));
  const double total = 2 + 3 + 4 + 5 + 6 + 7;
  for (std::int64_t r = 0; r < h; ++r)
    for (std::int64_t c = 0; c < w; ++c) CHECK(grid[r][c].item<double>() == Approx((prefix + r * w + c) / total));
  // Without prefix tokens: the attention each token receives, averaged over queries.
  const torch::Tensor probs = torch::softmax(torch::randn({2, 6, 6}, torch::kFloat64), -1);
  const torch::Tensor g = attention_to_grid(probs, 0, 2, 3);
  REQUIRE(g.sizes() == torch::IntArrayRef({2, 2, 3}));
  CHECK(torch::allclose(g.reshape({2, 6}), probs.mean(1) / probs.mean(1).sum(-1, true)));
}

TEST_CASE("head statistics: mean distance and entropy of known attention", "[attn]") {
  // Uniform attention on a 2 x 2 grid: distances 0, 1, 1, sqrt(2) from every query.
  const torch::Tensor uniform = torch::full({1, 4, 4}, 0.25, torch::kFloat64);
  CHECK(mean_attention_distance(uniform, 0, 2, 2).item<double>() == Approx((2 + std::sqrt(2.0)) / 4));
  CHECK(attention_entropy(uniform).item<double>() == Approx(std::log(4.0)));
  const torch::Tensor self = torch::eye(4, torch::kFloat64).unsqueeze(0);
  CHECK(mean_attention_distance(self, 0, 2, 2).item<double>() == Approx(0.0));
  CHECK(attention_entropy(self).item<double>() == Approx(0.0).margin(1e-12));
  // A class token's column is ignored for distances.
  torch::Tensor with_cls = torch::zeros({1, 5, 5}, torch::kFloat64);
  with_cls.slice(1, 1).slice(2, 1).copy_(uniform);
  with_cls[0][0][0] = 1.0;
  CHECK(mean_attention_distance(with_cls, 1, 2, 2).item<double>() == Approx((2 + std::sqrt(2.0)) / 4));
}

TEST_CASE("head scores (Olsson et al. 2022): ideal induction and previous-token heads score 1", "[attn]") {
  const std::int64_t period = 5, n = 3 * period;
  // Head 0: induction (query i >= T attends to i - T + 1); head 1: previous token; head 2:
  // uniform over the causal prefix. Queries before T attend to themselves (head 0), query 0 to
  // itself (head 1).
  torch::Tensor probs = torch::zeros({3, n, n}, torch::kFloat64);
  for (std::int64_t i = 0; i < n; ++i) {
    probs[0][i][i >= period ? i - period + 1 : i] = 1.0;
    probs[1][i][i >= 1 ? i - 1 : 0] = 1.0;
    probs[2][i].slice(0, 0, i + 1).fill_(1.0 / static_cast<double>(i + 1));
  }
  const torch::Tensor induction = induction_scores(probs, period), previous = previous_token_scores(probs);
  CHECK(induction[0].item<double>() == Approx(1.0));
  CHECK(induction[1].item<double>() == Approx(0.0).margin(1e-12));
  CHECK(previous[1].item<double>() == Approx(1.0));
  CHECK(previous[0].item<double>() == Approx(0.0).margin(1e-12));
  double uniform_induction = 0, uniform_previous = 0;
  for (std::int64_t i = period; i < n; ++i) uniform_induction += 1.0 / static_cast<double>((i + 1) * (n - period));
  for (std::int64_t i = 1; i < n; ++i) uniform_previous += 1.0 / static_cast<double>((i + 1) * (n - 1));
  CHECK(induction[2].item<double>() == Approx(uniform_induction));
  CHECK(previous[2].item<double>() == Approx(uniform_previous));
  CHECK_THROWS(induction_scores(probs, 1));       // no period below 2
  CHECK_THROWS(induction_scores(probs, n));       // no query after one period
}

TEST_CASE("blocklab attn on a trained run writes pictures, arrays and an index linking them", "[attn]") {
  testing::TempDir tmp;
  const std::string out = (tmp.path / "runs").string();
  REQUIRE(testing::run_blocklab({"run", "vit_fmnist", "-q", "output_dir=" + out, "model.dim=16", "model.depth=2",
                                 "model.patch=7", "model.pool=cls", "model.mixer.heads=2", "dataset.limit_train=256",
                                 "dataset.limit_test=50", "dataset.val_size=0", "trainer.batch_size=32",
                                 "trainer.epochs=1", "threads=1"},
                                tmp.path / "run.log") == 0);
  fs::path run;
  for (const auto& e : fs::directory_iterator(fs::path(out) / "vit_fmnist")) run = e.path();
  const int status = testing::run_blocklab({"attn", run.string(), "--samples", "0,3", "--svg"}, tmp.path / "attn.log");
  INFO(testing::slurp(tmp.path / "attn.log"));
  REQUIRE(status == 0);
  const fs::path attn = run / "attn";
  const std::string index = testing::slurp(attn / "index.html");
  int pictures = 0;
  for (const auto& e : fs::directory_iterator(attn)) {
    if (e.path().extension() != ".png") continue;
    ++pictures;
    CHECK(index.find("src=\"" + e.path().filename().string() + "\"") != std::string::npos);
    CHECK(fs::exists(fs::path(e.path()).replace_extension(".svg")));
  }
  // head stats + per sample: rollout, 2 layers x (heads, tokens), mixing grid + matrices.
  CHECK(pictures == 1 + 2 * (1 + 2 * 2 + 2));
  std::vector<std::int64_t> shape;
  const std::vector<float> probs = read_npy_f32((attn / "arrays/probs_layer1.npy").string(), shape);
  REQUIRE(shape == std::vector<std::int64_t>{2, 2, 17, 17});
  for (std::size_t row = 0; row < probs.size() / 17; ++row) {
    double sum = 0;
    for (std::size_t j = 0; j < 17; ++j) sum += probs[row * 17 + j];
    CHECK(sum == Approx(1.0).epsilon(1e-4));
  }
  read_npy_f32((attn / "arrays/mixing_test3.npy").string(), shape);
  CHECK(shape == std::vector<std::int64_t>{2, 17, 17});
  read_npy_f32((attn / "arrays/rollout_test0.npy").string(), shape);
  CHECK(shape == std::vector<std::int64_t>{17, 17});

  CHECK(testing::run_blocklab({"attn", tmp.path.string()}, tmp.path / "bad.log") == 2);
  CHECK(testing::slurp(tmp.path / "bad.log").find("is not a run directory") != std::string::npos);
  CHECK(testing::run_blocklab({"attn", run.string(), "--samples", "99999"}, tmp.path / "bad2.log") == 2);
  CHECK(testing::slurp(tmp.path / "bad2.log").find("there are only samples of the test split 0-49") != std::string::npos);

  // Arguments that exist only once the model is known: checked against it, exit 2, old set kept.
  auto fails = [&](std::vector<std::string> args, const std::string& expected) {
    args.insert(args.begin(), {"attn", run.string()});
    const fs::path log = tmp.path / "fail.log";
    fs::remove(log);
    CHECK(testing::run_blocklab(args, log) == 2);
    INFO(testing::slurp(log));
    CHECK(testing::slurp(log).find(expected) != std::string::npos);
    CHECK(testing::slurp(attn / "index.html") == index);  // the earlier pictures are still there
  };
  fails({"--tokens", "5-2"}, "--tokens '5-2': 5-2 is a reversed range (write 2-5)");
  fails({"--tokens", "0-17", "--no-mixing"}, "--tokens '0-17': asks for 17, but there are only tokens 0-16");
  fails({"--layers", "2", "--no-mixing"}, "--layers '2': asks for 2, but there are only layers 0-1");
  fails({"--heads", "0-2", "--no-mixing"}, "--heads '0-2': asks for 2, but there are only heads 0-1");

  // A second call replaces the set: no picture of the first call's samples stays behind.
  REQUIRE(testing::run_blocklab({"attn", run.string(), "--samples", "1", "--no-mixing", "--tokens", "1-4"},
                                tmp.path / "again.log") == 0);
  const std::string again = testing::slurp(attn / "index.html");
  int kept = 0;
  for (const auto& e : fs::directory_iterator(attn)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory()) continue;
    CHECK(name.find("test0") == std::string::npos);
    CHECK(name.find("test3") == std::string::npos);
    if (e.path().extension() == ".png") {
      ++kept;
      CHECK(again.find("src=\"" + name + "\"") != std::string::npos);
    }
  }
  CHECK(kept == 1 + 1 + 2 * 2);  // head stats, rollout, 2 layers x (heads, tokens)
  CHECK_FALSE(fs::exists(attn / "arrays/mixing_test3.npy"));
  for (const auto& e : fs::directory_iterator(run)) CHECK(e.path().filename().string().rfind("attn.", 0) != 0);

  // An attn directory that is a link to elsewhere is not written through.
  const fs::path elsewhere = tmp.path / "elsewhere";
  fs::rename(attn, elsewhere);
  fs::create_directory_symlink(elsewhere, attn);
  CHECK(testing::run_blocklab({"attn", run.string(), "--samples", "0", "--no-mixing"}, tmp.path / "link.log") == 2);
  CHECK(testing::slurp(tmp.path / "link.log").find("a symbolic link points out") != std::string::npos);
  fs::remove(attn);

  // Two processes appended to the run's metrics.jsonl: attn warns, naming the file and the line.
  const std::string metrics = testing::slurp(run / "metrics.jsonl");
  std::ofstream(run / "metrics.jsonl", std::ios::app) << metrics.substr(0, metrics.find('\n') + 1);
  REQUIRE(testing::run_blocklab({"attn", run.string(), "--samples", "0", "--no-mixing"}, tmp.path / "warn.log") == 0);
  CHECK(testing::slurp(tmp.path / "warn.log").find("warning: " + (run / "metrics.jsonl").string() + ": line ") !=
        std::string::npos);
}

namespace {

// A tiny run of `experiment` with `overrides` then `extra` under tmp/runs; returns its directory.
fs::path tiny_sequence_run(const testing::TempDir& tmp, const std::string& experiment,
                           const std::vector<std::string>& overrides, const std::string& extra) {
  std::vector<std::string> args = {"run", experiment, "-q", "output_dir=" + (tmp.path / "runs").string()};
  args.insert(args.end(), overrides.begin(), overrides.end());
  args.push_back(extra);
  REQUIRE(testing::run_blocklab(args, tmp.path / "run.log") == 0);
  return testing::run_dir(tmp.path / "runs", experiment);
}

}  // namespace

TEST_CASE("blocklab attn on a sequence run: token maps labelled with the tokens, a query's map", "[attn]") {
  testing::TempDir tmp;
  const fs::path run = tiny_sequence_run(tmp, "listops", testing::tiny_listops_overrides(), "trainer.epochs=1");
  const int status = testing::run_blocklab(
      {"attn", run.string(), "--samples", "0,1", "--tokens", "0-15", "--query", "9"}, tmp.path / "attn.log");
  INFO(testing::slurp(tmp.path / "attn.log"));
  REQUIRE(status == 0);
  const fs::path attn = run / "attn";
  std::vector<std::string> pictures;
  for (const auto& e : fs::directory_iterator(attn))
    if (e.path().extension() == ".png") pictures.push_back(e.path().filename().string());
  std::sort(pictures.begin(), pictures.end());
  // Per sample: the one layer's token x token map, its effective mixing matrix and the query's
  // map; no head scores (the encoder is not causal).
  CHECK(pictures == std::vector<std::string>{"test0_layer0_tokens.png", "test0_mixing.png", "test0_query9.png",
                                             "test1_layer0_tokens.png", "test1_mixing.png", "test1_query9.png"});
  std::vector<std::int64_t> shape;
  const std::vector<float> probs = read_npy_f32((attn / "arrays/probs_layer0.npy").string(), shape);
  REQUIRE(shape.size() == 4);
  CHECK(shape[0] == 2);
  CHECK(shape[1] == 2);
  const auto n = static_cast<std::size_t>(shape[3]);
  for (std::size_t row = 0; row < probs.size() / n; ++row) {
    double sum = 0;
    for (std::size_t j = 0; j < n; ++j) sum += probs[row * n + j];
    CHECK(sum == Approx(1.0).epsilon(1e-4));
  }
  CHECK(testing::slurp(attn / "index.html").find("where query 9 looks") != std::string::npos);
  CHECK(testing::run_blocklab({"attn", run.string(), "--query", "100000"}, tmp.path / "bad.log") == 2);
  CHECK(testing::slurp(tmp.path / "bad.log").find("is past the") != std::string::npos);
}

TEST_CASE("blocklab attn on a language model: induction and previous-token scores per layer and head", "[attn]") {
  testing::TempDir tmp;
  const fs::path run = tiny_sequence_run(tmp, "lm_kjv", testing::tiny_lm_overrides(), "model.stack.depth=2");
  const int status =
      testing::run_blocklab({"attn", run.string(), "--samples", "0", "--period", "8"}, tmp.path / "attn.log");
  INFO(testing::slurp(tmp.path / "attn.log"));
  REQUIRE(status == 0);
  CHECK(fs::exists(run / "attn/head_scores.png"));
  for (const char* name : {"induction_scores", "previous_token_scores"}) {
    std::vector<std::int64_t> shape;
    const std::vector<float> scores =
        read_npy_f32((run / "attn/arrays" / (std::string(name) + ".npy")).string(), shape);
    CHECK(shape == std::vector<std::int64_t>{2, 2});  // layers x heads
    for (float s : scores) CHECK((s >= 0.0F && s <= 1.0F));
  }
  // A period that does not fit twice in the 32-token context is refused.
  CHECK(testing::run_blocklab({"attn", run.string(), "--period", "17"}, tmp.path / "bad.log") == 2);
  CHECK(testing::slurp(tmp.path / "bad.log").find("does not fit twice") != std::string::npos);
}

TEST_CASE("blocklab attn on a linear-attention run: the implicit kernel next to the Jacobian mixing matrix", "[attn]") {
  testing::TempDir tmp;
  const std::string out = (tmp.path / "runs").string();
  REQUIRE(testing::run_blocklab(
              {"run", "vit_fmnist", "-q", "output_dir=" + out, "model/mixer=elu", "model.dim=16", "model.depth=1",
               "model.patch=7", "model.mixer.heads=2", "dataset.limit_train=128", "dataset.limit_test=20",
               "dataset.val_size=0", "trainer.batch_size=32", "trainer.epochs=1", "threads=1"},
              tmp.path / "run.log") == 0);
  fs::path run;
  for (const auto& e : fs::directory_iterator(fs::path(out) / "vit_fmnist")) run = e.path();
  REQUIRE(testing::run_blocklab({"attn", run.string(), "--samples", "0"}, tmp.path / "attn.log") == 0);
  const fs::path arrays = run / "attn" / "arrays";
  std::vector<std::int64_t> shape;
  // The normalised implicit kernel phi(q_i).phi(k_j) / sum_j: rows sum to 1 (16 patch tokens,
  // mean pooling: no class token).
  const std::vector<float> probs = read_npy_f32((arrays / "probs_layer0.npy").string(), shape);
  REQUIRE(shape == std::vector<std::int64_t>{1, 2, 16, 16});
  for (std::size_t row = 0; row < probs.size() / 16; ++row) {
    double sum = 0;
    for (std::size_t j = 0; j < 16; ++j) sum += probs[row * 16 + j];
    CHECK(sum == Approx(1.0).epsilon(1e-4));
  }
  read_npy_f32((arrays / "mixing_test0.npy").string(), shape);
  CHECK(shape == std::vector<std::int64_t>{1, 16, 16});
  const std::string index = testing::slurp(run / "attn" / "index.html");
  CHECK(index.find("effective mixing matrices") != std::string::npos);
}

TEST_CASE("blocklab attn on SSM language models: Mamba-2's semiseparable matrix; the Jacobian of any mixer", "[attn]") {
  // The tiny LM without its heads option (the SSMs have none).
  std::vector<std::string> overrides;
  for (const auto& o : testing::tiny_lm_overrides())
    if (o.rfind("model.mixer.heads", 0) != 0) overrides.push_back(o);
  const auto pictures_of = [](const fs::path& dir) {
    std::vector<std::string> pictures;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".png") pictures.push_back(e.path().filename().string());
    std::sort(pictures.begin(), pictures.end());
    return pictures;
  };
  SECTION("ssm/mamba2 records its matrix view M (y = M x per head): causal, drawn as token maps") {
    testing::TempDir tmp;
    overrides.insert(overrides.end(), {"model/mixer=mamba2", "model.mixer.headdim=8", "model.mixer.d_state=4"});
    const fs::path run = tiny_sequence_run(tmp, "lm_kjv", overrides, "model.mixer.chunk=8");
    const int status = testing::run_blocklab({"attn", run.string(), "--samples", "0"}, tmp.path / "attn.log");
    INFO(testing::slurp(tmp.path / "attn.log"));
    REQUIRE(status == 0);
    std::vector<std::int64_t> shape;
    const std::vector<float> m = read_npy_f32((run / "attn/arrays/probs_layer0.npy").string(), shape);
    REQUIRE(shape == std::vector<std::int64_t>{1, 4, 32, 32});  // 1 sample, E / headdim = 32 / 8 heads
    double above = 0, below = 0;
    for (std::size_t h = 0; h < 4; ++h)
      for (std::size_t i = 0; i < 32; ++i)
        for (std::size_t j = 0; j < 32; ++j) (j > i ? above : below) += std::abs(m[(h * 32 + i) * 32 + j]);
    CHECK(above == 0.0);
    CHECK(below > 0.0);
    // (and the induction / previous-token scores a causal LM's recorded maps get)
    CHECK(pictures_of(run / "attn") ==
          std::vector<std::string>{"head_scores.png", "test0_layer0_tokens.png", "test0_mixing.png"});
  }
  SECTION("ssm/mamba records no weights: its effective mixing matrix is drawn") {
    testing::TempDir tmp;
    overrides.push_back("model/mixer=mamba");
    const fs::path run = tiny_sequence_run(tmp, "lm_kjv", overrides, "model.mixer.d_state=4");
    const int status = testing::run_blocklab({"attn", run.string(), "--samples", "0"}, tmp.path / "attn.log");
    INFO(testing::slurp(tmp.path / "attn.log"));
    REQUIRE(status == 0);
    CHECK(pictures_of(run / "attn") == std::vector<std::string>{"test0_mixing.png"});
    std::vector<std::int64_t> shape;
    const std::vector<float> mixing = read_npy_f32((run / "attn/arrays/mixing_test0.npy").string(), shape);
    REQUIRE(shape == std::vector<std::int64_t>{1, 32, 32});
    double above = 0;
    for (std::size_t i = 0; i < 32; ++i)
      for (std::size_t j = i + 1; j < 32; ++j) above += std::abs(mixing[i * 32 + j]);
    CHECK(above == 0.0);  // a causal mixer: no token depends on a later one
    CHECK(testing::run_blocklab({"attn", run.string(), "--no-mixing"}, tmp.path / "bad.log") != 0);
    CHECK(testing::slurp(tmp.path / "bad.log").find("--no-mixing leaves nothing to draw") != std::string::npos);
  }
}

}  // namespace BLOCKLAB_TEST_FILE
