#include "blocks/backbones/inception_resnet_block.h"

#include <algorithm>

#include "blocks/common/grid_mixer.h"
#include "blocks/common/init.h"
#include "blocks/common/options.h"

namespace blocklab {

namespace {

// One BasicConv2d of a branch: its width at the paper's C, its kernel and stride.
struct InceptionLayer {
  std::int64_t width, kernel_h, kernel_w, stride;
};
using InceptionBranch = std::vector<InceptionLayer>;

struct InceptionDesign {
  std::int64_t paper_dim;  // the paper's width C, where the branch widths are the paper's
  double scale;            // the residual scale s of the released model
  std::vector<InceptionBranch> branches;
};

// Inception-ResNet-v2's residual blocks (arXiv:1602.07261, Fig. 16, 17, 19, at the released widths).
const InceptionDesign& inception_design(const std::string& variant) {
  static const InceptionDesign a{
      320, 0.17, {{{32, 1, 1, 1}}, {{32, 1, 1, 1}, {32, 3, 3, 1}}, {{32, 1, 1, 1}, {48, 3, 3, 1}, {64, 3, 3, 1}}}};
  static const InceptionDesign b{1088, 0.10, {{{192, 1, 1, 1}}, {{128, 1, 1, 1}, {160, 1, 7, 1}, {192, 7, 1, 1}}}};
  static const InceptionDesign c{2080, 0.20, {{{192, 1, 1, 1}}, {{192, 1, 1, 1}, {224, 1, 3, 1}, {256, 3, 1, 1}}}};
  if (variant == "a") return a;
  if (variant == "b") return b;
  TORCH_CHECK(variant == "c", "block/inception-resnet: variant must be a, b or c, got '", variant, "'");
  return c;
}

// The reductions' convolution branches (Fig. 7 with Table 1's k, l, m, n = 256, 256, 384, 384 at
// C = 320; Fig. 18 at C = 1088); each also has a 3x3 stride-2 max pool of its input.
constexpr std::int64_t kInceptionReductionADim = 320, kInceptionReductionBDim = 1088;
const std::vector<InceptionBranch>& inception_reduction_a() {
  static const std::vector<InceptionBranch> branches{{{384, 3, 3, 2}},
                                                     {{256, 1, 1, 1}, {256, 3, 3, 1}, {384, 3, 3, 2}}};
  return branches;
}
const std::vector<InceptionBranch>& inception_reduction_b() {
  static const std::vector<InceptionBranch> branches{{{256, 1, 1, 1}, {384, 3, 3, 2}},
                                                     {{256, 1, 1, 1}, {288, 3, 3, 2}},
                                                     {{256, 1, 1, 1}, {288, 3, 3, 1}, {320, 3, 3, 2}}};
  return branches;
}

// One layer on `in` channels at width `dim` (the paper's widths at paper_dim); `width` := its output width.
InceptionConv inception_conv(std::int64_t in, const InceptionLayer& l, std::int64_t dim, std::int64_t paper_dim,
                             std::int64_t& width) {
  width = inception_branch_width(l.width, dim, paper_dim);
  return InceptionConv(in, width, l.kernel_h, l.kernel_w, l.stride);
}

// A branch's chain of layers on `in` channels (state-dict names "0.conv.weight", ...); `width` := its output width.
torch::nn::Sequential inception_chain(std::int64_t in, const InceptionBranch& layers, std::int64_t dim,
                                      std::int64_t paper_dim, std::int64_t& width) {
  torch::nn::Sequential chain;
  width = in;
  for (const InceptionLayer& l : layers) chain->push_back(inception_conv(width, l, dim, paper_dim, width));
  return chain;
}

torch::Tensor inception_max_pool(const torch::Tensor& image) { return torch::max_pool2d(image, {3, 3}, {2, 2}); }

void inception_check_reducible(const torch::Tensor& image, const char* who) {
  TORCH_CHECK(image.dim() == 4 && image.size(2) >= 3 && image.size(3) >= 3, who,
              ": needs images [B, C, H, W] with H, W >= 3 (3x3 stride-2 valid convolutions), got ", image.sizes());
}

}  // namespace

std::int64_t inception_branch_width(std::int64_t paper_width, std::int64_t dim, std::int64_t paper_dim) {
  TORCH_CHECK(paper_width > 0 && dim > 0 && paper_dim > 0, "inception_branch_width: widths must be positive");
  // round(w * C / (8 C_paper)), halves up, in integers.
  return std::max<std::int64_t>(8, 8 * ((paper_width * dim + 4 * paper_dim) / (8 * paper_dim)));
}

InceptionConvImpl::InceptionConvImpl(std::int64_t in, std::int64_t out, std::int64_t kernel_h, std::int64_t kernel_w,
                                     std::int64_t stride) {
  const std::vector<std::int64_t> padding =
      stride == 1 ? std::vector<std::int64_t>{kernel_h / 2, kernel_w / 2} : std::vector<std::int64_t>{0, 0};
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, {kernel_h, kernel_w})
                                                       .stride(stride)
                                                       .padding(torch::ExpandingArray<2>(padding))
                                                       .bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(out).eps(1e-3)));
}

torch::Tensor InceptionConvImpl::forward(const torch::Tensor& x) { return torch::relu(bn->forward(conv->forward(x))); }

InceptionResNetBlockImpl::InceptionResNetBlockImpl(std::int64_t dim, double drop_path,
                                                   const InceptionResNetBlockOptions& o)
    : drop_path_(drop_path), activation_(o.activation()) {
  const InceptionDesign& d = inception_design(o.variant());
  TORCH_CHECK(o.residual_scale() >= 0.0 || o.residual_scale() == -1.0,
              "block/inception-resnet: residual_scale must be >= 0 or -1 (the variant's), got ", o.residual_scale());
  scale_ = o.residual_scale() < 0.0 ? d.scale : o.residual_scale();
  std::int64_t width = 0, concat = 0;
  branch0 = register_module("branch0", inception_conv(dim, d.branches[0].front(), dim, d.paper_dim, width));
  concat += width;
  branch1 = register_module("branch1", inception_chain(dim, d.branches[1], dim, d.paper_dim, width));
  concat += width;
  if (d.branches.size() > 2) {
    branch2 = register_module("branch2", inception_chain(dim, d.branches[2], dim, d.paper_dim, width));
    concat += width;
  }
  conv2d = register_module("conv2d", torch::nn::Conv2d(torch::nn::Conv2dOptions(concat, dim, 1)));
}

torch::Tensor InceptionResNetBlockImpl::forward_image(const torch::Tensor& image) {
  std::vector<torch::Tensor> parts{branch0->forward(image), branch1->forward(image)};
  if (!branch2.is_empty()) parts.push_back(branch2->forward(image));
  const auto up = conv2d->forward(torch::cat(parts, 1));
  const auto out = image + blocklab::drop_path(scale_ * up, drop_path_, is_training());
  return activation_ ? torch::relu(out) : out;
}

torch::Tensor InceptionResNetBlockImpl::forward(const torch::Tensor& x, const MixerContext& ctx) {
  const auto image = grid_body_image(x, ctx, kKey);
  return keep_prefix_tokens(x, ctx.prefix_tokens, image_to_grid_tokens(forward_image(image)));
}

InceptionReductionAImpl::InceptionReductionAImpl(std::int64_t in) {
  const auto& branches = inception_reduction_a();
  std::int64_t width = 0;
  branch0 = register_module("branch0", inception_conv(in, branches[0].front(), in, kInceptionReductionADim, width));
  out_ = in + width;
  branch1 = register_module("branch1", inception_chain(in, branches[1], in, kInceptionReductionADim, width));
  out_ += width;
}

torch::Tensor InceptionReductionAImpl::forward(const torch::Tensor& image) {
  inception_check_reducible(image, "Inception Reduction-A");
  return torch::cat({branch0->forward(image), branch1->forward(image), inception_max_pool(image)}, 1);
}

InceptionReductionBImpl::InceptionReductionBImpl(std::int64_t in) {
  const auto& branches = inception_reduction_b();
  std::int64_t width = 0;
  out_ = in;
  branch0 = register_module("branch0", inception_chain(in, branches[0], in, kInceptionReductionBDim, width));
  out_ += width;
  branch1 = register_module("branch1", inception_chain(in, branches[1], in, kInceptionReductionBDim, width));
  out_ += width;
  branch2 = register_module("branch2", inception_chain(in, branches[2], in, kInceptionReductionBDim, width));
  out_ += width;
}

torch::Tensor InceptionReductionBImpl::forward(const torch::Tensor& image) {
  inception_check_reducible(image, "Inception Reduction-B");
  return torch::cat(
      {branch0->forward(image), branch1->forward(image), branch2->forward(image), inception_max_pool(image)}, 1);
}

namespace {

const OptionsSchema<InceptionResNetBlockOptions>& inception_resnet_schema() {
  static const auto schema = [] {
    using O = InceptionResNetBlockOptions;
    OptionsSchema<O> s;
    s.choice(
        "variant", {"a", "b", "c"},
        "a: Inception-ResNet-A (Block35: 1x1, 3x3, double 3x3 branches), b: -B (Block17: 1x1, 1x7-7x1), c: -C "
        "(Block8: 1x1, 1x3-3x1); branch widths the paper's scaled to the block's width (default a)",
        [](O& o, const std::string& v) { o.variant(v); }, [](const O& o) { return o.variant(); });
    BLOCKLAB_OPTION(s, residual_scale,
                    "s, the residual branch's scale before the addition; -1: the variant's (a 0.17, b 0.10, c 0.20; "
                    "default -1)")
        .min = -1.0;
    BLOCKLAB_OPTION(s, activation,
                    "ReLU after the addition; false for the network's last C block (with residual_scale 1.0) "
                    "(default true)");
    return s;
  }();
  return schema;
}

Block make_inception_resnet_block(const ConfigNode& params, const BlockArgs& args) {
  const auto options = bind_options(inception_resnet_schema(), params);
  if (options.residual_scale() < 0.0 && options.residual_scale() != -1.0)
    config_fail(
        params, "residual_scale",
        "residual_scale must be a scale >= 0 or -1 (the variant's), got " + std::to_string(options.residual_scale()),
        {"the paper scales by 0.1 to 0.3 (a 0.17, b 0.10, c 0.20); -1 or leave it out for the variant's"});
  return std::make_shared<InceptionResNetBlockImpl>(args.dim, args.drop_path, options);
}

BLOCKLAB_REGISTER(block_registry(),
                  BLOCKLAB_ENTRY(InceptionResNetBlockImpl::kKey)
                      .summary("Inception-ResNet-v2's residual Inception blocks A, B, C (Block35/17/8) on the patch "
                               "grid: BasicConv2d branches, a 1x1 up-projection, the residual scaled by s (no token "
                               "or channel mixer config)")
                      .paper("Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning "
                             "(Szegedy et al., 2017), arXiv:1602.07261")
                      .equation("x = ReLU(x + drop_path(s Conv1x1([branch_0(x); branch_1(x); ...]))), branch = "
                                "chain of ReLU(BN(Conv)); s = 0.17 (a), 0.10 (b), 0.20 (c)")
                      .schema(inception_resnet_schema().schema())
                      .example("{variant: b}"),
                  make_inception_resnet_block);

}  // namespace
}  // namespace blocklab
