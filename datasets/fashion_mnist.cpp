#include "datasets/fashion_mnist.h"

#include <algorithm>
#include <array>

#include "datasets/dataset_options.h"
#include "datasets/idx_file.h"
#include "datasets/image_ops.h"
#include "registry/suggest.h"

namespace blocklab {

namespace {

constexpr std::int64_t kTrainCount = 60000, kTestCount = 10000, kSide = 28, kClasses = 10;
constexpr std::uint64_t kSplitSalt = 0xf4a5;  // derive_seed label of the train/val permutation
const char* const kPackage = "dataset-fashion-mnist";

// The four files of the release (README of github.com/zalandoresearch/fashion-mnist), in the
// order they are read and hashed.
struct FileSpec {
  const char* name;
  IdxExpectation expect;
};
const std::array<FileSpec, 4>& file_specs() {
  static const std::array<FileSpec, 4> specs{{
      {"train-images-idx3-ubyte.gz", {{kTrainCount, kSide, kSide}, "image data"}},
      {"train-labels-idx1-ubyte.gz", {{kTrainCount}, "label data"}},
      {"t10k-images-idx3-ubyte.gz", {{kTestCount, kSide, kSide}, "image data"}},
      {"t10k-labels-idx1-ubyte.gz", {{kTestCount}, "label data"}},
  }};
  return specs;
}

std::string file_path(const std::string& root, const FileSpec& spec) {
  return root + (root.empty() || root.back() == '/' ? "" : "/") + spec.name;
}

// Labels are class indices 0..9; anything else means a damaged or foreign file.
torch::Tensor checked_labels(const torch::Tensor& labels, const std::string& file, const IdxErrorContext& context) {
  const torch::Tensor bad = (labels >= kClasses).nonzero();
  if (bad.size(0) > 0) {
    const std::int64_t at = bad[0][0].item<std::int64_t>();
    throw ConfigError(file + " holds label " + std::to_string(labels[at].item<int>()) + " at position " +
                          std::to_string(at) + "; Fashion-MNIST labels are 0.." + std::to_string(kClasses - 1),
                      context.where, context.path, context.damaged);
  }
  return labels.to(torch::kLong);
}

// The four files, decoded and checked.
struct Files {
  torch::Tensor train_images, test_images;  // uint8 [N, 1, 28, 28]
  torch::Tensor train_labels, test_labels;  // int64 [N], in 0..9
  std::uint64_t hash = kFnv1aOffset;        // FNV-1a of the four files' FNV-1a hashes
};

Files read_files(const std::string& root, const IdxErrorContext& context) {
  std::array<torch::Tensor, 4> data;
  Files files;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const FileSpec& spec = file_specs()[i];
    const IdxFile f = read_idx_gz_cached(file_path(root, spec), spec.expect, context);
    data[i] = f.data;
    files.hash = fnv1a(&f.fnv1a, sizeof f.fnv1a, files.hash);
  }
  // Each file's count was checked against the release, so images and labels agree in number.
  files.train_images = data[0].unsqueeze(1);
  files.train_labels = checked_labels(data[1], file_path(root, file_specs()[1]), context);
  files.test_images = data[2].unsqueeze(1);
  files.test_labels = checked_labels(data[3], file_path(root, file_specs()[3]), context);
  return files;
}

// Throws ConfigError when an integer option is outside the range its schema declares.
void check_range(const std::string& name, std::int64_t value) {
  check_dataset_option_range(fashion_mnist_schema().schema(), name, value);
}

using FashionSchema = OptionsSchema<FashionMnistOptions>;

// Which files, and how the 60k training images split into train and val.
void add_source_options(FashionSchema& s) {
  BLOCKLAB_OPTION(s, root, "directory holding the four Fashion-MNIST .gz IDX files");
  auto& val = BLOCKLAB_OPTION(s, val_size, "training images held out as the val split (seeded); 0 = none");
  val.min = 0;
  val.max = kTrainCount - 1;
  auto& seed =
      BLOCKLAB_OPTION(s, split_seed, "seed of the train/val split and of the train order that limit_train cuts");
  seed.min = 0;
}

// Smaller splits, for quick checks.
void add_limit_options(FashionSchema& s) {
  auto& limit_train = BLOCKLAB_OPTION(s, limit_train, "keep the first N of the seeded train split; 0 = all");
  limit_train.min = 0;
  limit_train.max = kTrainCount;
  auto& limit_test = BLOCKLAB_OPTION(s, limit_test, "keep the first N test images; 0 = all");
  limit_test.min = 0;
  limit_test.max = kTestCount;
}

}  // namespace

const OptionsSchema<FashionMnistOptions>& fashion_mnist_schema() {
  static const FashionSchema schema = [] {
    FashionSchema s;
    add_source_options(s);
    s.choice(
        "augment", {"none", "crop", "crop-flip", "flip"},
        "training augmentation: random crop with zero padding (crop), plus a horizontal flip (crop-flip), "
        "or the flip alone (flip)",
        [](FashionMnistOptions& o, const std::string& v) { o.augment(v); },
        [](const FashionMnistOptions& o) { return o.augment(); });
    auto& pad = BLOCKLAB_OPTION(s, crop_padding, "zero padding on each side before the random crop, in pixels");
    pad.min = 0;
    pad.max = kSide / 2;
    BLOCKLAB_OPTION(s, normalize, "normalise as (x/255 - 0.2860)/0.3530, the training mean and std");
    add_limit_options(s);
    return s;
  }();
  return schema;
}

const OptionsSchema<FashionMnistOptions>& fashion_mnist_split_schema() {
  static const FashionSchema schema = [] {
    FashionSchema s;
    add_source_options(s);
    add_limit_options(s);
    return s;
  }();
  return schema;
}

FashionMnist::FashionMnist(FashionMnistOptions options, Source root_source) : options_(std::move(options)) {
  check_range("val_size", options_.val_size());
  check_range("split_seed", options_.split_seed());
  check_range("crop_padding", options_.crop_padding());
  check_range("limit_train", options_.limit_train());
  check_range("limit_test", options_.limit_test());
  const std::vector<std::string>& modes = fashion_mnist_schema().schema().find("augment")->choices;
  const auto mode = std::find(modes.begin(), modes.end(), options_.augment());
  if (mode == modes.end())
    throw ConfigError("unknown augmentation '" + options_.augment() + "'", {}, "dataset.augment",
                      {"choose one of: " + join_names(modes)});
  augment_ = static_cast<Augment>(mode - modes.begin());  // the enum lists the choices in order

  const std::string install = " (or set dataset.root)";
  const IdxErrorContext context{std::move(root_source),
                                "dataset.root",
                                {std::string("install it with: apt-get install ") + kPackage + install},
                                {std::string("reinstall it with: apt-get install --reinstall ") + kPackage + install}};
  const Files files = read_files(options_.root(), context);

  // The train/val split: a seeded permutation of the 60k training images; val is its head.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(
      derive_seed(static_cast<std::uint64_t>(options_.split_seed()), kSplitSalt));
  const torch::Tensor order = torch::randperm(kTrainCount, generator, torch::kLong);
  torch::Tensor train = order.slice(0, options_.val_size());
  if (options_.limit_train() > 0) train = train.slice(0, 0, options_.limit_train());
  torch::Tensor test = torch::arange(kTestCount, torch::kLong);
  if (options_.limit_test() > 0) test = test.slice(0, 0, options_.limit_test());

  const auto make_part = [](const torch::Tensor& images, const torch::Tensor& labels, const torch::Tensor& indices) {
    const torch::Tensor idx = indices.contiguous();
    return Part{Split{images.index_select(0, idx), labels.index_select(0, idx), {}}, idx};
  };
  train_ = make_part(files.train_images, files.train_labels, train);
  val_ = make_part(files.train_images, files.train_labels, order.slice(0, 0, options_.val_size()));
  test_ = make_part(files.test_images, files.test_labels, test);

  const std::string split_text =
      "val_size=" + std::to_string(options_.val_size()) + ";split_seed=" + std::to_string(options_.split_seed()) +
      ";limit_train=" + std::to_string(options_.limit_train()) + ";limit_test=" + std::to_string(options_.limit_test());
  fingerprint_ = fingerprint_hex(fnv1a(split_text.data(), split_text.size(), files.hash));
}

DatasetInfo FashionMnist::info() const { return fashion_mnist_info(); }

DatasetInfo fashion_mnist_info() {
  DatasetInfo info;
  info.channels = 1;
  info.height = info.width = kSide;
  info.num_classes = kClasses;
  info.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return info;
}

const FashionMnist::Part& FashionMnist::part(const std::string& name) const {
  return part_by_name("fashion-mnist", name, train_, val_, test_);
}

const Split& FashionMnist::split(const std::string& name) const { return part(name).split; }

const torch::Tensor& FashionMnist::file_indices(const std::string& name) const { return part(name).file_indices; }

torch::Tensor FashionMnist::prepare(const torch::Tensor& raw, torch::Generator* augment_generator) const {
  torch::Tensor images = raw;
  if (augment_generator && augment_ != Augment::None)
    images = random_crop_flip(raw, augment_ == Augment::Flip ? 0 : options_.crop_padding(),
                              augment_ == Augment::CropFlip || augment_ == Augment::Flip, *augment_generator);
  return options_.normalize() ? to_float_images(images, {kMean}, {kStd}) : to_float_images(images, {}, {});
}

std::string FashionMnist::fingerprint() const { return fingerprint_; }

DatasetPlan plan_fashion_mnist_splits(const FashionMnistOptions& o) {
  const std::int64_t train = kTrainCount - o.val_size();
  DatasetPlan plan{fashion_mnist_info(), {}};
  plan.more_data_hint = "more training data: dataset.limit_train (0 = all), a smaller dataset.val_size";
  plan.train_size_option = "limit_train";
  plan.split_sizes["train"] = o.limit_train() > 0 ? std::min(o.limit_train(), train) : train;
  plan.split_sizes["val"] = o.val_size();
  plan.split_sizes["test"] = o.limit_test() > 0 ? std::min(o.limit_test(), kTestCount) : kTestCount;
  return plan;
}

namespace {

// The options of a `dataset` config, validated against the schema.
FashionMnistOptions bind_fashion_mnist(const ConfigNode& params) {
  return bind_dataset_options(fashion_mnist_schema(), params);
}

std::shared_ptr<Dataset> make_fashion_mnist(const ConfigNode& params, const DatasetArgs&) {
  const ConfigNode* root = params.find("root");
  return std::make_shared<FashionMnist>(bind_fashion_mnist(params), root ? root->source() : Source{});
}

DatasetPlan plan_fashion_mnist(const ConfigNode& params) {
  return plan_fashion_mnist_splits(bind_fashion_mnist(params));
}
[[maybe_unused]] const bool BLOCKLAB_UNIQUE(planner_registered_) = register_dataset_planner("fashion-mnist",
                                                                                            plan_fashion_mnist);

BLOCKLAB_REGISTER(dataset_registry(),
                  BLOCKLAB_ENTRY("fashion-mnist")
                      .summary("Fashion-MNIST: 28x28 grayscale Zalando articles, 10 classes, 60k train / 10k test")
                      .paper("Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms "
                             "(Xiao, Rasul, Vollgraf 2017), arXiv:1708.07747")
                      .equation("input = (crop_flip(pixels) / 255 - 0.2860) / 0.3530")
                      .schema(fashion_mnist_schema().schema())
                      .example("{}"),
                  make_fashion_mnist);

}  // namespace
}  // namespace blocklab
