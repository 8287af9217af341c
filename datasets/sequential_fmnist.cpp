#include "datasets/sequential_fmnist.h"

#include "datasets/dataset_options.h"

namespace blocklab {
namespace {

// A split of images [N, 1, 28, 28] as pixel sequences [N, 784] (a view: row-major).
Split flattened(const Split& images) { return Split{images.inputs.flatten(1), images.targets, {}}; }

}  // namespace

DatasetInfo sequential_fmnist_info() {
  const DatasetInfo images = fashion_mnist_info();
  DatasetInfo info;
  info.length = images.height * images.width;
  info.vocabulary = 256;
  info.num_classes = images.num_classes;
  info.class_names = images.class_names;
  return info;
}

SequentialFmnist::SequentialFmnist(FashionMnistOptions options, Source root_source)
    : images_(options.augment("none").normalize(false), std::move(root_source)),
      train_(flattened(images_.split("train"))),
      val_(flattened(images_.split("val"))),
      test_(flattened(images_.split("test"))) {}

const Split& SequentialFmnist::split(const std::string& name) const {
  if (name == "train") return train_;
  if (name == "val") return val_;
  if (name == "test") return test_;
  throw_unknown_split("image/sequential-fmnist", name);
}

namespace {

DatasetPlan plan_sequential_fmnist(const ConfigNode& params) {
  DatasetPlan plan = plan_fashion_mnist_splits(bind_dataset_options(fashion_mnist_split_schema(), params));
  plan.info = sequential_fmnist_info();
  return plan;
}
[[maybe_unused]] const bool planner_registered =
    register_dataset_planner("image/sequential-fmnist", plan_sequential_fmnist);

BLOCKLAB_REGISTER(dataset_registry(),
                  BLOCKLAB_ENTRY("image/sequential-fmnist")
                      .summary("Fashion-MNIST pixel by pixel: 784 tokens (8-bit intensities), 10 classes")
                      .paper("Long Range Arena: A Benchmark for Efficient Transformers (Tay et al. 2021), "
                             "arXiv:2011.04006 (the Image task); Fashion-MNIST (Xiao et al. 2017), arXiv:1708.07747")
                      .equation("x = flatten_row_major(pixels) in {0..255}^784, y = class")
                      .schema(fashion_mnist_split_schema().schema())
                      .example("{limit_train: 64, limit_test: 16, val_size: 16}"),
                  [](const ConfigNode& params, const DatasetArgs&) -> std::shared_ptr<Dataset> {
                    const ConfigNode* root = params.find("root");
                    return std::make_shared<SequentialFmnist>(
                        bind_dataset_options(fashion_mnist_split_schema(), params), root ? root->source() : Source{});
                  });

}  // namespace
}  // namespace blocklab
