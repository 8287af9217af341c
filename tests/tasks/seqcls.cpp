// task seqcls: padding does not change what the encoder of the listops experiment predicts, and
// the listops and sfmnist experiments run end to end with their metrics. (The loop's contract
// for seqcls runs in tests/tasks/loop_contract.cpp.)
#include <catch2/catch.hpp>

#include "datasets/synthetic/listops.h"
#include "experiments/experiment.h"
#include "experiments/model_builder.h"
#include "tests/process_support.h"
#include "tests/tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
using namespace blocklab::testing;
namespace fs = std::filesystem;

namespace {

bool close(const torch::Tensor& a, const torch::Tensor& b) { return torch::allclose(a, b, 1e-5, 1e-5); }

}  // namespace

TEST_CASE("seqcls: padded positions do not change the prediction of the listops encoder", "[seqcls]") {
  const Experiment e =
      load_experiment(default_config_dir(), "listops",
                      {"model.dim=32", "model.stack.depth=2", "dataset.min_length=8", "dataset.max_length=48"});
  torch::manual_seed(3);
  const Network model =
      build_model(*e.config.find("model"), *e.config.find("head"), listops_info(ListOpsOptions().max_length(48)));
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor lengths = torch::tensor({30, 17, 5}, torch::kLong);
  const torch::Tensor valid = torch::arange(30).unsqueeze(0).lt(lengths.unsqueeze(1));
  const torch::Tensor ids = torch::randint(1, kListOpsVocabulary, {3, 30}, torch::kLong) * valid;  // pad: 0
  const torch::Tensor logits = model->forward(ids, nullptr, lengths);

  // More padding at the end, or anything at all in the padded positions: the same logits.
  const torch::Tensor padded = torch::cat({ids, torch::zeros({3, 18}, torch::kLong)}, 1);
  CHECK(close(model->forward(padded, nullptr, lengths), logits));
  const torch::Tensor noise = torch::randint(1, kListOpsVocabulary, {3, 48}, torch::kLong);
  const torch::Tensor scribbled = torch::where(torch::arange(48).unsqueeze(0).lt(lengths.unsqueeze(1)), padded, noise);
  CHECK_FALSE(torch::equal(scribbled, padded));
  CHECK(close(model->forward(scribbled, nullptr, lengths), logits));
  // Each sequence alone, without padding.
  for (std::int64_t i = 0; i < 3; ++i)
    CHECK(close(model->forward(ids.slice(0, i, i + 1).slice(1, 0, lengths[i].item<std::int64_t>())), logits[i]));
  // The lengths are what makes this so: read as whole sequences, the padded ones predict otherwise.
  CHECK_FALSE(close(model->forward(padded).slice(0, 1), logits.slice(0, 1)));
}

TEST_CASE("seqcls: the listops and sfmnist experiments train, validate and test on sequences", "[seqcls]") {
  TempDir tmp;
  const auto args = tiny_listops_overrides();
  std::vector<std::string> listops = {"run", "listops", "-q", "output_dir=" + (tmp.path / "a").string()};
  listops.insert(listops.end(), args.begin(), args.end());
  REQUIRE(run_blocklab(listops, tmp.path / "a.log") == 0);
  const fs::path dir = run_dir(tmp.path / "a", "listops");
  CHECK(summary_field(dir, "steps") == "48");
  CHECK(!summary_field(dir, "best/val_acc").empty());
  CHECK(!summary_field(dir, "train_sequences_per_s").empty());
  const std::string metrics = slurp(dir / "metrics.jsonl");
  CHECK(metrics.find("\"test/acc\": ") != std::string::npos);

  const std::vector<std::string> sfmnist = {"run",
                                            "sfmnist",
                                            "-q",
                                            "output_dir=" + (tmp.path / "s").string(),
                                            "model.dim=16",
                                            "model.stack.depth=1",
                                            "model.mixer.heads=2",
                                            "dataset.limit_train=64",
                                            "dataset.val_size=32",
                                            "dataset.limit_test=32",
                                            "trainer.batch_size=16",
                                            "trainer.epochs=1",
                                            "trainer.eval_batch_size=32",
                                            "threads=1"};
  REQUIRE(run_blocklab(sfmnist, tmp.path / "s.log") == 0);
  const fs::path s = run_dir(tmp.path / "s", "sfmnist");
  CHECK(summary_field(s, "steps") == "4");
  CHECK(!summary_field(s, "best/val_acc").empty());
}

}  // namespace BLOCKLAB_TEST_FILE
