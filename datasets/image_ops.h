// Image batch operations shared by image datasets: conversion to normalised floats and the
// standard random crop + horizontal flip augmentation, vectorised over the batch.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace blocklab {

// uint8 images [B, C, H, W] -> float32 x / 255, then (x - mean[c]) / std[c] per channel
// (mean and std hold one value per channel, or are both empty for no normalisation).
torch::Tensor to_float_images(const torch::Tensor& images, const std::vector<double>& mean,
                              const std::vector<double>& std);

// Per-sample random crop after zero padding (as torchvision's RandomCrop(size, padding)):
// each image [C, H, W] is padded by `padding` zeros on every side and an H x W window is taken
// at an offset drawn uniformly from 0..2*padding per axis; then, when `flip`, the window is
// mirrored left-right with probability 1/2. Everything is drawn from `generator` (row offsets,
// column offsets, flips: B values each, in that order). Same shape and dtype as `images`; one
// gather over the padded batch, no per-sample loop.
torch::Tensor random_crop_flip(const torch::Tensor& images, std::int64_t padding, bool flip,
                               torch::Generator& generator);

}  // namespace blocklab
