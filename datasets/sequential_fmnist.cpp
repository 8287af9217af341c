#include "datasets/sequential_fmnist.h"

#include "datasets/dataset_options.h"

namespace blocklab {
namespace {

constexpr std::int64_t kImageSide = 28;

// A split of images [N, 1, 28, 28] as pixel sequences [N, (28/pool)^2], row-major; pool > 1
// averages pool x pool blocks first, rounded half to even.
Split flattened(const Split& images, std::int64_t pool) {
  torch::Tensor pixels = images.inputs;
  if (pool > 1) pixels = torch::avg_pool2d(pixels.to(torch::kFloat64), pool, pool).round_().to(torch::kUInt8);
  return Split{pixels.flatten(1), images.targets, {}};
}

std::int64_t checked_pool(std::int64_t pool) {
  check_dataset_option_range(sequential_fmnist_schema(), "pool", pool);
  if (kImageSide % pool != 0)
    throw ConfigError("pool " + std::to_string(pool) + " does not divide the 28-pixel side", {}, "dataset.pool",
                      {"use 1 (784 tokens), 2 (196), 4 (49), 7 (16) or 14 (4)"});
  return pool;
}

}  // namespace

const Schema& sequential_fmnist_schema() {
  static const Schema schema = [] {
    Schema s = fashion_mnist_split_schema().schema();
    ParamSpec& pool = s.add_int("pool", SequentialFmnistOptions().pool(),
                                "average pool x pool pixel blocks first: (28/pool)^2 tokens; divides 28");
    pool.min = 1;
    pool.max = kImageSide;
    return s;
  }();
  return schema;
}

SequentialFmnistOptions bind_sequential_fmnist(const ConfigNode& params) {
  ConfigNode values = validated_dataset_options(sequential_fmnist_schema(), params);
  const std::int64_t pool = ParamReader(values, sequential_fmnist_schema(), "dataset").get_int("pool");
  values.erase("pool");
  return SequentialFmnistOptions().images(fashion_mnist_split_schema().bind(values, "dataset")).pool(pool);
}

DatasetInfo sequential_fmnist_info(std::int64_t pool) {
  const DatasetInfo images = fashion_mnist_info();
  DatasetInfo info;
  info.length = (images.height / pool) * (images.width / pool);
  info.vocabulary = 256;
  info.num_classes = images.num_classes;
  info.class_names = images.class_names;
  return info;
}

SequentialFmnist::SequentialFmnist(SequentialFmnistOptions options, Source root_source)
    : pool_(checked_pool(options.pool())),
      images_(options.images().augment("none").normalize(false), std::move(root_source)),
      train_(flattened(images_.split("train"), pool_)),
      val_(flattened(images_.split("val"), pool_)),
      test_(flattened(images_.split("test"), pool_)) {}

std::string SequentialFmnist::fingerprint() const {
  return "sequential-" + (pool_ > 1 ? "pool" + std::to_string(pool_) + "-" : std::string()) + images_.fingerprint();
}

const Split& SequentialFmnist::split(const std::string& name) const {
  if (name == "train") return train_;
  if (name == "val") return val_;
  if (name == "test") return test_;
  throw_unknown_split("image/sequential-fmnist", name);
}

namespace {

DatasetPlan plan_sequential_fmnist(const ConfigNode& params) {
  const SequentialFmnistOptions options = bind_sequential_fmnist(params);
  DatasetPlan plan = plan_fashion_mnist_splits(options.images());
  plan.info = sequential_fmnist_info(checked_pool(options.pool()));
  return plan;
}
[[maybe_unused]] const bool BLOCKLAB_UNIQUE(planner_registered_) = register_dataset_planner("image/sequential-fmnist",
                                                                                            plan_sequential_fmnist);

BLOCKLAB_REGISTER(dataset_registry(),
                  BLOCKLAB_ENTRY("image/sequential-fmnist")
                      .summary("Fashion-MNIST pixel by pixel: 784 tokens (8-bit intensities; 196 at pool 2), "
                               "10 classes")
                      .paper("Long Range Arena: A Benchmark for Efficient Transformers (Tay et al. 2021), "
                             "arXiv:2011.04006 (the Image task); Fashion-MNIST (Xiao et al. 2017), arXiv:1708.07747")
                      .equation("x = flatten_row_major(round(avg_pool_k(pixels))) in {0..255}^((28/k)^2), y = class")
                      .schema(sequential_fmnist_schema())
                      .example("{limit_train: 64, limit_test: 16, val_size: 16}"),
                  [](const ConfigNode& params, const DatasetArgs&) -> std::shared_ptr<Dataset> {
                    const ConfigNode* root = params.find("root");
                    return std::make_shared<SequentialFmnist>(bind_sequential_fmnist(params),
                                                              root ? root->source() : Source{});
                  });

}  // namespace
}  // namespace blocklab
