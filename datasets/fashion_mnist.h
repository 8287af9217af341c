// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747): 28x28 grayscale photos of
// Zalando articles in 10 classes, 60,000 for training and 10,000 for testing, shipped as four
// gzip-compressed IDX files (see idx_file.h) in the layout of MNIST, which it replaces.
//
// Splits: "train" (the 60k training images minus a seeded validation hold-out), "val" (the
// hold-out, val_size images) and "test" (the 10k test images). Inputs are uint8 [N, 1, 28, 28],
// targets int64 [N]. prepare() scales to [0, 1], normalises with the training mean and std,
// and when training augments with a random crop (zero padding) and horizontal flip.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

#include "datasets/dataset.h"
#include "registry/options_schema.h"

namespace blocklab {

struct FashionMnistOptions {
  TORCH_ARG(std::string, root) = "/usr/share/datasets/fashion-mnist";
  TORCH_ARG(std::int64_t, val_size) = 5000;
  TORCH_ARG(std::int64_t, split_seed) = 0;
  TORCH_ARG(std::string, augment) = "crop-flip";
  TORCH_ARG(std::int64_t, crop_padding) = 2;
  TORCH_ARG(bool, normalize) = true;
  TORCH_ARG(std::int64_t, limit_train) = 0;
  TORCH_ARG(std::int64_t, limit_test) = 0;
};

// The registry parameters (types, defaults, ranges, docs), declared once on the options.
const OptionsSchema<FashionMnistOptions>& fashion_mnist_schema();

// The options that choose the files and the splits (root, val_size, split_seed, limit_train,
// limit_test), without augmentation and normalisation: for datasets that read the same images
// differently (image/sequential-fmnist).
const OptionsSchema<FashionMnistOptions>& fashion_mnist_split_schema();

// Channels, size, classes and class names (the same for every config).
DatasetInfo fashion_mnist_info();

// The split sizes FashionMnist(options) makes, known without reading the files.
DatasetPlan plan_fashion_mnist_splits(const FashionMnistOptions& options);

class FashionMnist : public Dataset {
 public:
  static constexpr double kMean = 0.2860;  // of the training pixels scaled to [0, 1]
  static constexpr double kStd = 0.3530;

  // Reads the files (once per process while they are unchanged) and splits them. Throws
  // ConfigError for out-of-range options and for a missing or damaged file; file errors point
  // at `root_source`, where the root was configured.
  explicit FashionMnist(FashionMnistOptions options, Source root_source = {});

  DatasetInfo info() const override;
  const Split& split(const std::string& name) const override;
  torch::Tensor prepare(const torch::Tensor& raw, torch::Generator* augment_generator) const override;
  std::string fingerprint() const override;

  // Where each example of a split sits in its source file (train-* or t10k-*), int64 [N].
  const torch::Tensor& file_indices(const std::string& split) const;
  const FashionMnistOptions& options() const { return options_; }

 private:
  enum class Augment { None, Crop, CropFlip, Flip };  // the schema's augment choices, in order
  struct Part {
    Split split;
    torch::Tensor file_indices;
  };
  const Part& part(const std::string& name) const;

  FashionMnistOptions options_;
  Augment augment_ = Augment::CropFlip;
  Part train_, val_, test_;
  std::string fingerprint_;
};

}  // namespace blocklab
