// image/sequential-fmnist: fashion-mnist's images flattened row-major into 784 pixel tokens,
// with fashion-mnist's labels, splits, plan and file errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "datasets/sequential_fmnist.h"
#include "golden.h"
#include "registry/yaml_io.h"

namespace BLOCKLAB_TEST_FILE {

using namespace blocklab;

namespace {

FashionMnistOptions limited() { return FashionMnistOptions().val_size(300).limit_train(500).limit_test(200); }
SequentialFmnistOptions pixels_of(const FashionMnistOptions& images, std::int64_t pool = 1) {
  return SequentialFmnistOptions().images(images).pool(pool);
}

// A `dataset` config of `type` whose root was set on the command line.
ConfigNode with_root(const std::string& type, const std::string& root) {
  ConfigNode node = ConfigNode::map();
  node.set("type", ConfigNode::string(type));
  node.set("root", ConfigNode::string(root, Source::command_line("dataset.root=" + root)));
  return node;
}

}  // namespace

TEST_CASE("sequential-fmnist: a sequence is its fashion-mnist image read row by row", "[seqcls]") {
  const FashionMnist images(limited());
  const SequentialFmnist pixels(pixels_of(limited()));
  const DatasetInfo info = pixels.info();
  CHECK(info.task == "classification");
  CHECK(info.length == 784);
  CHECK(info.vocabulary == 256);
  CHECK(info.num_classes == 10);
  CHECK(info.class_names == images.info().class_names);
  for (const char* split : {"train", "val", "test"}) {
    INFO(split);
    const Split& image = images.split(split);
    const Split& sequence = pixels.split(split);
    REQUIRE(sequence.inputs.sizes() == torch::IntArrayRef{image.size(), 784});
    CHECK(!sequence.lengths.defined());  // every sequence is whole
    CHECK(torch::equal(sequence.targets, image.targets));
    // Token r * 28 + c is pixel (r, c), for every pixel of a few images.
    for (std::int64_t i : {std::int64_t{0}, image.size() / 2, image.size() - 1}) {
      const torch::Tensor image_i = image.inputs[i][0], sequence_i = sequence.inputs[i];
      const auto img = image_i.accessor<std::uint8_t, 2>();
      const auto seq = sequence_i.accessor<std::uint8_t, 1>();
      bool same = true;
      for (int r = 0; r < 28; ++r)
        for (int c = 0; c < 28; ++c) same = same && seq[r * 28 + c] == img[r][c];
      CHECK(same);
    }
  }
  CHECK(pixels.split("train").size() == 500);
  CHECK(pixels.split("val").size() == 300);
  // Model inputs are the intensities as int64 ids, never augmented or normalised.
  const torch::Tensor raw = pixels.split("train").inputs.slice(0, 0, 8);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(3);
  CHECK(torch::equal(pixels.prepare(raw, &generator), raw.to(torch::kLong)));
  CHECK(pixels.prepare(raw, nullptr).max().item<std::int64_t>() < 256);
  CHECK_THROWS_AS(pixels.split("tset"), ConfigError);
}

TEST_CASE("sequential-fmnist: fashion-mnist's options, plan and fingerprint", "[seqcls]") {
  const EntryInfo& entry = dataset_registry().info("image/sequential-fmnist");
  CHECK(entry.schema.names() ==
        std::vector<std::string>{"root", "val_size", "split_seed", "limit_train", "limit_test", "pool"});
  const ConfigNode node =
      parse_yaml("{type: image/sequential-fmnist, val_size: 100, limit_train: 300, limit_test: 50}", "t.yaml");
  const std::optional<DatasetPlan> plan = plan_dataset(node);
  REQUIRE(plan);
  const auto data = dataset_registry().create(node, DatasetArgs{});
  for (const char* split : {"train", "val", "test"}) CHECK(plan->split_sizes.at(split) == data->split(split).size());
  CHECK(plan->info.length == 784);
  CHECK(plan->info.vocabulary == 256);
  // Augmentation is not an option here.
  const ConfigNode augmented = parse_yaml("{type: image/sequential-fmnist, augment: flip}", "t.yaml");
  CHECK(testing::error_text([&] { dataset_registry().create(augmented, DatasetArgs{}); }).find("dataset.augment") !=
        std::string::npos);

  const SequentialFmnist base(pixels_of(limited()));
  CHECK(base.fingerprint() != FashionMnist(limited()).fingerprint());
  CHECK(base.fingerprint() == SequentialFmnist(pixels_of(limited())).fingerprint());
  CHECK(base.fingerprint() != SequentialFmnist(pixels_of(limited().split_seed(1))).fingerprint());
  CHECK(base.fingerprint() != SequentialFmnist(pixels_of(limited(), 2)).fingerprint());
}

TEST_CASE("sequential-fmnist: pool k reads the image's k x k block means, (28/k)^2 tokens", "[seqcls]") {
  const FashionMnist images(limited());
  const SequentialFmnist pooled(pixels_of(limited(), 2));
  CHECK(pooled.info().length == 196);
  const ConfigNode node =
      parse_yaml("{type: image/sequential-fmnist, pool: 4, limit_train: 30, limit_test: 5}", "t.yaml");
  REQUIRE(plan_dataset(node));
  CHECK(plan_dataset(node)->info.length == 49);
  CHECK(dataset_registry().create(node, DatasetArgs{})->split("train").inputs.size(1) == 49);
  for (const char* split : {"train", "test"}) {
    INFO(split);
    const Split& image = images.split(split);
    const Split& sequence = pooled.split(split);
    REQUIRE(sequence.inputs.sizes() == torch::IntArrayRef{image.size(), 196});
    CHECK(torch::equal(sequence.targets, image.targets));
    // Token r * 14 + c is the rounded mean of pixels (2r..2r+1, 2c..2c+1), for a few images.
    for (std::int64_t i : {std::int64_t{0}, image.size() - 1}) {
      const torch::Tensor image_i = image.inputs[i][0];
      const auto img = image_i.accessor<std::uint8_t, 2>();
      const torch::Tensor sequence_i = sequence.inputs[i];
      const auto seq = sequence_i.accessor<std::uint8_t, 1>();
      bool same = true;
      for (int r = 0; r < 14; ++r)
        for (int c = 0; c < 14; ++c) {
          const double mean =
              (img[2 * r][2 * c] + img[2 * r][2 * c + 1] + img[2 * r + 1][2 * c] + img[2 * r + 1][2 * c + 1]) / 4.0;
          same = same && seq[r * 14 + c] == static_cast<std::uint8_t>(std::nearbyint(mean));
        }
      CHECK(same);
    }
  }
  // A block side that does not divide 28 names the option and the sides that do.
  const ConfigNode bad = parse_yaml("{type: image/sequential-fmnist, pool: 3}", "t.yaml");
  const std::string text = testing::error_text([&] { dataset_registry().create(bad, DatasetArgs{}); });
  CHECK(text.find("dataset.pool") != std::string::npos);
  CHECK(text.find("2 (196)") != std::string::npos);
}

TEST_CASE("sequential-fmnist: missing files give fashion-mnist's message, naming the package", "[seqcls]") {
  const std::string root = "/nonexistent/fmnist";
  const std::string text = testing::error_text(
      [&] { dataset_registry().create(with_root("image/sequential-fmnist", root), DatasetArgs{}); });
  CHECK(text ==
        testing::error_text([&] { dataset_registry().create(with_root("fashion-mnist", root), DatasetArgs{}); }));
  CHECK(text.find("apt-get install dataset-fashion-mnist") != std::string::npos);
  CHECK(text.find(root + "/train-images-idx3-ubyte.gz: file is missing") != std::string::npos);
}

}  // namespace BLOCKLAB_TEST_FILE
