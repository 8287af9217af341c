// image/sequential-fmnist: Fashion-MNIST read pixel by pixel as a sequence of 784 tokens, the
// idea of Long Range Arena's "Image" task (Tay et al. 2021, arXiv:2011.04006, §3.4: CIFAR-10
// as 1,024 gray-level tokens; pixel-by-pixel MNIST goes back to Le, Jaitly, Hinton 2015,
// arXiv:1504.00941) on the images that are installed here (Xiao et al. 2017, arXiv:1708.07747).
//
// The images, labels and splits are fashion-mnist's (same files, val_size, split_seed,
// limit_train, limit_test; datasets/fashion_mnist.h); an image is flattened row-major, and a
// token id is a pixel's 8-bit intensity (vocabulary 256). No augmentation, no normalisation.
// Inputs uint8 [N, 784]; prepare() gives int64 ids [B, 784]; every sequence is full length.
// pool = k > 1 first averages k x k pixel blocks (rounded to the nearest intensity): (28/k)^2
// tokens, e.g. 196 at k = 2, for sequence models whose budget does not reach 784 steps.
#pragma once

#include "datasets/fashion_mnist.h"

namespace blocklab {

struct SequentialFmnistOptions {
  TORCH_ARG(FashionMnistOptions, images);  // which images and splits (fashion_mnist_split_schema())
  TORCH_ARG(std::int64_t, pool) = 1;       // side of the averaged pixel blocks; divides 28
};

// fashion_mnist_split_schema()'s options and `pool`.
const Schema& sequential_fmnist_schema();
// The options of a validated `dataset` config.
SequentialFmnistOptions bind_sequential_fmnist(const ConfigNode& params);

// (28/pool)^2 tokens, vocabulary 256, fashion-mnist's 10 classes.
DatasetInfo sequential_fmnist_info(std::int64_t pool = 1);

class SequentialFmnist : public Dataset {
 public:
  // The images' augment and normalize do not apply. Missing or damaged files: fashion-mnist's
  // errors; a pool that does not divide 28: ConfigError at dataset.pool.
  explicit SequentialFmnist(SequentialFmnistOptions options, Source root_source = {});

  DatasetInfo info() const override { return sequential_fmnist_info(pool_); }
  const Split& split(const std::string& name) const override;
  torch::Tensor prepare(const torch::Tensor& raw, torch::Generator*) const override { return raw.to(torch::kLong); }
  std::string fingerprint() const override;

 private:
  std::int64_t pool_;
  FashionMnist images_;
  Split train_, val_, test_;
};

}  // namespace blocklab
