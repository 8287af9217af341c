// block/inception-resnet: Inception-ResNet-v2's residual Inception blocks on the patch grid
// (variant a: Inception-ResNet-A / Block35, b: -B / Block17, c: -C / Block8), and its two grid
// reductions (Reduction-A / Mixed_6a, Reduction-B / Mixed_7a) as plain modules on images.
//
// Paper: "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning"
// (Szegedy, Ioffe, Vanhoucke, Alemi, 2017, arXiv:1602.07261), Fig. 16, 17, 19 (the blocks),
// Fig. 7 + Table 1 and Fig. 18 (the reductions), §3.3 and Fig. 20 (scaling of the residuals):
//   out = act(x + drop_path(s * Conv1x1(concat_i branch_i(x))))          act = ReLU (activation: true)
// Each branch is a chain of BasicConv2d = ReLU(BN(Conv(x))) (conv without bias, BN eps 1e-3); the
// up-projection Conv1x1 has a bias and no BN. Branches at the paper's width C (paper_dim):
//   a (C = 320):  1x1 32 | 1x1 32, 3x3 32 | 1x1 32, 3x3 48, 3x3 64              (concat 128), s = 0.17
//   b (C = 1088): 1x1 192 | 1x1 128, 1x7 160, 7x1 192                         (concat 384), s = 0.10
//   c (C = 2080): 1x1 192 | 1x1 192, 1x3 224, 3x1 256                         (concat 448), s = 0.20
// The widths C and the scales are those of the released TF-slim model (timm's port, the catalog's
// D21): the paper's figures print 1154 and 2048 for the B and C widths and give the scale only as
// "between 0.1 and 0.3". The network ends with one C block at s = 1 without ReLU (residual_scale:
// 1.0, activation: false).
//
// Decision (the catalog is silent): at a width C other than the paper's, every branch width w is
// the paper's fraction of its width rounded to a multiple of 8, at least 8,
//   w(C) = max(8, 8 * round(w_paper * C / (8 * C_paper)))        (halves round up)
// which gives the paper's exact layout at C = C_paper (all its widths are multiples of 8), so
// the weights of timm's Block35/17/8 load as they are (same state-dict names: branch0.conv.weight,
// branch1.0.bn.running_mean, conv2d.bias, ...). All convolutions have stride 1 and "same" padding:
// the block keeps the grid and the width.
// Prefix (class) tokens pass through unchanged (as in block resnet); not causal (it refuses
// ctx.causal); BatchNorm over B x H x W.
//
// The reductions change the width and the grid (3x3 stride 2, valid padding: 35 -> 17 -> 8), so
// they are no `block` (which keeps [B, N, C]) and stack/stages has no registry of downsamplers (and
// halves grids exactly), so they are modules on images, [B, C, H, W] -> [B, C', (H-3)/2+1, (W-3)/2+1],
// for C++ callers and tests; same widths rule (the paper's at C = 320 and 1088):
//   Reduction-A (C = 320):  3x3/2 384 | 1x1 256, 3x3 256, 3x3/2 384 | maxpool 3/2     C' = C + 768 (1088)
//   Reduction-B (C = 1088): 1x1 256, 3x3/2 384 | 1x1 256, 3x3/2 288 | 1x1 256, 3x3 288, 3x3/2 320
//                           | maxpool 3/2                                              C' = C + 992 (2080)
//
// Shape contract (block): x [B, P + H*W, C] with ctx's H x W grid -> the same.
#pragma once

#include <string>
#include <vector>

#include "blocks/interfaces.h"
#include "registry/options_schema.h"

namespace blocklab {

// A branch width of the paper (at its width paper_dim) at width `dim`: the rule above.
std::int64_t inception_branch_width(std::int64_t paper_width, std::int64_t dim, std::int64_t paper_dim);

// BasicConv2d: ReLU(BN(Conv(x))), conv without bias, BN eps 1e-3; stride 1 pads to keep the grid
// ("same"), stride 2 does not pad (the paper's "V", valid).
class InceptionConvImpl : public torch::nn::Module {
 public:
  InceptionConvImpl(std::int64_t in, std::int64_t out, std::int64_t kernel_h, std::int64_t kernel_w,
                    std::int64_t stride = 1);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(InceptionConv);

struct InceptionResNetBlockOptions {
  TORCH_ARG(std::string, variant) = "a";     // a (Block35) | b (Block17) | c (Block8) (default a)
  TORCH_ARG(double, residual_scale) = -1.0;  // s; -1: the variant's (a 0.17, b 0.10, c 0.20) (default -1)
  TORCH_ARG(bool, activation) = true;        // ReLU after the addition; false: the last Block8 (default true)
};

class InceptionResNetBlockImpl : public BlockImpl {
 public:
  static constexpr const char* kKey = "block/inception-resnet";
  InceptionResNetBlockImpl(std::int64_t dim, double drop_path, const InceptionResNetBlockOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x, const MixerContext& ctx) override;
  // The block on an image [B, C, H, W] -> [B, C, H, W] (what forward runs on the grid).
  torch::Tensor forward_image(const torch::Tensor& image);
  double residual_scale() const { return scale_; }

  InceptionConv branch0{nullptr};                            // the 1x1 branch
  torch::nn::Sequential branch1{nullptr}, branch2{nullptr};  // branch2: variant a only
  torch::nn::Conv2d conv2d{nullptr};                         // the 1x1 up-projection, with bias (timm's name)

 private:
  double scale_, drop_path_;
  bool activation_;
};
TORCH_MODULE(InceptionResNetBlock);

// Reduction-A (timm's Mixed_6a): [B, C, H, W] -> [B, C', (H-3)/2+1, (W-3)/2+1]; H, W >= 3.
class InceptionReductionAImpl : public torch::nn::Module {
 public:
  explicit InceptionReductionAImpl(std::int64_t in);
  torch::Tensor forward(const torch::Tensor& image);
  std::int64_t out_channels() const { return out_; }

  InceptionConv branch0{nullptr};
  torch::nn::Sequential branch1{nullptr};  // branch2 is the max pool (no weights)

 private:
  std::int64_t out_;
};
TORCH_MODULE(InceptionReductionA);

// Reduction-B (timm's Mixed_7a): [B, C, H, W] -> [B, C', (H-3)/2+1, (W-3)/2+1]; H, W >= 3.
class InceptionReductionBImpl : public torch::nn::Module {
 public:
  explicit InceptionReductionBImpl(std::int64_t in);
  torch::Tensor forward(const torch::Tensor& image);
  std::int64_t out_channels() const { return out_; }

  torch::nn::Sequential branch0{nullptr}, branch1{nullptr}, branch2{nullptr};  // branch3 is the max pool

 private:
  std::int64_t out_;
};
TORCH_MODULE(InceptionReductionB);

}  // namespace blocklab
