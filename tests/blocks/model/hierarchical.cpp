// The hierarchical vision backbones of wave 4 (issue 15): MaxViT's MBConv block by its formula,
// and the Swin-, MaxViT- and DaViT-like tiny configs (experiments/conf/model/) end to end: each
// builds and learns a slice of Fashion-MNIST well above chance (`blocklab attn` on staged models:
// tests/blocks/model/test_hybrid_run.cpp).
#include <catch2/catch.hpp>

#include "blocks/backbones/mbconv_block.h"
#include "process_support.h"
#include "tests/blocks/attention/helpers.h"
#include "tiny_run.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;
namespace fs = std::filesystem;

namespace {

// Eval-mode BatchNorm2d by hand.
torch::Tensor bn_eval(const torch::nn::BatchNorm2d& bn, const torch::Tensor& x) {
  const auto shape = std::vector<std::int64_t>{1, -1, 1, 1};
  return (x - bn->running_mean.view(shape)) / torch::sqrt(bn->running_var.view(shape) + 1e-5) * bn->weight.view(shape) +
         bn->bias.view(shape);
}

}  // namespace

TEST_CASE("mbconv: equals MaxViT's MBConv formula from its own weights; prefix tokens pass through", "[model]") {
  torch::manual_seed(3);
  const std::int64_t dim = 8, h = 5, w = 6, prefix = 1;
  MBConvBlock block(dim, /*drop_path=*/0.0, MBConvBlockOptions().expansion(3).se_ratio(0.25));
  block->to(torch::kFloat64);
  attention_tests::randomise_for_by_hand(*block);
  MixerContext ctx;
  ctx.grid_height = h, ctx.grid_width = w, ctx.prefix_tokens = prefix;
  const auto x = torch::randn({2, prefix + h * w, dim}, torch::kFloat64);
  const auto y = block->forward(x, ctx);

  // By hand on the image: pre-BN, expand, BN, GELU, depth-wise 3x3, BN, GELU, SE, project.
  const auto image = x.narrow(1, prefix, h * w).transpose(1, 2).reshape({2, dim, h, w});
  auto t = torch::conv2d(bn_eval(block->pre_norm, image), block->expand->weight);
  t = torch::gelu(bn_eval(block->norm1, t));
  t = torch::conv2d(t, block->depthwise->weight, {}, 1, 1, 1, /*groups=*/3 * dim);
  t = torch::gelu(bn_eval(block->norm2, t));
  const auto squeezed = torch::conv2d(t.mean({2, 3}, true), block->se_reduce->weight, block->se_reduce->bias);
  CHECK(block->se_reduce->weight.size(0) == 2);  // 0.25 x 8
  t = t * torch::sigmoid(torch::conv2d(torch::silu(squeezed), block->se_expand->weight, block->se_expand->bias));
  t = torch::conv2d(t, block->project->weight, block->project->bias);
  const auto expected = image + t;

  CHECK(attention_tests::max_diff(y.narrow(1, prefix, h * w).transpose(1, 2).reshape({2, dim, h, w}), expected) <=
        1e-12);
  CHECK(torch::equal(y.narrow(1, 0, prefix), x.narrow(1, 0, prefix)));
  ctx.causal = true;
  CHECK_THROWS_WITH(block->forward(x, ctx), Catch::Contains("mbconv: a convolution has no causal form"));
}

TEST_CASE("the Swin-, MaxViT- and DaViT-like tiny backbones learn Fashion-MNIST", "[model]") {
  for (const std::string model : {"swin_tiny", "maxvit_tiny", "davit_tiny"}) {
    DYNAMIC_SECTION("model=" << model) {
      testing::TempDir tmp;
      const std::string out = (tmp.path / "runs").string();
      REQUIRE(testing::run_blocklab(
                  {"run", "vit_fmnist", "model=" + model, "-q", "output_dir=" + out, "dataset.limit_train=1024",
                   "dataset.limit_test=200", "dataset.val_size=0", "trainer.batch_size=32", "trainer.epochs=2",
                   "trainer.warmup=0.25", "model.stack.drop_path=0", "threads=1"},
                  tmp.path / "run.log") == 0);
      const fs::path run = testing::run_dir(out);
      const double accuracy = std::stod(testing::summary_field(run, "test/acc"));
      INFO("test accuracy after 64 steps: " << accuracy);
      CHECK(accuracy > 0.25);  // chance 0.1; measured 0.33 (DaViT), 0.36 (Swin), 0.575 (MaxViT)
    }
  }
}

}  // namespace BLOCKLAB_TEST_FILE
