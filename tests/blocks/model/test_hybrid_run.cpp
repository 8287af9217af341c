// The committed hybrid (experiments/conf/vit_fmnist_hybrid.yaml) end to end: a tiny run, drawn by
// `blocklab attn` with layer ids and per-layer head counts; per-layer rules refused before a sweep.
#include <catch2/catch.hpp>

#include "analysis/npy.h"
#include "process_support.h"
#include "tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

TEST_CASE("the hybrid ViT runs tiny; blocklab attn draws each layer with its own head count", "[model]") {
  testing::TempDir tmp;
  const std::string out = (tmp.path / "runs").string();
  std::vector<std::string> args = {"run", "vit_fmnist_hybrid", "-q", "output_dir=" + out};
  for (const auto& o : testing::tiny_overrides()) args.push_back(o);
  // Four layers: 0-1 softmax with 2 heads (the tiny default), 2-3 sigmoid with 1 head.
  for (const char* o : {"model.depth=4", "model.layers.late.mixer.heads=1", "trainer.epochs=1"}) args.push_back(o);
  REQUIRE(testing::run_blocklab(args, tmp.path / "run.log") == 0);
  fs::path run;
  for (const auto& e : fs::directory_iterator(fs::path(out) / "vit_fmnist_hybrid")) run = e.path();
  const std::string config = testing::slurp(run / "config.yaml");
  CHECK(config.find("attention/sigmoid") != std::string::npos);

  const int status = testing::run_blocklab({"attn", run.string(), "--samples", "0"}, tmp.path / "attn.log");
  INFO(testing::slurp(tmp.path / "attn.log"));
  REQUIRE(status == 0);
  const fs::path attn = run / "attn";
  const std::int64_t heads[] = {2, 2, 1, 1};
  for (int l = 0; l < 4; ++l) {
    INFO("layer " << l);
    std::vector<std::int64_t> shape;
    read_npy_f32((attn / ("arrays/probs_layer" + std::to_string(l) + ".npy")).string(), shape);
    CHECK(shape == std::vector<std::int64_t>{1, heads[l], 16, 16});
    CHECK(fs::exists(attn / ("test0_layer" + std::to_string(l) + "_heads.png")));
    CHECK(fs::exists(attn / ("test0_layer" + std::to_string(l) + "_tokens.png")));
  }
  const std::string index = testing::slurp(attn / "index.html");
  CHECK(index.find("layer 1 (attention/softmax, 2 heads)") != std::string::npos);
  CHECK(index.find("layer 2 (attention/sigmoid, 1 heads)") != std::string::npos);
  std::vector<std::int64_t> shape;
  read_npy_f32((attn / "arrays/head_distance.npy").string(), shape);
  CHECK(shape == std::vector<std::int64_t>{4, 2});

  // --heads is checked per layer: head 1 exists in layers 0-1 only.
  CHECK(testing::run_blocklab({"attn", run.string(), "--heads", "1"}, tmp.path / "heads.log") == 2);
  CHECK(testing::slurp(tmp.path / "heads.log").find("there are only heads 0-0 in layer 2 (attention/sigmoid)") !=
        std::string::npos);
  CHECK(testing::run_blocklab({"attn", run.string(), "--heads", "1", "--layers", "0-1", "--no-mixing"},
                              tmp.path / "heads_ok.log") == 0);
}

TEST_CASE("a sweep over a per-layer head count that does not divide the width is refused, naming the point",
          "[model]") {
  testing::TempDir tmp;
  const fs::path log = tmp.path / "sweep.log";
  CHECK(testing::run_blocklab({"sweep", "vit_fmnist_hybrid", "model.layers.late.mixer.heads=2,3", "--dry-run", "--root",
                               (tmp.path / "sweeps").string()},
                              log) == 2);
  const std::string text = testing::slurp(log);
  INFO(text);
  CHECK(text.find("model.layers.late.mixer.heads: layer 2: heads must divide the embedding width: dim 64 is not "
                  "divisible by heads 3") != std::string::npos);
  CHECK(text.find("in 1 of 2 sweep points, e.g. model.layers.late.mixer.heads=3") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp.path / "sweeps"));
  // The same rule in a depth that does not reach the override: the range is refused instead.
  CHECK(testing::run_blocklab({"show", "vit_fmnist_hybrid", "model.depth=2"}, tmp.path / "show.log") == 2);
  CHECK(testing::slurp(tmp.path / "show.log").find("layer 3 is beyond the stack's depth 2") != std::string::npos);
}

TEST_CASE("a staged model (model=hier_small) runs tiny; attn draws each stage on its own grid", "[model]") {
  testing::TempDir tmp;
  const std::string out = (tmp.path / "runs").string();
  REQUIRE(testing::run_blocklab({"run", "vit_fmnist", "model=hier_small", "-q", "output_dir=" + out,
                                 "dataset.limit_train=256", "dataset.limit_test=50", "dataset.val_size=0",
                                 "trainer.batch_size=32", "trainer.epochs=1", "threads=1",
                                 "+model.stack.layers.deep={stage: 1, mixer: {heads: 8}}"},
                                tmp.path / "run.log") == 0);
  fs::path run;
  for (const auto& e : fs::directory_iterator(fs::path(out) / "vit_fmnist")) run = e.path();
  const int status = testing::run_blocklab({"attn", run.string(), "--samples", "0"}, tmp.path / "attn.log");
  INFO(testing::slurp(tmp.path / "attn.log"));
  REQUIRE(status == 0);
  std::vector<std::int64_t> shape;
  read_npy_f32((run / "attn/arrays/probs_layer1.npy").string(), shape);
  CHECK(shape == std::vector<std::int64_t>{1, 4, 196, 196});  // stage 0: 14x14 tokens, softmax's 4 heads
  read_npy_f32((run / "attn/arrays/probs_layer2.npy").string(), shape);
  CHECK(shape == std::vector<std::int64_t>{1, 8, 49, 49});  // stage 1: 7x7 tokens, the override's 8 heads
  read_npy_f32((run / "attn/arrays/mixing_test0_layer3.npy").string(), shape);
  CHECK(shape == std::vector<std::int64_t>{49, 49});
  CHECK(fs::exists(run / "attn/test0_layer3_heads.png"));
  CHECK_FALSE(fs::exists(run / "attn/test0_rollout.png"));  // no rollout across resolutions
}

}  // namespace BLOCKLAB_TEST_FILE
