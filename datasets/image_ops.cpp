#include "datasets/image_ops.h"

namespace blocklab {

torch::Tensor to_float_images(const torch::Tensor& images, const std::vector<double>& mean,
                              const std::vector<double>& std) {
  TORCH_CHECK(images.dim() == 4 && images.scalar_type() == torch::kUInt8, "expected uint8 images [B, C, H, W], got ",
              images.sizes(), " ", images.scalar_type());
  TORCH_CHECK(mean.size() == std.size() && (mean.empty() || static_cast<std::int64_t>(mean.size()) == images.size(1)),
              "need one mean and one std per channel");
  torch::Tensor x = images.to(torch::kFloat32).div_(255.0);
  if (mean.empty()) return x;
  const auto channel = [&](const std::vector<double>& v) {
    return torch::tensor(v, torch::kFloat32).view({1, -1, 1, 1}).to(images.device());
  };
  return x.sub_(channel(mean)).div_(channel(std));
}

torch::Tensor random_crop_flip(const torch::Tensor& images, std::int64_t padding, bool flip,
                               torch::Generator& generator) {
  TORCH_CHECK(images.dim() == 4, "expected images [B, C, H, W], got ", images.sizes());
  TORCH_CHECK(padding >= 0, "padding must be >= 0");
  const std::int64_t b = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const std::int64_t padded_w = w + 2 * padding;
  const auto longs = torch::TensorOptions().dtype(torch::kLong);

  // Window origin in the padded image, per sample (padding, padding = no shift).
  const torch::Tensor top = torch::randint(0, 2 * padding + 1, {b, 1}, generator, longs);
  const torch::Tensor left = torch::randint(0, 2 * padding + 1, {b, 1}, generator, longs);
  torch::Tensor cols = torch::arange(w, longs).unsqueeze(0);  // [1, W], or [B, W] when flipping
  if (flip) {
    const torch::Tensor mirrored = torch::randint(0, 2, {b, 1}, generator, longs).to(torch::kBool);
    cols = torch::where(mirrored, (w - 1) - cols, cols);
  }
  const torch::Tensor rows = top + torch::arange(h, longs).unsqueeze(0);  // [B, H]
  cols = left + cols;                                                     // [B, W]

  // Flat index of output pixel (i, j) of sample n in its padded plane: rows[n, i] * W' + cols[n, j].
  const torch::Tensor index =
      (rows.unsqueeze(2) * padded_w + cols.unsqueeze(1)).view({b, 1, h * w}).expand({b, c, h * w}).to(images.device());
  const torch::Tensor padded = torch::constant_pad_nd(images, {padding, padding, padding, padding}, 0);
  return padded.reshape({b, c, (h + 2 * padding) * padded_w}).gather(2, index).view({b, c, h, w});
}

}  // namespace blocklab
